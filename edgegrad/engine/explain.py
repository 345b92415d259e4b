"""``edgegrad explain``: the δ recursion for one edge and one input row, with the engine's numbers.

Nothing is recomputed here: z, o and f'(z) come from ``api.node_values``, every δ from
``gradients`` (output mode, or loss mode with ``per_example``) and the direct terms ∂L/∂o
from the engine's own loss module. The explanation lays those numbers out along

    δ(v) = f_v'(z[v]) · (∂P/∂o[v]|direct + Σ_c w(v,c)·δ(c))        ∂P/∂w(u,v) = δ(v)·o[u]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..model.network import Network
from .api import gradients, node_values
from .batch import check_array
from .losses import loss_and_grad

__all__ = ["Child", "NodeTerm", "Section", "Explanation", "explain_edge", "render"]

_LOSS_FORMULAS = {
    "mse": "2·(o[{y}] − t)",
    "bce": "−(t/o[{y}] − (1−t)/(1−o[{y}]))",
    "softmax_ce": "softmax(o)[{y}]·Σt − t",
}


@dataclass
class Child:
    """One out-edge (v, c) of a node: its weight and δ(c) for the quantity P."""

    node: str
    weight: float
    delta: float
    reaches: bool  #: whether c reaches an output of P (if not, δ(c) = 0)


@dataclass
class NodeTerm:
    """δ of one node, with every number of its line of the recursion."""

    node: str
    activation: str
    z: float
    fprime: float
    direct: float | None          #: ∂P/∂o[node]|direct when the node is an output of P, else None
    children: list[Child]
    delta: float                  #: δ(node) as the engine computed it

    @property
    def inner(self) -> float:
        """direct + Σ_c w(node,c)·δ(c), from the numbers listed here."""
        return (self.direct or 0.0) + sum(c.weight * c.delta for c in self.children)


@dataclass
class Section:
    """Everything about one differentiated quantity P (one output, or the loss)."""

    title: str
    output: str | None            #: the output y_k in output mode, None in loss mode
    outputs: tuple[str, ...]      #: the outputs P depends on directly
    reaches: bool                 #: whether v reaches any of them (else δ(v) = 0)
    terms: dict[str, NodeTerm]    #: every node on a path from v to those outputs
    delta_v: float
    grad: float                   #: ∂P/∂w(u,v) as the engine computed it
    direct_note: dict[str, str] = field(default_factory=dict)  #: how each direct term comes about


@dataclass
class Explanation:
    """The explanation of one edge (u, v) at one input row, one section per P."""

    src: str
    dst: str
    edge: int
    weight: float
    row: int
    batch: int
    inputs: dict[str, float]
    mode: str                     #: "output" or "loss"
    loss: str | None
    reduction: str
    o_u: float
    u_is_input: bool
    u_activation: str | None
    bias_v: float
    incoming: list[tuple[str, float, float]]   #: (u', w(u',v), o[u']) for every edge into v
    z_v: float
    activation_v: str
    fprime_v: float
    sections: list[Section]


# ------------------------------------------------------------------ numbers
def explain_edge(net: Network, src: str, dst: str, inputs: Any = None, row: int = 0, targets: Any = None,
                 loss: str | None = None, reduction: str = "mean", output: str | None = None) -> Explanation:
    """Collect the numbers of the δ recursion for edge ``src -> dst`` at input ``row``."""
    vertex = {v: i for i, v in enumerate(net.vertex_ids)}
    for end in (src, dst):
        if end not in vertex:
            raise InvalidInput(f"--edge: unknown node '{end}'")
    hits = np.flatnonzero((net.src == vertex[src]) & (net.dst == vertex[dst]))
    if not hits.size:
        raise InvalidInput(f"--edge: no edge {src} -> {dst} in the network")
    edge = int(hits[0])
    if output is not None and output not in net.outputs:
        raise InvalidInput(f"--output: '{output}' is not an output (outputs: {', '.join(net.outputs)})")
    if inputs is None:
        rows = 1 if targets is None else int(np.shape(targets)[0])
        inputs = np.zeros((rows, net.n_inputs))
    x = check_array(inputs, "inputs", net.n_inputs, net.inputs)
    if not 0 <= row < x.shape[0]:
        raise InvalidInput(f"--row: {row} out of range (the inputs have {x.shape[0]} rows)")

    if loss is None:
        # examples are independent in output mode: the engine only needs the one row
        res = gradients(net, x[row:row + 1])
        values = node_values(net, x[row:row + 1])
        at = 0
    else:  # the batch matters (reductions), so run it all and take this example's row
        res = gradients(net, x, targets=targets, loss=loss, reduction=reduction, per_example=True)
        values = node_values(net, x)
        at = row
    z, o, fprime = values.z[at], values.o[at], values.fprime[at]
    n_in = net.n_inputs
    graph = _Graph(net)
    v = vertex[dst] - n_in
    u = vertex[src]

    sections: list[Section] = []
    if loss is None:
        for k, y in enumerate(net.outputs):
            if output is not None and y != output:
                continue
            delta = res.deltas[at, k]
            direct = {y: 1.0}
            sections.append(_section(net, graph, v, f"P = o[{y}]", y, direct, delta, z, fprime,
                                     float(res.edge_grads[at, k, edge]), {y: f"∂P/∂o[{y}] = 1 (P = o[{y}])"}))
    else:
        t = np.asarray(targets, dtype=np.float64)
        _, d_out = loss_and_grad(loss, reduction, np.asarray(res.outputs, dtype=np.float64), t)
        direct = {y: float(d_out[row, k]) for k, y in enumerate(net.outputs)}
        scale = _loss_scale(loss, reduction, x.shape[0], net.n_outputs)
        notes = {y: _loss_note(loss, y, scale, float(res.outputs[row, k]), t[row], k) + f"  →  {_g(direct[y])}"
                 for k, y in enumerate(net.outputs)}
        title = f"P = L ({reduction} {loss}), example {row}'s contribution"
        sections.append(_section(net, graph, v, title, None, direct, res.deltas[row], z, fprime,
                                 float(res.edge_grads[row, edge]), notes))

    incoming = [(net.vertex_ids[s], float(w), float(o[s]))
                for s, w in zip(net.src[net.dst == vertex[dst]].tolist(), net.weights[net.dst == vertex[dst]].tolist())]
    return Explanation(
        src=src, dst=dst, edge=edge, weight=float(net.weights[edge]), row=row, batch=int(x.shape[0]),
        inputs={name: float(x[row, i]) for i, name in enumerate(net.inputs)},
        mode="output" if loss is None else "loss", loss=loss, reduction=reduction,
        o_u=float(o[u]), u_is_input=u < n_in,
        u_activation=None if u < n_in else net.activations[u - n_in],
        bias_v=float(net.biases[v]), incoming=incoming, z_v=float(z[v]),
        activation_v=net.activations[v], fprime_v=float(fprime[v]), sections=sections)


class _Graph:
    """Out-edges of every vertex, in file order, as Python lists (built once per explanation)."""

    def __init__(self, net: Network) -> None:
        self.n_in = net.n_inputs
        self.children: list[list[tuple[int, float]]] = [[] for _ in net.vertex_ids]
        for s, d, w in zip(net.src.tolist(), net.dst.tolist(), net.weights.tolist()):
            self.children[s].append((d, w))
        self.parents: list[list[int]] = [[] for _ in net.vertex_ids]
        for s, d in zip(net.src.tolist(), net.dst.tolist()):
            self.parents[d].append(s)

    def reaching(self, targets: list[int]) -> set[int]:
        """Vertices with a path to any of ``targets`` (the targets included)."""
        seen, stack = set(targets), list(targets)
        while stack:
            for p in self.parents[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def below(self, start: int, keep: set[int]) -> list[int]:
        """``start`` and the vertices of ``keep`` reachable from it through ``keep``, in visit order."""
        order, seen, stack = [], {start}, [start]
        while stack:
            vtx = stack.pop()
            order.append(vtx)
            for c, _ in self.children[vtx]:
                if c in keep and c not in seen:
                    seen.add(c)
                    stack.append(c)
        return order


def _section(net: Network, graph: _Graph, v: int, title: str, output: str | None, direct: dict[str, float],
             delta: np.ndarray, z: np.ndarray, fprime: np.ndarray, grad: float, notes: dict[str, str]) -> Section:
    n_in = graph.n_in
    node_index = {name: i for i, name in enumerate(net.node_ids)}
    out_vertices = [n_in + node_index[y] for y in direct]
    live = graph.reaching(out_vertices)
    terms: dict[str, NodeTerm] = {}
    if n_in + v in live:
        for vtx in graph.below(n_in + v, live):
            n = vtx - n_in
            name = net.node_ids[n]
            children = [Child(net.vertex_ids[c], w, float(delta[c - n_in]), c in live)
                        for c, w in graph.children[vtx]]
            terms[name] = NodeTerm(name, net.activations[n], float(z[n]), float(fprime[n]),
                                   direct.get(name), children, float(delta[n]))
    return Section(title=title, output=output, outputs=tuple(direct), reaches=n_in + v in live, terms=terms,
                   delta_v=float(delta[v]), grad=grad, direct_note=notes)


def _loss_scale(loss: str, reduction: str, batch: int, n_out: int) -> str:
    if reduction == "sum":
        return ""
    return f"/{batch}" if loss == "softmax_ce" else f"/({batch}·{n_out})"


def _loss_note(loss: str, y: str, scale: str, o_y: float, t_row: np.ndarray, k: int) -> str:
    formula = _LOSS_FORMULAS[loss].format(y=y)
    if scale:
        formula = f"({formula}){scale}"
    return f"∂L/∂o[{y}] = {formula}  with o[{y}] = {_g(o_y)}, t = {_g(float(t_row[k]))}"


# ---------------------------------------------------------------- rendering
def _g(x: float, digits: int = 10) -> str:
    text = f"{x:.{digits}g}"
    return "0" if text in ("-0", "0") else text


def _p(x: float, digits: int) -> str:
    """A number as a factor: negative numbers in parentheses."""
    text = _g(x, digits)
    return f"({text})" if text.startswith("-") else text


_MAX_TERMS = 12


def render(ex: Explanation, digits: int = 10, max_nodes: int = 200) -> str:
    """The explanation as text, one section per differentiated quantity."""
    g = lambda x: _g(x, digits)  # noqa: E731
    u, v = ex.src, ex.dst
    shown = ", ".join(f"{k} = {g(val)}" for k, val in list(ex.inputs.items())[:_MAX_TERMS])
    if len(ex.inputs) > _MAX_TERMS:
        shown += f", … ({len(ex.inputs)} inputs)"
    lines = [f"edge {u} -> {v}  (edges[{ex.edge}], w({u},{v}) = {g(ex.weight)}), input row {ex.row}"
             f" of {ex.batch}: {shown}", ""]
    if ex.u_is_input:
        lines.append(f"o[{u}] = {g(ex.o_u)}   ({u} is an input: o[{u}] = {u})")
    else:
        lines.append(f"o[{u}] = {g(ex.o_u)}   ({u}: {ex.u_activation})")
    terms = " + ".join(f"{_p(w, digits)} × {_p(o, digits)}" for _, w, o in ex.incoming[:_MAX_TERMS])
    if len(ex.incoming) > _MAX_TERMS:
        terms += f" + … ({len(ex.incoming) - _MAX_TERMS} more)"
    lines.append(f"z[{v}] = bias[{v}] + Σ w·o = {g(ex.bias_v)} + ({terms}) = {g(ex.z_v)}")
    lines.append(f"f_{v}'(z[{v}]) = {g(ex.fprime_v)}   ({v}: {ex.activation_v})")
    for section in ex.sections:
        lines.append("")
        lines.extend(_render_section(ex, section, digits, max_nodes))
    return "\n".join(lines) + "\n"


def _render_section(ex: Explanation, s: Section, digits: int, max_nodes: int) -> list[str]:
    g = lambda x: _g(x, digits)  # noqa: E731
    u, v = ex.src, ex.dst
    mode = ("output mode: ∂P/∂o|direct is 1 at " + s.output + ", 0 elsewhere" if s.output is not None
            else "loss mode: ∂P/∂o|direct = ∂L/∂o at every output")
    lines = [f"── {s.title}   ({mode})"]
    if not s.reaches:
        where = s.output if s.output is not None else "any output"
        lines += [f"{v} has no path to {where}, so δ({v}) = 0 and ∂P/∂w({u},{v}) = 0:"
                  f" no activation downstream matters, the output's included.",
                  f"∂P/∂w({u},{v}) = δ({v}) · o[{u}] = 0 × {_p(ex.o_u, digits)} = {g(s.grad)}"]
        return lines
    expanded: set[str] = set()
    _render_node(s, v, "", expanded, lines, digits, max_nodes)
    lines.append(f"∂P/∂w({u},{v}) = δ({v}) · o[{u}] = {_p(s.delta_v, digits)} × {_p(ex.o_u, digits)}"
                 f" = {g(s.grad)}")
    lines.extend(_dependence(ex, s, digits))
    return lines


def _render_node(s: Section, name: str, indent: str, expanded: set[str], lines: list[str],
                 digits: int, max_nodes: int) -> None:
    g = lambda x: _g(x, digits)  # noqa: E731
    t = s.terms[name]
    expanded.add(name)
    live = [c for c in t.children if c.reaches]
    dead = [c for c in t.children if not c.reaches]
    symbols, numbers = [], []
    if t.direct is not None:
        symbols.append(f"∂P/∂o[{name}]")
        numbers.append(g(t.direct))
    for c in live[:_MAX_TERMS]:
        symbols.append(f"w({name},{c.node})·δ({c.node})")
        numbers.append(f"{_p(c.weight, digits)} × {_p(c.delta, digits)}")
    if len(live) > _MAX_TERMS:
        rest = sum(c.weight * c.delta for c in live[_MAX_TERMS:])
        symbols.append("…")
        numbers.append(f"{_p(rest, digits)} [Σ of {len(live) - _MAX_TERMS} more children]")
    head = f"{indent}δ({name}) = "
    pad = indent + " " * (len(head) - len(indent) - 2) + "= "
    lines.append(f"{head}f_{name}'(z[{name}]) · ({' + '.join(symbols)})"
                 f"      [{name}: {t.activation}, z = {g(t.z)}]")
    lines.append(f"{pad}{_p(t.fprime, digits)} · ({' + '.join(numbers)})")
    lines.append(f"{pad}{g(t.delta)}")
    if t.direct is not None and name in s.direct_note:
        lines.append(f"{indent}  direct term: {s.direct_note[name]}")
    elif name in s.outputs:
        lines.append(f"{indent}  ({name} is an output, but not P: no direct term)")
    if dead:
        names = ", ".join(c.node for c in dead[:6]) + (", …" if len(dead) > 6 else "")
        lines.append(f"{indent}  (+ {len(dead)} children with no path to P's output: δ = 0: {names})")
    for c in live:
        if c.node in expanded:
            lines.append(f"{indent}  δ({c.node}) = {g(c.delta)}   (expanded above)")
        elif len(expanded) >= max_nodes:
            lines.append(f"{indent}  δ({c.node}) = {g(c.delta)}   (not expanded: --max-nodes {max_nodes})")
        else:
            _render_node(s, c.node, indent + "  ", expanded, lines, digits, max_nodes)


def _dependence(ex: Explanation, s: Section, digits: int) -> list[str]:
    """The answer to 'does this derivative depend on the output's activation?'."""
    g = lambda x: _g(x, digits)  # noqa: E731
    terms = list(s.terms.values())
    on_paths = ", ".join(f"{t.node} ({t.activation})" for t in terms[:_MAX_TERMS])
    if len(terms) > _MAX_TERMS:
        on_paths += f", … ({len(terms)} nodes in all)"
    outs = [s.terms[y] for y in s.outputs if y in s.terms]
    lines = [f"  activations inside δ({ex.dst}): {on_paths}"]
    if s.output is None:
        lines.append("  the loss enters only through the direct terms ∂L/∂o at the outputs")
    for t in outs:
        factor = f"f_{t.node}'(z[{t.node}]) = {g(t.fprime)} ({t.activation})"
        if t.node == ex.dst:
            lines.append(f"  depends on the output's activation? yes: {t.node} is the output itself and"
                         f" δ({t.node}) carries the factor {factor}")
        else:
            lines.append(f"  depends on the output's activation? yes: every path from {ex.dst} to {t.node} ends in"
                         f" δ({t.node}) = f_{t.node}'(z[{t.node}])·(…), so {factor} multiplies each path's term")
        if t.activation == "identity":
            lines.append(f"    (identity makes that factor 1, so it is invisible here; with any other"
                         f" activation at {t.node} the derivative changes)")
    return lines
