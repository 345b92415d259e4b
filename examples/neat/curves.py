"""A small SVG of best-fitness curves: against generations (left) and against seconds (right); no plotting library."""

from __future__ import annotations

from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
W, H, PAD = 360, 260, 46


def _panel(x0: float, series: dict[str, tuple[list[float], list[float]]], lo: float, hi: float,
           label: str) -> list[str]:
    """One panel: each series' (x, best) as a step line, axes with end ticks."""
    xmax = max(max(xs) for xs, _ in series.values()) or 1.0
    sx = lambda x: x0 + PAD + (W - PAD - 10) * x / xmax  # noqa: E731
    sy = lambda y: 20 + (H - PAD - 20) * (hi - y) / (hi - lo or 1.0)  # noqa: E731
    parts = [f'<line x1="{sx(0):.1f}" y1="{sy(lo):.1f}" x2="{sx(xmax):.1f}" y2="{sy(lo):.1f}" stroke="#444"/>',
             f'<line x1="{sx(0):.1f}" y1="{sy(lo):.1f}" x2="{sx(0):.1f}" y2="{sy(hi):.1f}" stroke="#444"/>',
             f'<text x="{sx(xmax / 2):.1f}" y="{H - 8}" text-anchor="middle">{escape(label)}</text>',
             f'<text x="{sx(0):.1f}" y="{sy(lo) + 16:.1f}" text-anchor="middle">0</text>',
             f'<text x="{sx(xmax):.1f}" y="{sy(lo) + 16:.1f}" text-anchor="end">{xmax:.4g}</text>',
             f'<text x="{sx(0) - 4:.1f}" y="{sy(lo):.1f}" text-anchor="end">{lo:.2f}</text>',
             f'<text x="{sx(0) - 4:.1f}" y="{sy(hi) + 10:.1f}" text-anchor="end">{hi:.2f}</text>']
    for colour, (xs, ys) in zip(COLOURS, series.values()):
        best, points = -float("inf"), []
        for x, y in zip(xs, ys):
            best = max(best, y)
            points.append(f"{sx(x):.1f},{sy(best):.1f}")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>')
    return parts


def write_curves(path: str, runs: dict[str, tuple[list[float], list[float]]], title: str = "") -> None:
    """``runs``: name -> (best fitness per generation, seconds at the end of each generation); writes ``path``."""
    values = [y for ys, _ in runs.values() for y in ys]
    lo, hi = min(values), max(values)
    by_gen = {name: (list(range(len(ys))), ys) for name, (ys, _) in runs.items()}
    by_time = {name: (ts, ys) for name, (ys, ts) in runs.items()}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 24}" font-family="sans-serif"'
             ' font-size="11">', '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{W}" y="14" text-anchor="middle" font-size="13">{escape(title)}</text>']
    parts += _panel(0, by_gen, lo, hi, "generation")
    parts += _panel(W, by_time, lo, hi, "seconds")
    for i, (colour, name) in enumerate(zip(COLOURS, runs)):
        parts.append(f'<text x="{W - 110}" y="{H - PAD - 40 + 14 * i}" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
