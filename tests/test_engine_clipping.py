"""Per-example gradient norms and clipped sums (``norms``, ``clip_norm``) against an independent autograd."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dags import network_seeds, permuted, random_inputs, random_network_dict, random_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_gradients

import edgegrad
from edgegrad import Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

PROFILE = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOSSES = ["mse", "bce", "softmax_ce"]


def _case(kw: dict[str, Any], batch: int, loss: str) -> tuple[Network, np.ndarray, np.ndarray]:
    data = random_network_dict(output_activations=("sigmoid",) if loss == "bce" else None, **kw)
    X = random_inputs(kw["seed"], batch, len(data["inputs"]))
    return Network.from_dict(data), X, random_targets(kw["seed"], loss, batch, len(data["outputs"]))


def _own_rows(net: Network, X: np.ndarray, T: np.ndarray, loss: str) -> np.ndarray:
    """Each example's own gradient r_b (its reduction="sum" loss term), edges then biases, by the reference."""
    ref = reference_gradients(net, X, T, loss=loss, reduction="sum", per_example=True)
    return np.concatenate([ref.edge_grads, ref.deltas], axis=1)


def _scale(loss: str, reduction: str, batch: int, k: int) -> float:
    if reduction == "sum":
        return 1.0
    return 1.0 / batch if loss == "softmax_ce" else 1.0 / (batch * k)


def _agree(got: np.ndarray, want: np.ndarray, rtol: float = 1e-9) -> None:
    """Every element within ``rtol`` of the field's largest magnitude."""
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-300)
    assert np.max(np.abs(np.asarray(got) - want), initial=0.0) <= rtol * scale, (got, want)


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 5), loss=st.sampled_from(LOSSES),
       reduction=st.sampled_from(["mean", "sum"]), per_example=st.booleans(), quantile=st.floats(0.0, 1.0))
def test_norms_and_clipped_sums_equal_an_independent_per_example_autograd(kw, batch, loss, reduction, per_example,
                                                                          quantile) -> None:
    net, X, T = _case(kw, batch, loss)
    rows = _own_rows(net, X, T, loss)
    norms = np.linalg.norm(rows, axis=1)
    C = float(np.quantile(norms, quantile)) or 1.0
    c = np.where(norms > 0, np.minimum(1.0, C / np.where(norms > 0, norms, 1.0)), 1.0)
    s = _scale(loss, reduction, batch, net.n_outputs)
    res = edgegrad.gradients(net, X, T, loss=loss, reduction=reduction, per_example=per_example, clip_norm=C)
    _agree(res.norms, norms)
    want = s * c[:, None] * rows
    E = net.n_edges
    if per_example:
        _agree(res.edge_grads, want[:, :E])
        _agree(res.deltas, want[:, E:])
    else:
        _agree(res.edge_grads, want[:, :E].sum(axis=0))
        _agree(res.deltas, want[:, E:].sum(axis=0))
    plain = edgegrad.gradients(net, X, T, loss=loss, reduction=reduction)
    np.testing.assert_array_equal(res.outputs, plain.outputs)
    assert res.loss == plain.loss


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 5), loss=st.sampled_from(LOSSES),
       reduction=st.sampled_from(["mean", "sum"]))
def test_norms_alone_add_norms_to_the_usual_result_bit_for_bit(kw, batch, loss, reduction) -> None:
    net, X, T = _case(kw, batch, loss)
    for per_example in (False, True):
        plain = edgegrad.gradients(net, X, T, loss=loss, reduction=reduction, per_example=per_example)
        res = edgegrad.gradients(net, X, T, loss=loss, reduction=reduction, per_example=per_example, norms=True)
        assert plain.norms is None and res.norms.shape == (batch,)
        for field in ("outputs", "edge_grads", "deltas"):
            np.testing.assert_array_equal(getattr(res, field), getattr(plain, field))
        _agree(res.norms, np.linalg.norm(_own_rows(net, X, T, loss), axis=1))


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 5), loss=st.sampled_from(LOSSES))
def test_a_clip_norm_above_every_norm_is_the_plain_gradient(kw, batch, loss) -> None:
    net, X, T = _case(kw, batch, loss)
    plain = edgegrad.gradients(net, X, T, loss=loss)
    res = edgegrad.gradients(net, X, T, loss=loss, clip_norm=2.0 * float(np.max(plain_norms(net, X, T, loss))) + 1.0)
    np.testing.assert_allclose(res.edge_grads, plain.edge_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.deltas, plain.deltas, rtol=1e-12, atol=1e-15)


def plain_norms(net: Network, X: np.ndarray, T: np.ndarray, loss: str) -> np.ndarray:
    return edgegrad.gradients(net, X, T, loss=loss, norms=True).norms


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 5), loss=st.sampled_from(LOSSES), quantile=st.floats(0.0, 1.0))
def test_clipped_rows_sum_to_the_clipped_gradient_and_have_norm_at_most_c(kw, batch, loss, quantile) -> None:
    net, X, T = _case(kw, batch, loss)
    C = float(np.quantile(plain_norms(net, X, T, loss), quantile)) or 1.0
    rows = edgegrad.gradients(net, X, T, loss=loss, reduction="sum", per_example=True, clip_norm=C)
    total = edgegrad.gradients(net, X, T, loss=loss, reduction="sum", clip_norm=C)
    np.testing.assert_allclose(rows.edge_grads.sum(axis=0), total.edge_grads, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rows.deltas.sum(axis=0), total.deltas, rtol=1e-10, atol=1e-13)
    clipped = np.linalg.norm(np.concatenate([rows.edge_grads, rows.deltas], axis=1), axis=1)
    assert np.all(clipped <= C * (1 + 1e-12))


@PROFILE
@given(kw=network_seeds(), batch=st.integers(1, 4), loss=st.sampled_from(LOSSES), data=st.data())
def test_norms_do_not_depend_on_edge_or_node_order(kw, batch, loss, data) -> None:
    net, X, T = _case(kw, batch, loss)
    d = net.to_dict()
    moved = permuted(d, edge_perm=data.draw(st.permutations(range(len(d["edges"])))),
                     node_perm=data.draw(st.permutations(range(len(d["nodes"])))))
    np.testing.assert_allclose(plain_norms(Network.from_dict(moved), X, T, loss), plain_norms(net, X, T, loss),
                               rtol=1e-12, atol=1e-300)


def test_float32_agrees_with_float64() -> None:
    net, X, T = _case({"seed": 11, "n_inputs": 3, "n_nodes": 9, "n_outputs": 2, "p_edge": 0.45}, 40, "mse")
    C = float(np.median(plain_norms(net, X, T, "mse")))
    a = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C)
    b = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C, dtype="float32")
    assert b.norms.dtype == np.float32 and b.edge_grads.dtype == np.float32
    for field in ("norms", "edge_grads", "deltas"):
        _agree(getattr(b, field), getattr(a, field), rtol=1e-4)


def test_slabs_and_shards_fold_to_the_whole_batch() -> None:
    """Rows in several slabs, and shards folded in order, give the one-call result (clipped sums, norms)."""
    from edgegrad.engine import memory
    from edgegrad.engine.api import fold_partials, partial_gradients

    net, X, T = _case({"seed": 5, "n_inputs": 4, "n_nodes": 9, "n_outputs": 2, "p_edge": 0.45}, 90, "mse")
    C = float(np.median(plain_norms(net, X, T, "mse")))
    whole = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C)
    parts = [partial_gradients(net, X[a:a + 30], T[a:a + 30], loss="mse", clip_norm=C, total_rows=90, row_offset=a)
             for a in range(0, 90, 30)]
    folded = fold_partials(parts)
    np.testing.assert_allclose(folded.edge_grads, whole.edge_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(folded.norms, whole.norms, rtol=1e-14)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(memory, "MIN_CACHE_ROWS", 7)
        mp.setattr(memory, "CACHE_BYTES", 1)
        slabbed = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C)
    np.testing.assert_allclose(slabbed.edge_grads, whole.edge_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(slabbed.norms, whole.norms, rtol=1e-14)


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip_norm=0.0), "clip_norm: must be finite and > 0, got 0.0"),
    (dict(clip_norm=-1), "clip_norm: must be finite and > 0, got -1.0"),
    (dict(clip_norm=float("nan")), "clip_norm: must be finite and > 0, got nan"),
    (dict(clip_norm=float("inf")), "clip_norm: must be finite and > 0, got inf"),
    (dict(clip_norm="1"), "clip_norm: expected a number > 0, got '1'"),
    (dict(clip_norm=True), "clip_norm: expected a number > 0, got True"),
    (dict(norms="yes"), "norms: expected true or false, got 'yes'"),
    (dict(norms=True, loss=None, targets=None), "norms: per-example norms and clipping need a loss"),
    (dict(clip_norm=1.0, loss=None, targets=None), "clip_norm: per-example norms and clipping need a loss"),
])
def test_bad_norm_options_are_refused_naming_them(kwargs: dict, message: str) -> None:
    net, X, T = _case({"seed": 1, "n_inputs": 3, "n_nodes": 5, "n_outputs": 1, "p_edge": 0.45}, 3, "mse")
    opts = {"targets": T, "loss": "mse", **kwargs}
    with pytest.raises(edgegrad.InvalidInput) as info:
        edgegrad.gradients(net, X, **opts)
    assert str(info.value).startswith(message)


def test_a_norm_past_the_range_is_an_overflow_error_not_inf() -> None:
    data = {"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y", "activation": "identity", "bias": 0.0}],
            "edges": [{"src": "x", "dst": "y", "weight": 1e160}]}
    net = Network.from_dict(data)
    X, T = np.array([[1e150], [1.0]]), np.array([[0.0], [0.0]])
    with pytest.raises(edgegrad.InvalidInput):
        edgegrad.gradients(net, X, T, loss="mse", reduction="sum", norms=True)   # the loss overflows first
    big = Network.from_dict({**data, "edges": [{"src": "x", "dst": "y", "weight": 1e77}]})
    res = edgegrad.gradients(big, np.array([[1e76]]), np.array([[0.0]]), loss="mse", reduction="sum", norms=True)
    # y = 1e153, δ = 2e153, r = (δ·x, δ) = (2e229, 2e153): the squares overflow, the norm does not
    assert res.norms[0] == pytest.approx(2e229, rel=1e-12)
    f32 = Network.from_dict({**data, "edges": [{"src": "x", "dst": "y", "weight": 1e18}]})
    with pytest.raises(edgegrad.InvalidInput, match=r"norms\[0\]: the gradient norm of inputs row 0 overflows float32"):
        edgegrad.gradients(f32, np.array([[1e18]]), np.array([[0.0]]), loss="mse", reduction="sum", norms=True,
                           dtype="float32")


@pytest.mark.parametrize("layered", [False, True])
def test_the_forward_pass_sums_the_sources_squares_as_the_norm_pass_would(layered: bool) -> None:
    """``PassBuffers.squares`` (made in the forward pass) gives the kernel's ``example_squares`` Σ_v δ[v]²·(1 + Σ o[u]²)
    over each node's in-edges; the numba kernel's holds every row, numpy's every row but those of a fully connected
    level after its first."""
    from edgegrad.engine import kernel as seam
    from edgegrad.engine import passes
    from edgegrad.engine.clipping import _fan_blocks, _segments
    from edgegrad.engine.plan import get_plan

    net, X, _ = _case({"seed": 3, "n_inputs": 4, "n_nodes": 12, "n_outputs": 2, "p_edge": 0.5}, 7, "mse")
    if layered:                                                        # fully connected levels of several nodes
        rng = np.random.default_rng(3)
        net = Network.from_layers([rng.standard_normal((6, 4)), rng.standard_normal((5, 6)), rng.standard_normal((2, 5))],
                                  activations=["tanh", "sigmoid", "identity"])
    plan = get_plan(net)
    chosen = seam.choose_kernel(plan)
    work = np.empty(passes.pass_bytes(plan, 7, None, True), dtype=np.uint8)
    buffers = chosen.forward(plan, X, None, work, True)
    assert buffers.squares is not None and buffers.squares.shape == (net.n_nodes, 7)
    o = buffers.acts
    want = np.ones((net.n_nodes, 7))                                  # rows of nodes that reach no output: 1
    live = plan.file_dst < plan.n_live
    np.add.at(want, plan.file_dst[live], np.square(o[plan.file_src[live]]))  # each edge (u, v): o[u]² into row v
    assert plan.n_live < net.n_nodes or layered                        # a dead node is among them
    held = np.ones(net.n_nodes, dtype=bool)                            # rows the numpy kernel writes
    if chosen.name == "numpy":
        for start, stop, full in _segments(plan):
            held[start + 1:stop] = not full
    assert layered == all(b.kind == "full" and b.stop - b.start > 1 for b in _fan_blocks(plan))
    np.testing.assert_allclose(buffers.squares[held], want[held], rtol=1e-14)
    deltas = np.random.default_rng(3).standard_normal((net.n_nodes, 7))
    np.testing.assert_allclose(chosen.example_squares(plan, deltas, buffers.squares),
                               np.einsum("vb,vb->b", np.square(deltas), want), rtol=1e-14)
    assert chosen.forward(plan, X, None, work).squares is None


def test_a_tight_squares_limit_narrows_clipped_slabs_and_leaves_norms_to_blocks(monkeypatch) -> None:
    """Where a slab's squares would pass ``squares_limit``, a clipped call runs narrower slabs and a norms call
    (whose slabs must stay those of the plain call) computes its norms in blocks: the same results."""
    from edgegrad.engine import passes

    net, X, T = _case({"seed": 6, "n_inputs": 4, "n_nodes": 10, "n_outputs": 2, "p_edge": 0.45}, 90, "mse")
    C = float(np.median(plain_norms(net, X, T, "mse")))
    whole = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C)
    normed = edgegrad.gradients(net, X, T, loss="mse", norms=True)
    seen: list[tuple[int, bool]] = []
    real = passes.pass_buffers

    def spy(plan, x, n_outputs=None, workspace=None, squares=False):
        buffers = real(plan, x, n_outputs, workspace, squares)
        seen.append((x.shape[0], buffers.squares is not None))
        return buffers

    monkeypatch.setattr(passes, "pass_buffers", spy)
    monkeypatch.setattr(passes, "squares_limit", lambda: 8 * net.n_nodes * 20)  # 20 rows of squares
    narrow = edgegrad.gradients(net, X, T, loss="mse", clip_norm=C)
    assert seen and all(rows == 16 or rows == 90 % 16 for rows, _ in seen) and all(made for _, made in seen)
    seen.clear()
    blocks = edgegrad.gradients(net, X, T, loss="mse", norms=True)
    assert seen == [(90, False)]
    np.testing.assert_allclose(narrow.edge_grads, whole.edge_grads, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(narrow.deltas, whole.deltas, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(narrow.norms, whole.norms, rtol=1e-14)
    np.testing.assert_allclose(blocks.norms, normed.norms, rtol=1e-14)
    for field in ("outputs", "edge_grads", "deltas"):
        np.testing.assert_array_equal(getattr(blocks, field), getattr(normed, field))
