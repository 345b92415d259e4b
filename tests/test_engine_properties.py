"""Hypothesis properties of the engine: file order, per-example sums, the mse/Jacobian identity, float32."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dags import network_seeds, permuted, random_inputs, random_network_dict, random_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgegrad
from edgegrad import Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

PROFILE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TIGHT = dict(rtol=1e-12, atol=1e-14)


def _close(a: Any, b: Any, **tol: float) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **(tol or TIGHT))


def _case(kw: dict[str, Any], batch: int, loss: str | None = None) -> tuple[dict[str, Any], np.ndarray, Any]:
    out_acts = ("sigmoid",) if loss == "bce" else None
    data = random_network_dict(output_activations=out_acts, **kw)
    X = random_inputs(kw["seed"], batch, len(data["inputs"]))
    T = random_targets(kw["seed"], loss, batch, len(data["outputs"])) if loss else None
    return data, X, T


modes = st.sampled_from([None, "mse", "bce", "softmax_ce"])


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 4), loss=modes, per_example=st.booleans(), data=st.data())
def test_shuffling_edges_permutes_edge_grads_and_changes_nothing_else(kw, batch, loss, per_example, data) -> None:
    net_data, X, T = _case(kw, batch, loss)
    perm = data.draw(st.permutations(range(len(net_data["edges"]))))
    opts = dict(targets=T, loss=loss, per_example=per_example and loss is not None)
    base = edgegrad.gradients(Network.from_dict(net_data), X, **opts)
    moved = edgegrad.gradients(Network.from_dict(permuted(net_data, edge_perm=perm)), X, **opts)
    _close(moved.edge_grads, base.edge_grads[..., list(perm)])
    _close(moved.outputs, base.outputs)
    _close(moved.deltas, base.deltas)
    assert (moved.loss is None) == (base.loss is None)
    if loss:
        assert abs(moved.loss - base.loss) <= 1e-12 * abs(base.loss) + 1e-300


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 4), loss=modes, data=st.data())
def test_shuffling_nodes_permutes_deltas_and_changes_nothing_else(kw, batch, loss, data) -> None:
    net_data, X, T = _case(kw, batch, loss)
    perm = data.draw(st.permutations(range(len(net_data["nodes"]))))
    base = edgegrad.gradients(Network.from_dict(net_data), X, targets=T, loss=loss)
    moved = edgegrad.gradients(Network.from_dict(permuted(net_data, node_perm=perm)), X, targets=T, loss=loss)
    _close(moved.deltas, base.deltas[..., list(perm)])
    _close(moved.edge_grads, base.edge_grads)
    _close(moved.outputs, base.outputs)


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 3), data=st.data())
def test_reordering_outputs_permutes_the_k_axis(kw, batch, data) -> None:
    net_data, X, _ = _case(kw, batch)
    perm = data.draw(st.permutations(range(len(net_data["outputs"]))))
    base = edgegrad.gradients(Network.from_dict(net_data), X)
    moved_data = dict(net_data, outputs=[net_data["outputs"][i] for i in perm])
    moved = edgegrad.gradients(Network.from_dict(moved_data), X)
    _close(moved.outputs, base.outputs[:, list(perm)])
    _close(moved.edge_grads, base.edge_grads[:, list(perm)])
    _close(moved.deltas, base.deltas[:, list(perm)])


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 6), loss=st.sampled_from(["mse", "bce", "softmax_ce"]),
       reduction=st.sampled_from(["mean", "sum"]))
def test_per_example_rows_sum_to_the_batch_gradient(kw, batch, loss, reduction) -> None:
    net_data, X, T = _case(kw, batch, loss)
    net = Network.from_dict(net_data)
    whole = edgegrad.gradients(net, X, targets=T, loss=loss, reduction=reduction)
    rows = edgegrad.gradients(net, X, targets=T, loss=loss, reduction=reduction, per_example=True)
    assert rows.edge_grads.shape == (batch, net.n_edges) and rows.deltas.shape == (batch, net.n_nodes)
    scale = max(1.0, float(np.abs(rows.edge_grads).max(initial=0)), float(np.abs(rows.deltas).max(initial=0)))
    _close(rows.edge_grads.sum(axis=0), whole.edge_grads, rtol=1e-12, atol=1e-14 * scale)
    _close(rows.deltas.sum(axis=0), whole.deltas, rtol=1e-12, atol=1e-14 * scale)
    assert abs(rows.loss - whole.loss) <= 1e-13 * abs(whole.loss) + 1e-300


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 6), reduction=st.sampled_from(["mean", "sum"]))
def test_mse_gradient_is_the_jacobian_contracted_with_the_residual(kw, batch, reduction) -> None:
    net_data, X, T = _case(kw, batch, "mse")
    net = Network.from_dict(net_data)
    jac = edgegrad.gradients(net, X)
    res = edgegrad.gradients(net, X, targets=T, loss="mse", reduction=reduction)
    count = batch * net.n_outputs if reduction == "mean" else 1
    r = 2.0 * (jac.outputs - T) / count                      # ∂L/∂y, B×K
    scale = 1e-14 * max(1.0, float(np.abs(jac.edge_grads).max(initial=0)) * float(np.abs(r).sum()))
    _close(res.edge_grads, np.einsum("bke,bk->e", jac.edge_grads, r), rtol=1e-11, atol=scale)
    _close(res.deltas, np.einsum("bkn,bk->n", jac.deltas, r), rtol=1e-11, atol=scale)
    _close(res.loss, np.sum((jac.outputs - T) ** 2) / count)
    each = edgegrad.gradients(net, X, targets=T, loss="mse", reduction=reduction, per_example=True)
    _close(each.edge_grads, np.einsum("bke,bk->be", jac.edge_grads, r), rtol=1e-11, atol=scale)


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 5), loss=modes, per_example=st.booleans())
def test_float32_is_close_to_float64(kw, batch, loss, per_example) -> None:
    net_data, X, T = _case(kw, batch, loss)
    net = Network.from_dict(net_data)
    opts = dict(targets=T, loss=loss, per_example=per_example and loss is not None)
    hi = edgegrad.gradients(net, X, **opts)
    lo = edgegrad.gradients(net, X, dtype="float32", **opts)
    for field in ("outputs", "edge_grads", "deltas"):
        a, b = getattr(lo, field), getattr(hi, field)
        assert a.shape == b.shape and a.dtype in (np.float32, np.float64), field
        assert np.isfinite(a).all()
        _close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(b).max(initial=0))))
    if loss:
        assert abs(lo.loss - hi.loss) <= 1e-4 * abs(hi.loss) + 1e-6


@PROFILE
@given(kw=network_seeds(max_nodes=12), batch=st.integers(1, 40), loss=modes)
def test_repeated_calls_are_bit_identical(kw, batch, loss) -> None:
    net_data, X, T = _case(kw, batch, loss)
    net = Network.from_dict(net_data)
    first = edgegrad.gradients(net, X, targets=T, loss=loss)
    again = edgegrad.gradients(Network.from_dict(net_data), X, targets=T, loss=loss)
    assert first == again
