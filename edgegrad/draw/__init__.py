"""Pictures of a network and its gradients (``edgegrad draw``): SVG written by our own code, PNG
through cairosvg when it is installed (``pip install 'edgegrad[draw]'``)."""

from __future__ import annotations

import os
import re

from edgegrad.engine.result import GradientResult
from edgegrad.errors import InvalidInput
from edgegrad.model.network import Network

from .layout import Layout, layout
from .svg import full_svg, summary_svg
from .values import Shown, load_result, shown_values

__all__ = ["draw", "to_svg", "write_picture", "MAX_NODES", "PICTURE_SUFFIXES", "Layout", "layout", "Shown",
           "load_result", "shown_values"]

MAX_NODES = 1000  #: above this many vertices a picture is a per-level summary
PICTURE_SUFFIXES = (".svg", ".png")
PNG_LONGEST_PX = 4000  #: a PNG's longer side stays about this size (twice the SVG's for small pictures)


def to_svg(net: Network, result: GradientResult | None = None, title: str = "",
           max_nodes: int = MAX_NODES) -> str:
    """The SVG text of ``net`` shaded by ``result`` (weights and biases without one); a per-level
    summary when the network has more than ``max_nodes`` vertices."""
    shown = shown_values(net, result)
    n_vertices = net.n_inputs + net.n_nodes
    title = title or f"{n_vertices} vertices, {net.n_edges} edges"
    if n_vertices > max_nodes:  # a summary reads levels and counts only: no row-ordering sweeps
        return summary_svg(net, layout(net, sweeps=0), shown, title + f" (summary: more than {max_nodes} vertices)")
    return full_svg(net, layout(net), shown, title)


def check_picture_path(path: str) -> str:
    """The picture kind of ``path`` ("svg" or "png"); InvalidInput for any other name."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in PICTURE_SUFFIXES:
        raise InvalidInput(f"--out: {path}: unsupported picture type (expected .svg or .png)")
    return suffix[1:]


def write_picture(svg: str, path: str) -> None:
    """Write ``svg`` to ``path``: as it is for .svg, rendered by cairosvg for .png."""
    kind = check_picture_path(path)
    if kind == "png":
        data = _png(svg)
    else:
        data = svg.encode("utf-8")
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise InvalidInput(f"--out: {path}: cannot write ({exc.strerror or exc})") from None


def _png(svg: str) -> bytes:
    try:
        import cairosvg
    except (ImportError, OSError) as exc:  # OSError: the package is there but libcairo is not
        raise InvalidInput("--out: a .png needs cairosvg and the cairo library (pip install 'edgegrad[draw]');"
                           f" write an .svg instead ({type(exc).__name__}: {exc})") from None
    size = re.search(r'width="([0-9.]+)" height="([0-9.]+)"', svg)
    longest = max(float(size.group(1)), float(size.group(2))) if size else 1000.0
    scale = min(2.0, max(0.5, PNG_LONGEST_PX / longest))  # sharp for small pictures, bounded for large
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)


def draw(net: Network, result: GradientResult | None = None, path: str | None = None, *, title: str = "",
         max_nodes: int = MAX_NODES) -> str:
    """Draw ``net`` (shaded by ``result``); write it to ``path`` (.svg or .png) when given; return the SVG."""
    if path is not None:
        check_picture_path(path)
    svg = to_svg(net, result, title, max_nodes)
    if path is not None:
        write_picture(svg, path)
    return svg
