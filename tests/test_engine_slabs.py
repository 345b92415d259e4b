"""Row slabs and shards: bounded engine memory, results equal to one unslabbed pass, global row names."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import numpy as np
import pytest
from dags import random_inputs, random_network, random_targets

import edgegrad
from edgegrad import InvalidInput, Network
from edgegrad.engine import memory, workspace
from edgegrad.engine.api import fold_partials, partial_gradients, working_memory_bytes

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

MODES = [(None, False), ("mse", False), ("mse", True), ("bce", False), ("softmax_ce", True)]
HUGE_BUDGET = 1 << 60


@pytest.fixture(autouse=True)
def _budget_from_the_module(monkeypatch) -> None:
    """These tests set ``memory.SLAB_BYTES`` themselves: an EDGEGRAD_SLAB_BYTES of the caller would win."""
    monkeypatch.delenv("EDGEGRAD_SLAB_BYTES", raising=False)


def _net(seed: int = 3) -> Network:
    return random_network(seed, n_inputs=4, n_nodes=12, n_outputs=3,
                          output_activations=("sigmoid",))


def _call(net: Network, X: np.ndarray, loss: str | None, per_example: bool, **kw: Any) -> edgegrad.GradientResult:
    T = random_targets(1, loss, X.shape[0], net.n_outputs) if loss else None
    return edgegrad.gradients(net, X, targets=T, loss=loss, per_example=per_example, **kw)


def _close(got: edgegrad.GradientResult, want: edgegrad.GradientResult, tol: float = 1e-12) -> None:
    assert (got.loss is None) == (want.loss is None)
    if want.loss is not None:
        assert got.loss == pytest.approx(want.loss, rel=tol, abs=tol)
    for field in ("outputs", "edge_grads", "deltas"):
        a, b = getattr(got, field), getattr(want, field)
        assert a.shape == b.shape and a.dtype == b.dtype, field
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())), err_msg=field)


@pytest.mark.parametrize("loss, per_example", MODES)
@pytest.mark.parametrize("slab_budget", [1, 3000])
def test_slabbed_equals_one_pass_and_repeats_bit_for_bit(monkeypatch, loss, per_example, slab_budget) -> None:
    net = _net()
    X = random_inputs(5, 37, net.n_inputs)
    monkeypatch.setattr(memory, "SLAB_BYTES", HUGE_BUDGET)
    whole = _call(net, X, loss, per_example)
    monkeypatch.setattr(memory, "SLAB_BYTES", slab_budget)           # 1: one row per slab; 3000: a few rows
    monkeypatch.setattr(memory, "EDGE_CHUNK_BYTES", 1)               # and one edge per gradient chunk
    assert memory.slab_rows(net.n_inputs, net.n_nodes, net.n_outputs, loss, per_example) < X.shape[0]
    slabbed = _call(net, X, loss, per_example)
    _close(slabbed, whole)
    assert _call(net, X, loss, per_example) == slabbed                 # bit-identical on a rerun


def test_the_environment_sets_the_slab_budget(monkeypatch) -> None:
    monkeypatch.setenv("EDGEGRAD_SLAB_BYTES", "12345")
    assert memory.slab_budget() == 12345
    monkeypatch.delenv("EDGEGRAD_SLAB_BYTES")
    assert memory.slab_budget() == memory.SLAB_BYTES


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss, per_example", MODES)
def test_partials_of_row_ranges_fold_into_the_whole_batch(monkeypatch, loss, per_example, dtype) -> None:
    net = _net(4)
    B = 23
    X = random_inputs(6, B, net.n_inputs)
    T = random_targets(2, loss, B, net.n_outputs) if loss else None
    reduction = "mean"
    whole = edgegrad.gradients(net, X, targets=T, loss=loss, per_example=per_example, dtype=dtype)
    cuts = [0, 1, 9, 10, 23]
    monkeypatch.setattr(memory, "SLAB_BYTES", 2000)                  # shards slab inside too
    parts = [partial_gradients(net, X[a:b], None if T is None else T[a:b], loss, reduction, per_example, dtype,
                               total_rows=B, row_offset=a) for a, b in zip(cuts[:-1], cuts[1:])]
    folded = fold_partials(parts)
    _close(folded, whole, 1e-12 if dtype == "float64" else 1e-5)
    assert fold_partials(parts) == folded                              # the same parts fold bit-identically


def test_a_partial_share_is_the_rows_terms_over_the_whole_batch() -> None:
    net = _net()
    X = random_inputs(1, 8, net.n_inputs)
    T = random_targets(1, "mse", 8, net.n_outputs)
    part = partial_gradients(net, X[:2], T[:2], "mse", total_rows=8)
    alone = edgegrad.gradients(net, X[:2], targets=T[:2], loss="mse")
    assert part.loss == pytest.approx(alone.loss * 2 / 8, rel=1e-14)   # mean over 8 rows, not 2
    np.testing.assert_allclose(part.edge_grads, alone.edge_grads / 4, rtol=1e-13)
    summed = partial_gradients(net, X[:2], T[:2], "mse", "sum", total_rows=8)
    assert summed.loss == pytest.approx(edgegrad.gradients(net, X[:2], targets=T[:2], loss="mse",
                                                           reduction="sum").loss, rel=1e-14)


def test_partial_gradients_checks_its_rows() -> None:
    net = _net()
    X = random_inputs(1, 4, net.n_inputs)
    with pytest.raises(InvalidInput, match=r"^total_rows: 5 is less than row_offset 2 \+ these 4 rows"):
        partial_gradients(net, X, total_rows=5, row_offset=2)
    for bad in (-1, 2.0, True, "4"):
        with pytest.raises(InvalidInput, match=r"^total_rows: expected a non-negative integer"):
            partial_gradients(net, X, total_rows=bad)
    X[1, 2] = np.nan
    with pytest.raises(InvalidInput, match=r"^inputs\[101\]\[2\]: must be finite"):
        partial_gradients(net, X, total_rows=1000, row_offset=100)
    with pytest.raises(TypeError):
        partial_gradients("not a network", X, total_rows=4)


def test_fold_partials_refuses_nothing_and_mixed_parts() -> None:
    net = _net()
    X = random_inputs(1, 4, net.n_inputs)
    T = random_targets(1, "mse", 4, net.n_outputs)
    with pytest.raises(ValueError, match="no parts"):
        fold_partials([])
    summed = edgegrad.gradients(net, X, targets=T, loss="mse")
    rows = edgegrad.gradients(net, X, targets=T, loss="mse", per_example=True)
    with pytest.raises(ValueError, match="cannot fold"):
        fold_partials([rows, summed])
    once = fold_partials([summed])
    assert once == summed and once.edge_grads is not summed.edge_grads  # a copy: parts are never changed


OVERFLOW = Network.from_dict({
    "inputs": ["x"], "outputs": ["y"],
    "nodes": [{"id": "h", "activation": "tanh"}, {"id": "y"}, {"id": "big"}],
    "edges": [{"src": "x", "dst": "h", "weight": 1.0}, {"src": "h", "dst": "y", "weight": 1.0},
              {"src": "x", "dst": "big", "weight": 1e10}, {"src": "big", "dst": "y", "weight": 1.0}],
})


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("loss, per_example", [(None, False), ("mse", False), ("mse", True)])
def test_overflow_names_the_global_row(monkeypatch, loss, per_example) -> None:
    X = np.ones((12, 1))
    X[9, 0] = 1e300
    T = np.zeros((12, 1)) if loss else None
    monkeypatch.setattr(memory, "SLAB_BYTES", 1)                       # one row per slab: row 9 is slab 9's row 0
    with pytest.raises(InvalidInput, match=r"^nodes\[2\]: its value overflows float64 at inputs row 9 "):
        edgegrad.gradients(OVERFLOW, X, targets=T, loss=loss, per_example=per_example)
    with pytest.raises(InvalidInput, match=r"^nodes\[2\]: its value overflows float64 at inputs row 1009 "):
        partial_gradients(OVERFLOW, X, T, loss, per_example=per_example, total_rows=2000, row_offset=1000)


def test_bce_output_messages_name_the_global_row(monkeypatch) -> None:
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "y"}],
                             "edges": [{"src": "x", "dst": "y", "weight": 1.0}]})
    X = np.full((6, 1), 0.5)
    X[4, 0] = 2.0
    monkeypatch.setattr(memory, "SLAB_BYTES", 1)
    with pytest.raises(InvalidInput, match=r"^outputs\[4\]\[0\]: bce needs outputs in \[0, 1\]"):
        edgegrad.gradients(net, X, targets=np.zeros((6, 1)), loss="bce")


@pytest.mark.filterwarnings("error")
def test_a_sum_that_overflows_only_across_slabs_is_named(monkeypatch) -> None:
    chain = Network.from_dict({"inputs": ["x"], "outputs": ["y"], "nodes": [{"id": "h"}, {"id": "y"}],
                               "edges": [{"src": "x", "dst": "h", "weight": 1.0},
                                         {"src": "h", "dst": "y", "weight": 1e308}]})
    monkeypatch.setattr(memory, "SLAB_BYTES", 1)                       # each slab's sum fits; their fold does not
    with pytest.raises(InvalidInput, match=r"^nodes\[0\]: its δ summed over the batch overflows float64"):
        edgegrad.gradients(chain, [[0.0], [0.0]], targets=[[-0.45], [-0.45]], loss="mse", reduction="sum")


# ------------------------------------------------------------------ memory
def _traced_peak(fn) -> int:
    """Peak traced memory of one call, the engine's cached scratch buffers dropped first (so they count)."""
    workspace.clear()
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _wide_net() -> Network:
    from benchmarks import networks

    return networks.irregular_dag(2, n_inputs=16, n_levels=4, width=50, fan_in=6, n_outputs=4)


@pytest.mark.parametrize("loss, per_example", [("mse", False), ("mse", True), (None, False)])
def test_peak_memory_is_bounded_by_the_estimate_not_the_batch(monkeypatch, loss, per_example, each_kernel) -> None:
    net = _wide_net()
    # the estimate is the numpy path's; the compiled summed gradients need no level or edge-chunk temporaries
    lowest = 0.1 if each_kernel == "compiled" and loss and not per_example else 0.25
    monkeypatch.setattr(memory, "SLAB_BYTES", 1 << 20)
    widest = int(np.bincount(net.levels[net.n_inputs:]).max())
    peaks = {}
    for B in (2_000, 16_000) if loss and not per_example else (400, 1_600):
        X = random_inputs(0, B, net.n_inputs)
        T = random_targets(0, "mse", B, net.n_outputs) if loss else None
        edgegrad.gradients(net, X[:2], targets=None if T is None else T[:2], loss=loss, per_example=per_example)
        peak = _traced_peak(lambda X=X, T=T: edgegrad.gradients(net, X, targets=T, loss=loss, per_example=per_example))
        estimate = working_memory_bytes(net.n_inputs, net.n_nodes, net.n_edges, net.n_outputs, B, loss,
                                        per_example, "float64", widest_level=widest)
        result = memory.result_bytes_per_row(net.n_nodes, net.n_edges, net.n_outputs, loss, per_example) * B
        assert peak <= estimate, (B, peak, estimate)                   # the estimate is an upper bound ...
        assert peak >= lowest * estimate, (B, peak, estimate)          # ... and not a wild one
        peaks[B] = peak - result                                       # what the engine itself needed
    small, large = sorted(peaks)
    assert peaks[large] < 1.3 * peaks[small] + (1 << 20), peaks        # 4-8× the rows, about the same memory


def test_one_big_loss_mode_call_needs_no_more_than_small_ones(monkeypatch) -> None:
    """Without slabs a 40k-row call needs ~40k × (I + 2N) × 8 ≈ 60 MiB; with them a few MiB."""
    net = _wide_net()
    monkeypatch.setattr(memory, "SLAB_BYTES", 2 << 20)
    X = random_inputs(1, 40_000, net.n_inputs)
    T = random_targets(1, "mse", 40_000, net.n_outputs)
    peak = _traced_peak(lambda: edgegrad.gradients(net, X, targets=T, loss="mse"))
    unslabbed_activations = 40_000 * (net.n_inputs + 2 * net.n_nodes) * 8
    assert peak < unslabbed_activations / 4, (peak, unslabbed_activations)


def test_rows_for_budget_is_the_largest_fitting_row_count() -> None:
    shape = (64, 976, 9760, 16)
    for loss, per_example in MODES:
        budget = 512 << 20
        rows = memory.rows_for_budget(budget, *shape, loss, per_example)
        def need(r: int, loss: str | None = loss, per_example: bool = per_example) -> int:
            return working_memory_bytes(*shape, r, loss, per_example) + 8 * (shape[0] + (shape[3] if loss else 0)) * r

        assert rows > 0 and need(rows) <= budget < need(rows + 1)
    assert memory.rows_for_budget(1000, *shape, "mse", False) == 0


def test_scratch_buffers_are_never_shared_by_concurrent_calls_and_stay_bounded(monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    nets = [_net(s) for s in (3, 4, 5, 6)]
    batches = [random_inputs(s, 50 + 7 * s, n.n_inputs) for s, n in enumerate(nets)]
    want = [edgegrad.gradients(n, x) for n, x in zip(nets, batches)]
    monkeypatch.setattr(memory, "SLAB_BYTES", 20_000)                  # several slabs per call, buffers cached
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda i: edgegrad.gradients(nets[i], batches[i]), range(4)))
            for g, w in zip(got, want):
                _close(g, w)
    cached = workspace._free
    assert len(cached) <= workspace.KEEP_BUFFERS
    assert sum(b.nbytes for b in cached) <= 2 * memory.slab_budget()


def test_slab_boundaries_and_bits_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    net = _net()
    X = random_inputs(9, 300, net.n_inputs)
    T = random_targets(9, "mse", 300, net.n_outputs)
    monkeypatch.setattr(memory, "SLAB_BYTES", 40_000)
    results, rows = [], []
    for threads in ("1", "2", "5"):
        monkeypatch.setenv("EDGEGRAD_THREADS", threads)
        rows.append(memory.slab_rows(net.n_inputs, net.n_nodes, net.n_outputs, "mse", False))
        results.append(edgegrad.gradients(net, X, targets=T, loss="mse"))
    assert len(set(rows)) == 1 and rows[0] < 300
    assert results[0] == results[1] == results[2]
