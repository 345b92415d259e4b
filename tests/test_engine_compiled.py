"""The compiled (numba) engine kernels against the numpy path and the reference, and how a kernel is chosen.

The other engine suites run every test on both kernels (the ``each_kernel`` fixture); this module
checks what is particular to the compiled path: agreement with numpy on wide levels split into
row chunks on the thread pool, bits that do not depend on the thread count, the ``kernel``
setting, ``auto``'s choice, and the clean fallback to numpy when numba does not load.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from dags import ALL_ACTIVATIONS, random_inputs, random_network_dict, random_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import LOSSES, assert_agrees, reference_gradients

import edgegrad
from edgegrad import InvalidInput, Network
from edgegrad.engine import kernel as seam
from edgegrad.engine import kernelcache, numba_kernel, passes, pool
from edgegrad.engine import plan as plans
from edgegrad.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import networks  # noqa: E402


def _run(kernel: str, net: Network, X: np.ndarray, T: np.ndarray | None, loss: str | None,
         per_example: bool = False, dtype: str = "float64", monkeypatch: pytest.MonkeyPatch | None = None
         ) -> edgegrad.GradientResult:
    assert monkeypatch is not None
    monkeypatch.setenv("EDGEGRAD_KERNEL", kernel)
    return edgegrad.gradients(net, X, targets=T, loss=loss, per_example=per_example, dtype=dtype)


def _wide(seed: int = 0, **kw: int) -> Network:
    """Wide levels (chunked on the pool), skip edges, every activation, edges and nodes shuffled."""
    sizes = {"n_inputs": 24, "n_levels": 5, "width": 300, "fan_in": 7, "n_outputs": 5} | kw
    return networks.irregular_dag(seed, shuffle_nodes=True, **sizes)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_agrees_with_the_reference_and_numpy(seed: int, loss: str, monkeypatch) -> None:
    out_acts = ("sigmoid",) if loss == "bce" else None
    data = random_network_dict(seed, n_inputs=4, n_nodes=15, n_outputs=3, output_activations=out_acts)
    net = Network.from_dict(data)
    X = random_inputs(seed, 5, net.n_inputs)
    T = random_targets(seed, loss, 5, net.n_outputs)
    compiled = _run("compiled", net, X, T, loss, monkeypatch=monkeypatch)
    assert seam.uses_compiled(plans.get_plan(net))
    assert_agrees(compiled, reference_gradients(data, X, T, loss, "mean"))
    assert_agrees(compiled, _run("numpy", net, X, T, loss, monkeypatch=monkeypatch), rtol=1e-12)
    rows = _run("compiled", net, X, T, loss, per_example=True, monkeypatch=monkeypatch)
    assert_agrees(rows, reference_gradients(data, X, T, loss, "mean", per_example=True))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_wide_levels_on_the_pool_agree_with_numpy(threads: int, monkeypatch) -> None:
    net = _wide(threads)
    X = random_inputs(1, 37, net.n_inputs)
    T = random_targets(1, "mse", 37, net.n_outputs)
    monkeypatch.setenv("EDGEGRAD_THREADS", str(threads))
    monkeypatch.setattr(pool, "PARALLEL_MIN_WORK", 0)          # every level as row chunks on the pool
    want = _run("numpy", net, X, T, "mse", monkeypatch=monkeypatch)
    got = _run("compiled", net, X, T, "mse", monkeypatch=monkeypatch)
    assert_agrees(got, want, rtol=1e-11)
    dead = ~plans.reaches_output(net)
    assert dead.any() and np.all(got.deltas[dead] == 0)          # nodes that reach no output: δ exactly 0
    into_dead = dead[net.dst - net.n_inputs]
    assert into_dead.any() and np.all(got.edge_grads[into_dead] == 0)


def test_bits_do_not_depend_on_threads_or_chunks(monkeypatch) -> None:
    net = _wide(5)
    X = random_inputs(2, 50, net.n_inputs)
    T = random_targets(2, "softmax_ce", 50, net.n_outputs)
    results = []
    for threads, chunks, min_work in ((1, 1, 10**12), (2, 1, 0), (2, 7, 0), (3, 2, 0)):
        monkeypatch.setenv("EDGEGRAD_THREADS", str(threads))
        monkeypatch.setattr(numba_kernel, "CHUNKS_PER_THREAD", chunks)
        monkeypatch.setattr(pool, "PARALLEL_MIN_WORK", min_work)
        results.append(_run("compiled", net, X, T, "softmax_ce", monkeypatch=monkeypatch))
        results.append(_run("compiled", net, X, T, "softmax_ce", monkeypatch=monkeypatch))
    for other in results[1:]:
        assert other.loss == results[0].loss
        for name in ("outputs", "edge_grads", "deltas"):
            assert np.array_equal(getattr(other, name), getattr(results[0], name)), name


@pytest.mark.parametrize("act", ALL_ACTIVATIONS)
def test_each_activation_on_a_wide_level(act: str, monkeypatch) -> None:
    net = networks.irregular_dag(3, n_inputs=6, n_levels=3, width=40, fan_in=4, n_outputs=2, activations=(act,),
                                 output_activation="identity")
    X = random_inputs(3, 9, net.n_inputs, scale=3.0)
    T = random_targets(3, "mse", 9, net.n_outputs)
    got = _run("compiled", net, X, T, "mse", monkeypatch=monkeypatch)
    assert_agrees(got, reference_gradients(net, X, T, "mse", "mean"))


def test_float32_is_close_to_float64(monkeypatch) -> None:
    net = _wide(7)
    X = random_inputs(4, 20, net.n_inputs)
    T = random_targets(4, "mse", 20, net.n_outputs)
    f64 = _run("compiled", net, X, T, "mse", monkeypatch=monkeypatch)
    f32 = _run("compiled", net, X, T, "mse", dtype="float32", monkeypatch=monkeypatch)
    assert f32.edge_grads.dtype == np.float32
    scale = np.abs(f64.edge_grads).max()
    assert np.abs(f32.edge_grads - f64.edge_grads).max() <= 1e-4 * scale
    assert f32.loss == pytest.approx(f64.loss, rel=1e-5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), batch=st.integers(1, 9), loss=st.sampled_from(LOSSES),
       per_example=st.booleans())
def test_property_compiled_equals_numpy(seed, batch, loss, per_example, monkeypatch) -> None:
    out_acts = ("sigmoid",) if loss == "bce" else None
    data = random_network_dict(seed, n_inputs=3, n_nodes=10, n_outputs=2, output_activations=out_acts)
    net = Network.from_dict(data)
    X = random_inputs(seed, batch, net.n_inputs)
    T = random_targets(seed, loss, batch, net.n_outputs)
    got = _run("compiled", net, X, T, loss, per_example, monkeypatch=monkeypatch)
    assert_agrees(got, _run("numpy", net, X, T, loss, per_example, monkeypatch=monkeypatch), rtol=1e-11)


def test_overflow_is_named_the_same_way(monkeypatch) -> None:
    net = Network.from_dict({"inputs": ["x"], "outputs": ["y"],
                             "nodes": [{"id": "h", "activation": "identity"}, {"id": "y", "activation": "identity"}],
                             "edges": [{"src": "x", "dst": "h", "weight": 1e200}, {"src": "h", "dst": "y",
                                                                                   "weight": 1e200}]})
    messages = []
    for kernel in ("numpy", "compiled"):
        with pytest.raises(InvalidInput) as caught:
            _run(kernel, net, [[1.0], [1e10]], [[0.0], [0.0]], "mse", monkeypatch=monkeypatch)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and "nodes[1]" in messages[0] and "row 0" in messages[0]


def test_the_kernel_setting_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("EDGEGRAD_KERNEL", "fortran")
    with pytest.raises(InvalidInput, match="EDGEGRAD_KERNEL: expected one of auto, numpy, compiled"):
        edgegrad.gradients(Network.from_dict(random_network_dict(0)), [[0.0, 0.0, 0.0]])
    with pytest.raises(InvalidInput, match="EDGEGRAD_KERNEL"):
        Settings.from_env({"EDGEGRAD_KERNEL": "fortran"})
    assert Settings.from_env({"EDGEGRAD_KERNEL": " Compiled "}).kernel == " Compiled "
    monkeypatch.setenv("EDGEGRAD_KERNEL", " Compiled ")
    assert seam.kernel_setting() == "compiled"


def test_auto_compiles_big_sparse_plans_only(monkeypatch) -> None:
    monkeypatch.delenv("EDGEGRAD_KERNEL", raising=False)
    small = plans.get_plan(Network.from_dict(random_network_dict(1)))
    assert seam.kernel_setting() == "auto" and not seam.uses_compiled(small)
    big = plans.get_plan(networks.irregular_dag(0, n_inputs=32, n_levels=4, width=1000, fan_in=6, n_outputs=4))
    assert big.edge_file.size >= seam.AUTO_MIN_EDGES and seam.uses_compiled(big)
    mlp = plans.get_plan(networks.mlp(0, sizes=(64, 256, 128, 4)))
    assert mlp.edge_file.size >= seam.AUTO_MIN_EDGES and mlp.dense.levels and not seam.uses_compiled(mlp)
    monkeypatch.setenv("EDGEGRAD_KERNEL", "compiled")               # forced: dense levels too
    assert seam.uses_compiled(mlp) and seam.uses_compiled(small)
    monkeypatch.setenv("EDGEGRAD_KERNEL", "numpy")
    assert not seam.uses_compiled(big)


def test_without_numba_every_plan_runs_on_numpy(monkeypatch, caplog) -> None:
    data = random_network_dict(4)
    net = Network.from_dict(data)
    X = random_inputs(4, 3, net.n_inputs)
    T = random_targets(4, "mse", 3, net.n_outputs)
    monkeypatch.setitem(sys.modules, "numba", None)                  # `import numba` raises ImportError
    monkeypatch.delitem(sys.modules, "edgegrad.engine.numba_loops", raising=False)
    monkeypatch.setattr(kernelcache, "_loaded", {})
    monkeypatch.setenv("EDGEGRAD_KERNEL", "compiled")
    with caplog.at_level("WARNING", logger="edgegrad.engine.kernelcache"):
        assert not seam.available()
        got = edgegrad.gradients(net, X, targets=T, loss="mse")
    assert "compiled engine kernels unavailable, using numpy" in caplog.text
    assert not seam.uses_compiled(plans.get_plan(net))
    assert_agrees(got, reference_gradients(data, X, T, "mse", "mean"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_the_compiled_result_writer_gives_numpys_bits(dtype: str, threads: str, monkeypatch) -> None:
    """Per-example and output-mode rows (and their transposes) written by the compiled writer in one pass are the
    very values numpy's gather-then-multiply gives: one product per value, on any thread split."""
    from edgegrad.engine import workspace

    monkeypatch.setenv("EDGEGRAD_THREADS", threads)
    net = _wide(7, n_levels=3, width=120)
    plan = plans.get_plan(net, dtype)
    X = random_inputs(7, 37, net.n_inputs).astype(dtype)
    for n_outputs, direct in ((None, np.ones((net.n_outputs, 37), dtype=dtype)), (net.n_outputs, None)):
        workspace.clear()
        buffers, _ = passes.forward(plan, X, n_outputs=n_outputs)
        passes.backward(plan, buffers, direct)
        lead = (37,) if n_outputs is None else (37, net.n_outputs)
        got = {}
        for kernel in ("numpy", "compiled"):
            monkeypatch.setenv("EDGEGRAD_KERNEL", kernel)
            edges, nodes = np.full(lead + (net.n_edges,), np.nan, dtype), np.full(lead + (net.n_nodes,), np.nan, dtype)
            passes.per_example_results(plan, buffers, edges, nodes, seam.example_writer(edges.nbytes + nodes.nbytes))
            got[kernel] = (edges, nodes)
        assert np.array_equal(got["numpy"][0], got["compiled"][0]) and np.array_equal(got["numpy"][1], got["compiled"][1])
    monkeypatch.setenv("EDGEGRAD_KERNEL", "auto")
    assert seam.example_writer(seam.COMPILED_WRITE_MIN_BYTES - 1) is None   # auto: small results stay on numpy
    assert seam.example_writer(seam.COMPILED_WRITE_MIN_BYTES) is not None
