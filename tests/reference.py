"""An independent reference autograd for edgegrad networks: scalar reverse mode, one example at a time.

Written from the contract alone (``shared/spec/network-and-gradients.md``), in the style of a
tiny scalar autodiff engine: every number is a :class:`Var` that remembers its parents and the
local derivative towards each of them; :func:`backward` walks the recorded graph in reverse
topological order. Nothing here imports the engine (``edgegrad.engine``) or
``edgegrad.model.activations``: the activations, losses and reductions are re-implemented with ``math``.

The network is read through its JSON form (``Network.to_dict()`` or a plain dict), so the
reference does not depend on the engine's array layout either. It is slow and meant for small
networks in tests only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Var",
    "backward",
    "ACTIVATION_FUNCS",
    "activation_value",
    "activation_derivative",
    "RefResult",
    "reference_gradients",
    "reference_forward",
    "reference_objective",
    "LOSSES",
    "REDUCTIONS",
    "numeric_gradient",
    "assert_agrees",
]

LOSSES = ("mse", "bce", "softmax_ce")
REDUCTIONS = ("mean", "sum")
_LOG_FLOOR = -100.0
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------- scalar autodiff
class Var:
    """A scalar in the recorded computation: its value and (parent, local derivative) pairs."""

    __slots__ = ("data", "parents")

    def __init__(self, data: float, parents: tuple[tuple[Var, float], ...] = ()) -> None:
        self.data = float(data)
        self.parents = parents

    def __add__(self, other: Var | float) -> Var:
        other = _var(other)
        return Var(self.data + other.data, ((self, 1.0), (other, 1.0)))

    __radd__ = __add__

    def __mul__(self, other: Var | float) -> Var:
        other = _var(other)
        return Var(self.data * other.data, ((self, other.data), (other, self.data)))

    __rmul__ = __mul__

    def __neg__(self) -> Var:
        return Var(-self.data, ((self, -1.0),))

    def __sub__(self, other: Var | float) -> Var:
        return self + (-_var(other))

    def __rsub__(self, other: float) -> Var:
        return _var(other) + (-self)

    def exp(self) -> Var:
        """e**self."""
        value = math.exp(self.data)
        return Var(value, ((self, value),))

    def log(self) -> Var:
        """Natural log (self must be positive)."""
        return Var(math.log(self.data), ((self, 1.0 / self.data),))

    def square(self) -> Var:
        """self**2."""
        return Var(self.data * self.data, ((self, 2.0 * self.data),))

    def unary(self, value: float, derivative: float) -> Var:
        """A node with a given value and local derivative (how activations enter the graph)."""
        return Var(value, ((self, derivative),))

    def __repr__(self) -> str:
        return f"Var({self.data!r})"


def _var(x: Var | float) -> Var:
    return x if isinstance(x, Var) else Var(float(x))


def backward(root: Var) -> Callable[[Var], float]:
    """Reverse-mode sweep from ``root``; returns ``grad(v) = d root / d v`` (0 for unreached v)."""
    order: list[Var] = []
    seen: set[int] = set()
    stack: list[tuple[Var, bool]] = [(root, False)]
    while stack:  # iterative post-order DFS: a var comes after everything it depends on
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        for parent, _ in v.parents:
            if id(parent) not in seen:
                stack.append((parent, False))
    grads: dict[int, float] = {id(root): 1.0}
    for v in reversed(order):
        g = grads.get(id(v), 0.0)
        if g == 0.0:
            continue
        for parent, local in v.parents:
            grads[id(parent)] = grads.get(id(parent), 0.0) + g * local
    return lambda v: grads.get(id(v), 0.0)


# ---------------------------------------------------------------------------- activations
def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _phi_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z * _INV_SQRT_2)


def _phi_pdf(z: float) -> float:
    if abs(z) > 60.0:
        return 0.0
    return math.exp(-0.5 * z * z) * _INV_SQRT_2PI


def _gauss(z: float) -> float:
    return 0.0 if abs(z) > 30.0 else math.exp(-z * z)


def _softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _sign(z: float) -> float:
    return 1.0 if z > 0 else (-1.0 if z < 0 else 0.0)


#: name -> (f(z), f'(z)) with the contract's conventions at the kinks (section 3).
ACTIVATION_FUNCS: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "identity": (lambda z: z, lambda z: 1.0),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "relu": (lambda z: z if z > 0 else 0.0, lambda z: 1.0 if z > 0 else 0.0),
    "leaky_relu": (lambda z: z if z > 0 else 0.01 * z, lambda z: 1.0 if z > 0 else 0.01),
    "elu": (lambda z: z if z > 0 else math.expm1(z), lambda z: 1.0 if z > 0 else math.exp(z)),
    "softplus": (_softplus, _sigmoid),
    "gelu": (lambda z: z * _phi_cdf(z), lambda z: _phi_cdf(z) + (z * _phi_pdf(z) if _phi_pdf(z) else 0.0)),
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))),
    "sin": (math.sin, math.cos),
    "gauss": (_gauss, lambda z: -2.0 * z * _gauss(z) if _gauss(z) else 0.0),
    "abs": (abs, _sign),
}


def activation_value(name: str, z: float) -> float:
    """f(z) for the named activation."""
    return ACTIVATION_FUNCS[name][0](float(z))


def activation_derivative(name: str, z: float) -> float:
    """f'(z) for the named activation, with the contract's convention at kinks."""
    return ACTIVATION_FUNCS[name][1](float(z))


def _activate(name: str, z: Var) -> Var:
    f, fprime = ACTIVATION_FUNCS[name]
    return z.unary(f(z.data), fprime(z.data))


# ---------------------------------------------------------------------------- the network
@dataclass
class _Graph:
    inputs: list[str]
    outputs: list[str]
    node_ids: list[str]
    activation: dict[str, str]
    bias: list[float]
    edges: list[tuple[str, str]]
    weights: list[float]
    order: list[str]                     # computed nodes in a topological order
    incoming: dict[str, list[int]]       # node -> indices of its incoming edges


def _graph(net: Any) -> _Graph:
    data = net.to_dict() if hasattr(net, "to_dict") else net
    inputs = list(data["inputs"])
    nodes = data["nodes"]
    node_ids = [n["id"] for n in nodes]
    activation = {n["id"]: n.get("activation", "identity") for n in nodes}
    bias = [float(n.get("bias", 0.0)) for n in nodes]
    edges = [(e["src"], e["dst"]) for e in data.get("edges", [])]
    weights = [float(e["weight"]) for e in data.get("edges", [])]
    incoming: dict[str, list[int]] = {v: [] for v in node_ids}
    for i, (_, dst) in enumerate(edges):
        incoming[dst].append(i)
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the DFS path, 2: done
    for start in node_ids:
        stack = [(start, False)]
        while stack:
            v, expanded = stack.pop()
            if expanded:
                state[v] = 2
                order.append(v)
                continue
            if state.get(v):
                continue
            state[v] = 1
            stack.append((v, True))
            for i in incoming[v]:
                u = edges[i][0]
                if u in activation and not state.get(u):
                    stack.append((u, False))
    return _Graph(inputs, list(data["outputs"]), node_ids, activation, bias, edges, weights, order, incoming)


def _forward_vars(g: _Graph, x: Sequence[float], w: list[Var], b: list[Var]) -> tuple[dict[str, Var], dict[str, Var]]:
    """Build z and o for every vertex of one example on the given weight and bias leaves."""
    o: dict[str, Var] = {name: Var(float(v)) for name, v in zip(g.inputs, x)}
    z: dict[str, Var] = {}
    pos = {v: i for i, v in enumerate(g.node_ids)}
    for v in g.order:
        total = b[pos[v]]
        for i in g.incoming[v]:
            total = total + w[i] * o[g.edges[i][0]]
        z[v] = total
        o[v] = _activate(g.activation[v], total)
    return z, o


def _clamped_log(v: Var) -> Var:
    """ln v, clamped at -100 (a constant, derivative 0, where the clamp is active)."""
    if v.data > 0 and math.log(v.data) > _LOG_FLOOR:
        return v.log()
    return Var(_LOG_FLOOR)


def _example_loss(loss: str, ys: list[Var], ts: Sequence[float]) -> Var:
    """Example b's unscaled loss term Σ_k ℓ(y_k, t_k) (softmax_ce over the whole row)."""
    if loss == "mse":
        return _sum((y - float(t)).square() for y, t in zip(ys, ts))
    if loss == "bce":
        return -_sum(float(t) * _clamped_log(y) + (1.0 - float(t)) * _clamped_log(1.0 - y)
                     for y, t in zip(ys, ts))
    if loss == "softmax_ce":
        m = max(y.data for y in ys)  # a constant shift: the log-sum-exp does not depend on it
        lse = m + _sum((y - m).exp() for y in ys).log()
        return -_sum(float(t) * (y - lse) for y, t in zip(ys, ts))
    raise ValueError(f"unknown loss {loss!r}")


def _sum(terms: Iterable[Var]) -> Var:
    total: Var | None = None
    for t in terms:
        total = t if total is None else total + t
    return total if total is not None else Var(0.0)


def _scale(loss: str, reduction: str, batch: int, k: int) -> float:
    if reduction == "sum":
        return 1.0
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    return 1.0 / batch if loss == "softmax_ce" else 1.0 / (batch * k)


# ---------------------------------------------------------------------------- public entry points
@dataclass
class RefResult:
    """The reference's answer, shaped as in the contract (section 4)."""

    outputs: np.ndarray
    loss: float | None
    edge_grads: np.ndarray
    deltas: np.ndarray


def reference_forward(net: Any, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """(z, o) per example: z is B×N in node file order, o is B×(I+N) inputs then nodes."""
    g = _graph(net)
    X = np.asarray(X, dtype=np.float64)
    zs = np.zeros((X.shape[0], len(g.node_ids)))
    os_ = np.zeros((X.shape[0], len(g.inputs) + len(g.node_ids)))
    w = [Var(v) for v in g.weights]
    b = [Var(v) for v in g.bias]
    for r, x in enumerate(X):
        z, o = _forward_vars(g, x, w, b)
        zs[r] = [z[v].data for v in g.node_ids]
        os_[r] = [o[v].data for v in g.inputs + g.node_ids]
    return zs, os_


def reference_gradients(net: Any, X: Any, targets: Any = None, loss: str | None = None,
                        reduction: str = "mean", per_example: bool = False) -> RefResult:
    """Outputs, loss and gradients by scalar reverse mode, laid out in file order."""
    g = _graph(net)
    X = np.asarray(X, dtype=np.float64)
    B, K, E, N = X.shape[0], len(g.outputs), len(g.edges), len(g.node_ids)
    outputs = np.zeros((B, K))
    if loss is None:
        edge_grads = np.zeros((B, K, E))
        deltas = np.zeros((B, K, N))
        w = [Var(v) for v in g.weights]
        b = [Var(v) for v in g.bias]
        for r in range(B):
            _, o = _forward_vars(g, X[r], w, b)
            for k, y in enumerate(g.outputs):
                outputs[r, k] = o[y].data
                grad = backward(o[y])
                edge_grads[r, k] = [grad(v) for v in w]
                deltas[r, k] = [grad(v) for v in b]
        return RefResult(outputs, None, edge_grads, deltas)

    T = np.asarray(targets, dtype=np.float64)
    scale = _scale(loss, reduction, B, K)
    if per_example:
        # fresh leaves for every example: row b holds example b's own contribution
        edge_rows, delta_rows, total = np.zeros((B, E)), np.zeros((B, N)), 0.0
        for r in range(B):
            w = [Var(v) for v in g.weights]
            b = [Var(v) for v in g.bias]
            _, o = _forward_vars(g, X[r], w, b)
            ys = [o[y] for y in g.outputs]
            outputs[r] = [y.data for y in ys]
            L = scale * _example_loss(loss, ys, T[r])
            total += L.data
            grad = backward(L)
            edge_rows[r] = [grad(v) for v in w]
            delta_rows[r] = [grad(v) for v in b]
        return RefResult(outputs, total, edge_rows, delta_rows)

    # one graph for the whole batch on shared leaves; the sweep accumulates over examples
    w = [Var(v) for v in g.weights]
    b = [Var(v) for v in g.bias]
    terms = []
    for r in range(B):
        _, o = _forward_vars(g, X[r], w, b)
        ys = [o[y] for y in g.outputs]
        outputs[r] = [y.data for y in ys]
        terms.append(_example_loss(loss, ys, T[r]))
    L = scale * _sum(terms)
    grad = backward(L)
    return RefResult(outputs, L.data, np.array([grad(v) for v in w]), np.array([grad(v) for v in b]))


def reference_objective(net: Any, X: Any, targets: Any = None, loss: str | None = None,
                        reduction: str = "mean", weights: Sequence[float] | None = None,
                        biases: Sequence[float] | None = None) -> tuple[np.ndarray, float | None]:
    """Plain forward pass with optionally replaced weights/biases: (outputs B×K, loss or None)."""
    g = _graph(net)
    if weights is not None:
        g.weights = [float(v) for v in weights]
    if biases is not None:
        g.bias = [float(v) for v in biases]
    X = np.asarray(X, dtype=np.float64)
    w = [Var(v) for v in g.weights]
    b = [Var(v) for v in g.bias]
    outputs = np.zeros((X.shape[0], len(g.outputs)))
    terms = []
    for r in range(X.shape[0]):
        _, o = _forward_vars(g, X[r], w, b)
        ys = [o[y] for y in g.outputs]
        outputs[r] = [y.data for y in ys]
        if loss is not None:
            terms.append(_example_loss(loss, ys, np.asarray(targets, dtype=np.float64)[r]))
    if loss is None:
        return outputs, None
    return outputs, _scale(loss, reduction, X.shape[0], len(g.outputs)) * _sum(terms).data


def numeric_gradient(f: Callable[[np.ndarray], Any], params: Sequence[float], h: float = 1e-3) -> np.ndarray:
    """Five-point central differences of ``f`` (returning an array) w.r.t. each entry of ``params``.

    The result has shape ``params.shape + f(params).shape``; the error is O(h^4).
    """
    p = np.array(params, dtype=np.float64)
    cols = []
    for i in range(p.size):
        def at(step: float, i: int = i) -> np.ndarray:
            q = p.copy()
            q[i] += step
            return np.asarray(f(q), dtype=np.float64)
        cols.append((-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h))
    return np.array(cols)


def assert_agrees(got: Any, want: Any, rtol: float = 1e-9) -> None:
    """Results agree field by field to ``rtol`` relative (plus a 1e-12 floor for exact zeros)."""
    for field in ("outputs", "edge_grads", "deltas"):
        g, w = np.asarray(getattr(got, field)), np.asarray(getattr(want, field))
        assert g.shape == w.shape, f"{field}: shape {g.shape}, reference {w.shape}"
        floor = 1e-12 * max(1.0, float(np.max(np.abs(w), initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=rtol, atol=floor, err_msg=field)
    if want.loss is None:
        assert got.loss is None, f"loss: {got.loss!r} in output mode"
    else:
        assert got.loss is not None and abs(got.loss - want.loss) <= rtol * abs(want.loss) + 1e-300, \
            f"loss: {got.loss!r}, reference {want.loss!r}"
