"""``edgegrad draw``: what the picture encodes (read back from the SVG), the layout, and bad input."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad import Network
from edgegrad.cli import main
from edgegrad.draw import draw, layout, shown_values
from edgegrad.draw.layout import draw_levels, edge_length

ROOT = Path(__file__).resolve().parent.parent
XOR, XOR_X, XOR_T = (str(ROOT / "examples" / n) for n in ("xor.json", "xor-inputs.json", "xor-targets.json"))
CONTRACT = str(ROOT / "examples" / "contract.json")
SVG = "{http://www.w3.org/2000/svg}"


def evolved(n_vertices: int, seed: int = 0, n_inputs: int = 12, n_outputs: int = 8) -> Network:
    """A NEAT-like network: each new node reads 3-4 recent vertices, sometimes an input."""
    rng = np.random.default_rng(seed)
    n_nodes = n_vertices - n_inputs
    src, dst = [], []
    for v in range(n_inputs, n_vertices):
        lo = max(0, v - 40)
        chosen = rng.choice(np.arange(lo, v), size=min(v - lo, 3 + int(rng.integers(0, 2))), replace=False)
        if rng.random() < 0.3:
            chosen = np.unique(np.append(chosen, rng.integers(0, n_inputs)))
        src += chosen.tolist()
        dst += [v] * chosen.size
    nodes = [f"h{i}" for i in range(n_nodes)]
    return Network.from_arrays([f"x{i}" for i in range(n_inputs)], nodes[-n_outputs:], nodes,
                               rng.choice(["tanh", "sigmoid", "identity"], n_nodes).tolist(),
                               rng.normal(0, 0.3, n_nodes), np.array(src), np.array(dst),
                               rng.normal(0, 0.7, len(src)))


def parse(path: str | Path) -> ET.Element:
    return ET.fromstring(Path(path).read_text(encoding="utf-8"))


def edges_of(root: ET.Element) -> dict[int, ET.Element]:
    return {int(p.get("data-e")): p for p in root.iter(f"{SVG}path") if p.get("data-e") is not None}


def nodes_of(root: ET.Element) -> dict[int, ET.Element]:
    return {int(e.get("data-v")): e for e in root.iter() if e.get("data-v") is not None}


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_xor_picture_encodes_the_gradients(tmp_path: Path) -> None:
    out = tmp_path / "xor.svg"
    assert main(["draw", XOR, "--inputs", XOR_X, "--targets", XOR_T, "--loss", "mse", "--out", str(out)]) == 0
    net = Network.load(XOR)
    x, t = json.loads(Path(XOR_X).read_text()), json.loads(Path(XOR_T).read_text())
    res = edgegrad.gradients(net, x, targets=t, loss="mse")
    root = parse(out)
    edges, nodes = edges_of(root), nodes_of(root)
    assert sorted(edges) == list(range(net.n_edges)) and sorted(nodes) == list(range(net.n_inputs + net.n_nodes))
    for e, g in enumerate(res.edge_grads):  # colour by sign, width by size, value in the tooltip
        assert edges[e].get("stroke") == ("#ca0020" if g > 0 else "#0571b0")
        assert edges[e].find(f"{SVG}title").text.endswith(f"{g:.3g}".replace("-", "\u2212"))
    widths = np.array([float(edges[e].get("stroke-width")) for e in range(net.n_edges)])
    order = np.argsort(np.abs(res.edge_grads))
    assert np.all(np.diff(widths[order]) >= 0) and widths[order[-1]] > 1.4 * widths[order[0]]
    for i, d in enumerate(res.deltas):  # shaded by δ: red above 0, blue below, deeper for larger |δ|
        fill = rgb(nodes[net.n_inputs + i].get("fill"))
        assert (fill[0] > fill[2]) == (d > 0)
    strongest = net.n_inputs + int(np.argmax(np.abs(res.deltas)))
    assert rgb(nodes[strongest].get("fill")).min() == min(rgb(nodes[v].get("fill")).min() for v in nodes)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert set(net.vertex_ids) <= texts  # small network: labelled
    assert any(f"L = {res.loss:.4g}" in (t or "") for t in texts)  # the loss, in the title


def test_a_saved_result_draws_the_same_picture(tmp_path: Path) -> None:
    saved = tmp_path / "r.npz"
    assert main(["grad", CONTRACT, "--inputs", XOR_X, "--out", str(saved)]) == 0
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    assert main(["draw", CONTRACT, "--inputs", XOR_X, "--out", str(a), "--title", "t"]) == 0
    assert main(["draw", CONTRACT, "--result", str(saved), "--out", str(b), "--title", "t"]) == 0
    assert a.read_text() == b.read_text()


def test_output_and_per_example_results_are_reduced_as_documented() -> None:
    net, x = Network.load(XOR), np.array([[0, 0], [0, 1], [1, 0], [1, 1.0]])
    res = edgegrad.gradients(net, x)
    shown = shown_values(net, res)
    assert np.allclose(shown.edges, res.edge_grads.sum(axis=1).mean(axis=0), rtol=1e-12)
    per = edgegrad.gradients(net, x, targets=np.ones((4, 1)), loss="bce", per_example=True, reduction="sum")
    whole = edgegrad.gradients(net, x, targets=np.ones((4, 1)), loss="bce", reduction="sum")
    assert np.allclose(shown_values(net, per).edges, whole.edge_grads, rtol=1e-9)
    assert np.allclose(shown_values(net, per).nodes, whole.deltas, rtol=1e-9)
    assert np.array_equal(shown_values(net, None).edges, net.weights)  # no result: the weights


def test_layout_is_by_level_and_the_sweeps_untangle_a_300_vertex_network(tmp_path: Path) -> None:
    net = evolved(300)
    lay = layout(net)
    level = draw_levels(net)
    assert np.array_equal(lay.level, level)
    assert np.all(level[net.src] < level[net.dst])  # every edge goes right
    assert np.all(level[net.n_inputs + net.output_index] <= level.max())
    for c in range(lay.columns):  # ranks are a permutation within each column
        assert sorted(lay.rank[level == c].tolist()) == list(range(int((level == c).sum())))
    unordered = layout(net, sweeps=0)
    assert edge_length(net.src, net.dst, lay.row()) < 0.8 * edge_length(net.src, net.dst, unordered.row())
    x = np.random.default_rng(1).random((16, net.n_inputs))
    res = edgegrad.gradients(net, x, targets=np.zeros((16, net.n_outputs)), loss="mse")
    root = ET.fromstring(draw(net, res, str(tmp_path / "n.svg")))
    assert len(edges_of(root)) == net.n_edges and len(nodes_of(root)) == 300


def test_beyond_max_nodes_a_summary_by_level(tmp_path: Path) -> None:
    net = evolved(400)
    out = tmp_path / "s.svg"
    assert main(["draw", "--max-nodes", "100", str(_saved(net, tmp_path)), "--out", str(out)]) == 0
    root = parse(out)
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "level"]
    assert len(bars) == int(draw_levels(net).max()) + 1
    assert not nodes_of(root)
    assert "summary" in root.find(f"{SVG}text").text


def test_png_without_cairosvg_is_exit_2_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys) -> None:
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # as if it were not installed
    assert main(["draw", XOR, "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: a .png needs cairosvg") and "pip install 'edgegrad[draw]'" in err
    assert not (tmp_path / "p.png").exists()


def test_png_when_cairosvg_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("cairosvg")
    out = tmp_path / "xor.png"
    assert main(["draw", XOR, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _saved(net: Network, tmp_path: Path) -> Path:
    path = tmp_path / "net.npz"
    net.save(str(path))
    return path


@pytest.mark.parametrize("args, expected", [
    (["--out", "p.gif"], "--out: p.gif: unsupported picture type"),
    (["--result", "missing.npz", "--out", "p.svg"], "--result: missing.npz: no such file"),
    (["--result", XOR_X, "--out", "p.svg"], "--result: "),
    (["--result", "r.npz", "--inputs", XOR_X, "--out", "p.svg"], "--result: give either"),
    (["--targets", XOR_T, "--loss", "mse", "--out", "p.svg"], "--inputs: required"),
    (["--inputs", XOR_X, "--targets", XOR_T, "--out", "p.svg"], "--loss: required"),
    (["--max-nodes", "0", "--out", "p.svg"], "--max-nodes: must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                          args: list[str], expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["draw", XOR, *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: " + expected) and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("p.*"))


def test_a_result_of_another_network_is_refused(tmp_path: Path, capsys) -> None:
    saved = tmp_path / "r.npz"
    assert main(["grad", CONTRACT, "--inputs", XOR_X, "--out", str(saved)]) == 0
    assert main(["draw", XOR, "--result", str(saved), "--out", str(tmp_path / "p.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --result: ") and "edge" in err, err


def test_the_summary_legend_says_what_the_band_colours_and_widths_are(tmp_path: Path) -> None:
    net = evolved(400)
    x = np.random.default_rng(1).normal(size=(3, net.n_inputs))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "s.svg"
    assert main(["draw", "--max-nodes", "100", str(_saved(net, tmp_path)), "--inputs", str(tmp_path / "x.npy"),
                 "--out", str(out)]) == 0
    texts = [t.text or "" for t in parse(out).iter(f"{SVG}text")]
    assert "bands: colour = sign of Σ ∂Σy/∂w (batch mean) per level pair" in texts
    assert {"Σ > 0", "Σ < 0"} <= set(texts)
    assert any(t.startswith("width: Σ|∂Σy/∂w (batch mean) per level pair|, widest ") for t in texts)
    assert not any(t.startswith("edges: Σ|") for t in texts), "no signed scale for a sum of absolute values"
    swatches = {r.get("fill") for r in parse(out).iter(f"{SVG}rect") if r.get("width") == "14"}
    assert swatches == {"#ca0020", "#0571b0"}
