"""The engine's compiled paths against the reference: a mid-size network that exercises dense (BLAS)
blocks, chunked sparse kernels and chunked per-edge gradients, plus the plan cache."""

from __future__ import annotations

import numpy as np
import pytest
from dags import random_inputs, random_network_dict
from reference import assert_agrees, reference_gradients

import edgegrad
from edgegrad import Network

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

ACTS = ("tanh", "sigmoid", "gelu", "identity", "relu", "sin", "softplus", "elu")


def mid_size_network(seed: int = 0) -> Network:
    """~63k edges in random file order: a wide sparse level (split into chunks), a dense block
    fully connected from it, a sparse level with skip edges to anywhere earlier, and 4 outputs."""
    rng = np.random.default_rng(seed)
    n_in, sizes = 300, (600, 40, 100, 4)
    node_ids, activations, src, dst = [], [], [], []
    start, prev = n_in, (0, n_in)
    for layer, n in enumerate(sizes):
        for j in range(n):
            node_ids.append(f"l{layer}_{j}")
            activations.append(ACTS[(3 * layer + j) % len(ACTS)] if layer < len(sizes) - 1 else "identity")
            if layer == 1:
                s = np.arange(*prev)                                   # dense block
            else:
                s = rng.choice(start, size=60 if layer == 0 else 30, replace=False)
            src.extend(s.tolist())
            dst.extend([start + j] * len(s))
        prev, start = (start, start + n), start + n
    perm = rng.permutation(len(src))
    src_a, dst_a = np.array(src)[perm], np.array(dst)[perm]
    node_perm = rng.permutation(len(node_ids))                         # node file order shuffled too
    new_index = np.empty(len(node_ids), dtype=np.int64)
    new_index[node_perm] = np.arange(len(node_ids))
    remap = np.concatenate([np.arange(n_in), n_in + new_index])
    return Network.from_arrays([f"x{i}" for i in range(n_in)], node_ids[-4:],
                               [node_ids[i] for i in node_perm], [activations[i] for i in node_perm],
                               rng.normal(scale=0.1, size=len(node_ids)), remap[src_a], remap[dst_a],
                               rng.normal(scale=0.2, size=len(src)))


@pytest.fixture(scope="module")
def mid() -> tuple[Network, dict, np.ndarray]:
    net = mid_size_network()
    X = np.random.default_rng(1).normal(size=(2, net.n_inputs))
    return net, net.to_dict(), X


def test_mid_size_loss_mode_agrees_with_reference(mid) -> None:
    net, data, X = mid
    T = np.random.default_rng(2).normal(size=(2, net.n_outputs))
    ref = reference_gradients(data, X, T, "mse", "mean", per_example=True)
    assert_agrees(edgegrad.gradients(net, X, targets=T, loss="mse", per_example=True), ref)
    batch = edgegrad.gradients(net, X, targets=T, loss="mse")
    np.testing.assert_allclose(batch.edge_grads, ref.edge_grads.sum(axis=0), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(batch.deltas, ref.deltas.sum(axis=0), rtol=1e-9, atol=1e-15)


def test_mid_size_output_mode_agrees_with_reference(mid) -> None:
    net, data, X = mid
    assert_agrees(edgegrad.gradients(net, X[:1]), reference_gradients(data, X[:1]))


def test_a_bigger_batch_matches_its_rows(mid) -> None:
    net, _, _ = mid
    X = np.random.default_rng(5).normal(size=(64, net.n_inputs))
    T = np.random.default_rng(6).normal(size=(64, net.n_outputs))
    rows = edgegrad.gradients(net, X, targets=T, loss="mse", reduction="sum", per_example=True)
    for b in (0, 31, 63):
        one = edgegrad.gradients(net, X[b:b + 1], targets=T[b:b + 1], loss="mse", reduction="sum")
        np.testing.assert_allclose(rows.edge_grads[b], one.edge_grads, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(rows.deltas[b], one.deltas, rtol=1e-10, atol=1e-14)


def test_the_plan_cache_never_serves_a_stale_plan() -> None:
    data = random_network_dict(31, n_nodes=10, n_outputs=2)
    tweaked = dict(data, edges=[dict(data["edges"][0], weight=data["edges"][0]["weight"] * 1.5)] + data["edges"][1:])
    a, b = Network.from_dict(data), Network.from_dict(tweaked)
    X = random_inputs(31, 3, a.n_inputs)
    first = edgegrad.gradients(a, X)
    other = edgegrad.gradients(b, X)
    assert first != other
    assert_agrees(other, reference_gradients(tweaked, X))
    assert edgegrad.gradients(a, X) == first
    # float32 and float64 plans of one network are kept apart
    lo = edgegrad.gradients(a, X, dtype="float32")
    assert edgegrad.gradients(a, X) == first
    assert lo.edge_grads.dtype == np.float32


def test_plan_cache_eviction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGRAD_PLAN_CACHE", "1")
    nets = [random_network_dict(s, n_nodes=7) for s in range(40, 44)]
    X = random_inputs(40, 2, 3)
    firsts = [edgegrad.gradients(Network.from_dict(d), X[:, :len(d["inputs"])]) for d in nets]
    for d, first in zip(nets, firsts):
        again = edgegrad.gradients(Network.from_dict(d), X[:, :len(d["inputs"])])
        assert again == first
        assert_agrees(again, reference_gradients(d, X[:, :len(d["inputs"])]))


@pytest.mark.parametrize("policy", ["all sparse", "all sparse, tiny pieces", "all dense"])
@pytest.mark.parametrize("seed", range(6))
def test_sparse_and_dense_kernels_agree_with_the_reference(policy: str, seed: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever kernel the plan picks for a level (CSR chunks or a BLAS block), results are the same."""
    import edgegrad.engine.memory as memory
    import edgegrad.engine.plan as plan

    if policy.startswith("all sparse"):
        monkeypatch.setattr(plan, "DENSE_MIN_DENSITY", 2.0)   # no block is ever dense enough
        monkeypatch.setattr(plan, "SMALL_BLOCK_CELLS", 0)
        monkeypatch.setattr(plan, "CHUNK_NNZ", 3)             # and every level splits into many chunks
    if policy == "all sparse, tiny pieces":
        import edgegrad.engine.pool as pool

        monkeypatch.setenv("EDGEGRAD_THREADS", "2")
        monkeypatch.setattr(pool, "PARALLEL_MIN_WORK", 0)   # every level runs as its row chunks, on the pool
        monkeypatch.setattr(plan, "GROUP_DEGREE", 2)          # nodes' in-edges split into pieces of ≤ 2
        monkeypatch.setattr(memory, "EDGE_CHUNK_BYTES", 1)    # one node (piece) / one row × edge per chunk
    elif policy == "all dense":
        monkeypatch.setattr(plan, "DENSE_MIN_DENSITY", 0.0)
        monkeypatch.setattr(plan, "DENSE_GRAD_MIN_EDGES", 0)  # and the summed gradients of every level by BLAS
    plan.clear_plan_cache()
    try:
        _check_against_reference(seed, policy == "all dense")
    finally:
        plan.clear_plan_cache()  # no plan built under a forced policy outlives the test


def _check_against_reference(seed: int, dense: bool) -> None:
    import edgegrad.engine.plan as plan

    data = random_network_dict(seed, n_inputs=4, n_nodes=14, n_outputs=3)
    net = Network.from_dict(data)
    X = random_inputs(seed, 3, net.n_inputs)
    T = np.random.default_rng(seed).uniform(size=(3, net.n_outputs))
    compiled = plan.get_plan(net)
    kinds = {k.dense for level in compiled.levels for k in level.forward + level.backward}
    if dense:      # every level's summed gradients are one BLAS block
        assert all(level.dense_grad is not None for level in compiled.levels if level.forward)
    else:          # every sparse edge sits in exactly one in-degree group
        grouped = np.concatenate([g.file_edges.ravel() for g in compiled.grad_groups] + [compiled.dead_edges])
        assert sorted(grouped.tolist()) == list(range(net.n_edges))
    assert kinds == {dense}
    assert_agrees(edgegrad.gradients(net, X), reference_gradients(data, X))
    assert_agrees(edgegrad.gradients(net, X, targets=T, loss="mse", per_example=True),
                  reference_gradients(data, X, T, "mse", "mean", per_example=True))
    summed = edgegrad.gradients(net, X, targets=T, loss="mse")
    ref = reference_gradients(data, X, T, "mse", "mean", per_example=True)
    np.testing.assert_allclose(summed.edge_grads, ref.edge_grads.sum(axis=0), rtol=1e-9, atol=1e-15)


@pytest.mark.filterwarnings("error")
def test_nodes_that_reach_no_output_are_skipped_but_still_have_values() -> None:
    """A dead branch is never computed (even one that would overflow); its derivatives are 0."""
    import edgegrad.engine.plan as plan
    from edgegrad.engine.api import node_values

    net = Network.from_dict({
        "inputs": ["x"], "outputs": ["y"],
        "nodes": [{"id": "dead", "bias": 0.5}, {"id": "y", "activation": "tanh"}, {"id": "deader"}],
        "edges": [{"src": "x", "dst": "dead", "weight": 1e10}, {"src": "x", "dst": "y", "weight": 0.7},
                  {"src": "dead", "dst": "deader", "weight": 1e300}]})
    assert plan.reaches_output(net).tolist() == [False, True, False]
    assert plan.get_plan(net).n_live == 1 and plan.get_plan(net, live_only=False).n_live == 3
    X, T = [[1.0], [1e300]], [[0.1], [0.2]]
    for kw in ({}, {"targets": T, "loss": "mse"}, {"targets": T, "loss": "mse", "per_example": True}):
        res = edgegrad.gradients(net, X, **kw)
        assert res.is_finite()
        np.testing.assert_array_equal(np.asarray(res.deltas)[..., [0, 2]], 0.0)
        np.testing.assert_array_equal(np.asarray(res.edge_grads)[..., [0, 2]], 0.0)
    ok = [[0.3], [-0.2]]
    assert_agrees(edgegrad.gradients(net, ok, targets=T, loss="mse"),
                  reference_gradients(net.to_dict(), ok, T, "mse", "mean"))
    values = node_values(net, ok)
    np.testing.assert_allclose(values.o[:, 1], [0.3e10 + 0.5, -0.2e10 + 0.5])   # the dead node's value is shown


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (300, 65), (5, 4, 9), (600, 16, 33)])
@pytest.mark.parametrize("tile_rows", [1, 3, 256])
def test_the_tiled_example_major_transpose_is_exact(monkeypatch, shape, tile_rows) -> None:
    from edgegrad.engine import passes as engine

    monkeypatch.setattr(engine, "TRANSPOSE_ROWS", tile_rows)
    a = np.random.default_rng(1).standard_normal(shape)
    got = engine._example_major(a)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, a.transpose(tuple(range(a.ndim))[::-1]))
