"""SVG text of a network picture, written by hand: the full graph, or a per-level summary of a large one."""

from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np

from edgegrad.model.network import Network

from .layout import Layout
from .values import Shown

__all__ = ["full_svg", "summary_svg", "LABEL_NODES", "ID_NODES"]

LABEL_NODES = 40    #: up to this many vertices: ids and values written on the picture
ID_NODES = 400      #: up to this many: ids only
_POS, _NEG, _ZERO = np.array([202, 0, 32]), np.array([5, 113, 176]), "#b8b8b8"
_TOP, _BOTTOM, _SIDE = 56, 78, 70


def _num(v: float) -> str:
    return f"{v:.3g}".replace("-", "\u2212")


def _colours(values: np.ndarray, scale: float, strength: float = 1.0) -> list[str]:
    """Diverging fill: white at 0, red for positive, blue for negative, by |value| / scale."""
    t = np.clip(np.abs(values) / scale, 0.0, 1.0) ** 0.6 * strength if scale > 0 else np.zeros(values.size)
    base = np.where((values >= 0)[:, None], _POS, _NEG)
    rgb = np.rint(255 - (255 - base) * t[:, None]).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]


def _scale(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _halo(x: float, y: float, text: str, fill: str, attrs: str = "") -> str:
    """Text on a white outline of itself (drawn twice: renderers without paint-order keep it legible)."""
    at = f'x="{x:.1f}" y="{y:.1f}" {attrs}'
    return (f'<text {at} stroke="#fff" stroke-width="3" stroke-linejoin="round">{text}</text>'
            f'<text {at} fill="{fill}">{text}</text>')


def _header(width: float, height: float, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
            '<defs><linearGradient id="div" x1="0" x2="1" y1="0" y2="0">'
            '<stop offset="0" stop-color="#0571b0"/><stop offset="0.5" stop-color="#ffffff"/>'
            '<stop offset="1" stop-color="#ca0020"/></linearGradient></defs>',
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
            f'<text x="{_SIDE - 40}" y="30" font-size="16" font-weight="bold">{escape(title)}</text>']


def _legend(y: float, x: float, shown: Shown, edge_scale: float, node_scale: float, note: str,
            edge_signs: tuple[str, float] | None = None) -> list[str]:
    """Colour scales of edges and nodes (signed, red + / blue −) and ``note``; with ``edge_signs`` (what the
    band colours are the sign of, the widest band's Σ|·|) the edges' part is two swatches and a width."""
    parts = []
    scales = [(f"edges: {shown.edge_name}", edge_scale), (f"nodes: {shown.node_name}", node_scale)]
    if edge_signs is not None:
        parts += _sign_legend(y, x, *edge_signs)
        scales[0] = ("", 0.0)
    for i, (name, scale) in enumerate(scales):
        if not name:
            continue
        left = x + i * 300
        parts += [f'<text x="{left}" y="{y}" font-size="12">{escape(name)}</text>',
                  f'<rect x="{left}" y="{y + 6}" width="200" height="10" fill="url(#div)" stroke="#888" '
                  'stroke-width="0.5"/>',
                  f'<text x="{left}" y="{y + 30}" font-size="11">{_num(-scale)}</text>',
                  f'<text x="{left + 100}" y="{y + 30}" font-size="11" text-anchor="middle">0</text>',
                  f'<text x="{left + 200}" y="{y + 30}" font-size="11" text-anchor="end">{_num(scale)}</text>']
    parts.append(f'<text x="{x + 600}" y="{y + 12}" font-size="11" fill="#444">{escape(note)}</text>')
    return parts


def _sign_legend(y: float, x: float, name: str, widest: float) -> list[str]:
    """The summary's bands: red where the sum of ``name`` over a level pair is positive, blue where negative,
    width by the sum of absolute values (``widest`` for the widest band)."""
    return [f'<text x="{x}" y="{y}" font-size="12">{escape(f"bands: colour = sign of Σ {name}")}</text>',
            f'<rect x="{x}" y="{y + 6}" width="14" height="10" fill="#ca0020"/>',
            f'<text x="{x + 18}" y="{y + 15}" font-size="11">Σ &gt; 0</text>',
            f'<rect x="{x + 70}" y="{y + 6}" width="14" height="10" fill="#0571b0"/>',
            f'<text x="{x + 88}" y="{y + 15}" font-size="11">Σ &lt; 0</text>',
            f'<text x="{x}" y="{y + 30}" font-size="11">{escape(f"width: Σ|{name}|, widest {_num(widest)}")}</text>']


def full_svg(net: Network, lay: Layout, shown: Shown, title: str) -> str:
    """Every vertex and edge: columns by level, edges coloured by sign and thickened by size."""
    n_vertices = net.n_inputs + net.n_nodes
    tallest = int(lay.counts.max()) if lay.counts.size else 1
    dy = 64.0 if tallest <= 6 else float(np.clip(900.0 / tallest, 9.0, 64.0))
    labels = n_vertices <= LABEL_NODES
    ids = n_vertices <= ID_NODES
    narrowest = 95.0 if ids else 40.0  # room for an id beside each node
    dx = 190.0 if lay.columns <= 6 else float(np.clip(1500.0 / max(1, lay.columns - 1), narrowest, 190.0))
    radius = float(np.clip(dy * 0.3, 2.5, 15.0 if labels else 10.0))
    width = max(2 * _SIDE + (lay.columns - 1) * dx + (80 if ids else 0), 900.0)
    height = _TOP + tallest * dy + _BOTTOM + 20
    left = _SIDE + (width - 2 * _SIDE - (lay.columns - 1) * dx - (80 if ids else 0)) / 2 + (40 if ids else 0)
    x = left + lay.level * dx
    y = _TOP + 10 + (lay.row() + 0.5) * dy
    edge_scale, node_scale = _scale(shown.edges), _scale(shown.nodes)
    out = _header(width, height, title)

    src, dst, g = np.asarray(net.src), np.asarray(net.dst), shown.edges
    rel = np.sqrt(np.abs(g) / edge_scale) if edge_scale > 0 else np.zeros(g.size)
    small = n_vertices <= ID_NODES
    stroke = 0.5 + (5.5 if small else 3.5) * rel
    opacity = (0.35 + 0.6 * rel) if small else (0.12 + 0.78 * rel)
    colour = np.where(g > 0, "#ca0020", np.where(g < 0, "#0571b0", _ZERO))
    x1, y1, x2, y2 = x[src] + radius, y[src], x[dst] - radius, y[dst]
    bend = np.minimum((x2 - x1) * 0.45, dx * 0.6)
    # edges that skip columns bulge away from the middle, around the nodes they pass
    span = lay.level[dst] - lay.level[src]
    middle = _TOP + 10 + tallest * dy / 2
    side = np.where((y1 + y2) / 2 <= middle, -1.0, 1.0)
    bulge = side * np.minimum(span - 1, 3) * dy * 0.45
    c1, c2 = y1 + bulge, y2 + bulge
    out.append('<g class="edges" fill="none" stroke-linecap="round">')
    for e in np.argsort(rel, kind="stable"):  # strongest on top
        out.append(f'<path data-e="{e}" d="M{x1[e]:.1f},{y1[e]:.1f} C{x1[e] + bend[e]:.1f},{c1[e]:.1f} '
                   f'{x2[e] - bend[e]:.1f},{c2[e]:.1f} {x2[e]:.1f},{y2[e]:.1f}" stroke="{colour[e]}" '
                   f'stroke-width="{stroke[e]:.2f}" stroke-opacity="{opacity[e]:.2f}">'
                   f'<title>{escape(net.vertex_ids[src[e]])} \u2192 {escape(net.vertex_ids[dst[e]])}: '
                   f'{_num(g[e])}</title></path>')
    out.append('</g>')
    if labels and net.n_edges <= 2 * LABEL_NODES:  # level edges mid-way; others early, on their outer side
        t = np.where(y1 == y2, 0.5, 0.22)
        c = np.array([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3])
        mx = c[0] * x1 + c[1] * (x1 + bend) + c[2] * (x2 - bend) + c[3] * x2
        my = c[0] * y1 + c[1] * c1 + c[2] * c2 + c[3] * y2
        out.append('<g font-size="10" text-anchor="middle">')
        lift = np.where((bulge >= 0) & (y2 > y1), 13.0, -5.0)
        out += [_halo(mx[e], my[e] + lift[e], _num(g[e]), colour[e]) for e in range(net.n_edges)]
        out.append('</g>')
    fills = ["#eeeeee"] * net.n_inputs + _colours(shown.nodes, node_scale)
    is_output = np.zeros(n_vertices, dtype=bool)
    is_output[net.n_inputs + np.asarray(net.output_index, dtype=np.int64)] = True
    values = np.concatenate((np.full(net.n_inputs, np.nan), shown.nodes))
    out.append('<g class="nodes" stroke="#333">')
    for v in range(n_vertices):
        name = escape(net.vertex_ids[v])
        tip = f"<title>{name}" + ("" if v < net.n_inputs else f": {_num(values[v])}") + "</title>"
        width_px = 2.5 if is_output[v] else 1.0
        if v < net.n_inputs:
            out.append(f'<rect data-v="{v}" x="{x[v] - radius:.1f}" y="{y[v] - radius:.1f}" width="{2 * radius:.1f}" '
                       f'height="{2 * radius:.1f}" rx="3" fill="{fills[v]}" stroke-width="{width_px}">{tip}</rect>')
        else:
            out.append(f'<circle data-v="{v}" cx="{x[v]:.1f}" cy="{y[v]:.1f}" r="{radius:.1f}" fill="{fills[v]}" '
                       f'stroke-width="{width_px}">{tip}</circle>')
    out.append('</g>')
    if ids:
        size = 12 if labels else float(np.clip(dy * 0.55, 7, 11))
        out.append(f'<g font-size="{size:.0f}" fill="#111">')
        for v in range(n_vertices):
            name = escape(net.vertex_ids[v])
            if labels:
                out.append(f'<text x="{x[v]:.1f}" y="{y[v] - radius - 5:.1f}" text-anchor="middle">{name}</text>')
                if v >= net.n_inputs:
                    out.append(f'<text x="{x[v]:.1f}" y="{y[v] + radius + 13:.1f}" text-anchor="middle" '
                               f'font-size="10" fill="#444">{_num(values[v])}</text>')
            else:  # beside the node, away from the edges' ends
                anchor, off = ("end", -radius - 3) if lay.level[v] == 0 else ("start", radius + 3)
                out.append(_halo(x[v] + off, y[v] + size * 0.35, name, "#111", f'text-anchor="{anchor}"'))
        out.append('</g>')
    note = "width \u221d \u221a|value| \u00b7 \u25a1 input \u00b7 thick ring: output"
    out += _legend(height - _BOTTOM + 22, _SIDE - 40, shown, edge_scale, node_scale, note)
    out.append('</svg>')
    return "\n".join(out) + "\n"


def summary_svg(net: Network, lay: Layout, shown: Shown, title: str) -> str:
    """One bar per level (height by node count, fill by mean value) and one band per pair of levels
    that edges join (width by Σ|gradient|, colour by the sign of Σ gradient)."""
    cols = lay.columns
    dx = float(np.clip(1500.0 / max(1, cols - 1), 24.0, 160.0))
    bar_w = min(18.0, dx * 0.5)
    width = max(2 * _SIDE + (cols - 1) * dx, 900.0)
    height = _TOP + 520 + _BOTTOM + 30
    left = _SIDE + (width - 2 * _SIDE - (cols - 1) * dx) / 2
    counts = lay.counts.astype(float)
    bar_h = 40 + 460 * np.sqrt(counts / counts.max())
    mid = _TOP + 20 + 250
    xs = left + np.arange(cols) * dx
    node_level = lay.level[net.n_inputs:]
    mean = np.bincount(node_level, weights=shown.nodes, minlength=cols) / np.maximum(
        np.bincount(node_level, minlength=cols), 1)
    src_l, dst_l = lay.level[np.asarray(net.src)], lay.level[np.asarray(net.dst)]
    pair, where = np.unique(src_l * cols + dst_l, return_inverse=True)
    total = np.bincount(where, weights=shown.edges, minlength=pair.size)
    size = np.bincount(where, weights=np.abs(shown.edges), minlength=pair.size)
    many = np.bincount(where, minlength=pair.size)
    edge_scale = float(size.max()) if size.size else 0.0
    node_scale = _scale(mean[1:] if cols > 1 else mean)
    out = _header(width, height, title)
    rel = np.sqrt(size / size.max()) if size.size and size.max() > 0 else np.zeros(size.size)
    out.append('<g class="edges" fill="none">')
    for p in np.argsort(rel, kind="stable"):
        a, b = divmod(int(pair[p]), cols)
        xa, xb = xs[a] + bar_w / 2, xs[b] - bar_w / 2
        lift = 0.0 if b == a + 1 else -min(240.0, 30.0 * (b - a))
        colour = "#ca0020" if total[p] > 0 else ("#0571b0" if total[p] < 0 else _ZERO)
        out.append(f'<path d="M{xa:.1f},{mid:.1f} C{xa + (xb - xa) / 3:.1f},{mid + lift:.1f} '
                   f'{xb - (xb - xa) / 3:.1f},{mid + lift:.1f} {xb:.1f},{mid:.1f}" stroke="{colour}" '
                   f'stroke-width="{1 + 14 * rel[p]:.2f}" stroke-opacity="{0.25 + 0.6 * rel[p]:.2f}">'
                   f'<title>level {a} \u2192 {b}: {many[p]} edges, \u03a3 {_num(total[p])}, '
                   f'\u03a3|\u00b7| {_num(size[p])}</title></path>')
    out.append('</g>')
    fills = ["#eeeeee"] + _colours(mean[1:], node_scale) if cols else []
    for c in range(cols):
        out.append(f'<rect class="level" x="{xs[c] - bar_w / 2:.1f}" y="{mid - bar_h[c] / 2:.1f}" width="{bar_w:.1f}" '
                   f'height="{bar_h[c]:.1f}" rx="3" fill="{fills[c]}" stroke="#333">'
                   f'<title>level {c}: {int(counts[c])} vertices, mean {_num(mean[c])}</title></rect>')
        if cols <= 60 or c % max(1, cols // 30) == 0:
            out.append(f'<text x="{xs[c]:.1f}" y="{mid + bar_h[c] / 2 + 14:.1f}" font-size="10" '
                       f'text-anchor="middle">{int(counts[c])}</text>')
    note = (f"summary: {net.n_inputs + net.n_nodes} vertices in {cols} levels (bar = a level, its node count"
            " below); bands join levels")
    shown_mean = Shown(shown.edges, mean, shown.edge_name, f"mean {shown.node_name}")
    out += _legend(height - _BOTTOM + 22, _SIDE - 40, shown_mean, edge_scale, node_scale, note,
                   edge_signs=(f"{shown.edge_name} per level pair", edge_scale))
    out.append('</svg>')
    return "\n".join(out) + "\n"
