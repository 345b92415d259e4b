"""``gradients_many``, ``outputs_many`` and ``outputs``: each network's result equals its own ``gradients`` call,
whatever its neighbours; bad input names the entry; a fine-tuning loop reuses the packed topology."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from dags import network_seeds, random_inputs, random_network, random_network_dict, random_targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgegrad
from edgegrad import InvalidInput, Network
from edgegrad.engine import population_pack

pytestmark = pytest.mark.usefixtures("each_kernel")  # every test on the numpy and the compiled kernels

PROFILE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = ("outputs", "edge_grads", "deltas")


def _agrees(got: edgegrad.GradientResult, want: edgegrad.GradientResult, rtol: float = 1e-12) -> None:
    """Every field within ``rtol`` times that field's largest magnitude (the loss relative to itself)."""
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if b.size:
            scale = max(float(np.abs(b).max()), 1e-300)
            assert float(np.abs(a.astype(np.float64) - b).max()) <= rtol * scale, name
    assert (got.loss is None) == (want.loss is None)
    if want.loss is not None:
        assert abs(got.loss - want.loss) <= rtol * max(abs(want.loss), 1e-300)
    assert (got.norms is None) == (want.norms is None)
    if want.norms is not None:
        assert got.norms.shape == want.norms.shape and got.norms.dtype == want.norms.dtype
        scale = max(float(np.abs(want.norms).max()), 1e-300)
        assert float(np.abs(got.norms.astype(np.float64) - want.norms).max()) <= rtol * scale, "norms"


def _identical(a: edgegrad.GradientResult, b: edgegrad.GradientResult) -> None:
    assert a.loss == b.loss
    assert (a.norms is None and b.norms is None) or np.array_equal(a.norms, b.norms)
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def _population(seeds: list[dict[str, Any]], loss: str | None, shared_inputs: int | None = None) -> list[Network]:
    out_acts = ("sigmoid",) if loss == "bce" else None
    nets = []
    for kw in seeds:
        kw = dict(kw)
        if shared_inputs is not None:
            kw["n_inputs"] = shared_inputs
        nets.append(Network.from_dict(random_network_dict(output_activations=out_acts, **kw)))
    return nets


population = st.lists(network_seeds(max_nodes=12), min_size=1, max_size=5)
modes = st.sampled_from([(None, False), ("mse", False), ("mse", True), ("bce", False), ("softmax_ce", False),
                         ("softmax_ce", True)])


@PROFILE
@given(seeds=population, mode=modes, batch=st.sampled_from([1, 4, 300]), reduction=st.sampled_from(["mean", "sum"]),
       shared=st.booleans())
def test_each_result_equals_its_own_gradients_call(seeds, mode, batch, reduction, shared) -> None:
    loss, per_example = mode
    if loss is None:
        reduction = "mean"
    nets = _population(seeds, loss, 3 if shared else None)
    xs = [random_inputs(i, batch, n.n_inputs) for i, n in enumerate(nets)]
    ts = [random_targets(i, loss, batch, n.n_outputs) if loss else None for i, n in enumerate(nets)]
    inputs = xs[0] if shared else xs
    if shared:
        xs = [xs[0]] * len(nets)
    got = edgegrad.gradients_many(nets, inputs, ts if loss else None, loss=loss, reduction=reduction,
                                  per_example=per_example)
    assert len(got) == len(nets)
    for net, x, t, res in zip(nets, xs, ts, got):
        _agrees(res, edgegrad.gradients(net, x, t, loss=loss, reduction=reduction, per_example=per_example))


@PROFILE
@given(seeds=population, loss=st.sampled_from(["mse", "bce", "softmax_ce"]), per_example=st.booleans(),
       clip=st.sampled_from([None, 0.05, 1.0, 1e6]), reduction=st.sampled_from(["mean", "sum"]),
       batch=st.sampled_from([1, 6, 300]), dtype=st.sampled_from(["float64", "float32"]))
def test_norms_and_clipping_equal_each_networks_own_call(seeds, loss, per_example, clip, reduction, batch,
                                                         dtype) -> None:
    nets = _population(seeds, loss)
    xs = [random_inputs(i, batch, n.n_inputs) for i, n in enumerate(nets)]
    ts = [random_targets(i, loss, batch, n.n_outputs) for i, n in enumerate(nets)]
    got = edgegrad.gradients_many(nets, xs, ts, loss=loss, reduction=reduction, per_example=per_example, norms=True,
                                  clip_norm=clip, dtype=dtype)
    for net, x, t, res in zip(nets, xs, ts, got):
        want = edgegrad.gradients(net, x, t, loss=loss, reduction=reduction, per_example=per_example, norms=True,
                                  clip_norm=clip, dtype=dtype)
        # float32: the two engines may sum in other orders (a hypothesis example once reached 1.2e-5 at B=1 with
        # clipping); within 1e-4 of each field's scale, as the float32 test below
        _agrees(res, want, rtol=1e-12 if dtype == "float64" else 1e-4)


@PROFILE
@given(seeds=population, mode=modes)
def test_float32_agrees_with_float64(seeds, mode) -> None:
    loss, per_example = mode
    nets = _population(seeds, loss)
    xs = [random_inputs(i, 20, n.n_inputs) for i, n in enumerate(nets)]
    ts = [random_targets(i, loss, 20, n.n_outputs) for i, n in enumerate(nets)] if loss else None
    got = edgegrad.gradients_many(nets, xs, ts, loss=loss, per_example=per_example, dtype="float32")
    for p, (net, res) in enumerate(zip(nets, got)):
        assert res.edge_grads.dtype == np.float32 and res.outputs.dtype == np.float32
        want = edgegrad.gradients(net, xs[p], None if ts is None else ts[p], loss=loss, per_example=per_example)
        _agrees(res, want, rtol=1e-4)


@PROFILE
@given(seeds=st.lists(network_seeds(max_nodes=10), min_size=2, max_size=6), data=st.data())
def test_permuting_nets_permutes_results_bit_for_bit(seeds, data) -> None:
    nets = _population(seeds, "mse", 3)
    X = random_inputs(1, 40, 3)
    T = [random_targets(i, "mse", 40, n.n_outputs) for i, n in enumerate(nets)]
    perm = data.draw(st.permutations(range(len(nets))))
    before = edgegrad.gradients_many(nets, X, T, loss="mse")
    after = edgegrad.gradients_many([nets[i] for i in perm], X, [T[i] for i in perm], loss="mse")
    for j, i in enumerate(perm):
        _identical(after[j], before[i])


@PROFILE
@given(kw=network_seeds(), neighbours=st.lists(network_seeds(max_nodes=14), min_size=0, max_size=4),
       mode=modes, batch=st.sampled_from([3, 260]))
def test_a_networks_bits_do_not_depend_on_its_neighbours(kw, neighbours, mode, batch) -> None:
    loss, per_example = mode
    net = _population([kw], loss)[0]
    others = _population(neighbours, loss)
    X = random_inputs(5, batch, net.n_inputs)
    T = random_targets(5, loss, batch, net.n_outputs) if loss else None
    alone = edgegrad.gradients_many([net], [X], None if T is None else [T], loss=loss, per_example=per_example)[0]
    xs = [X] + [random_inputs(i, batch + i, n.n_inputs) for i, n in enumerate(others)]
    ts = [T] + [random_targets(i, loss, batch + i, n.n_outputs) for i, n in enumerate(others)] if loss else None
    crowd = edgegrad.gradients_many([*others[:1], net, *others[1:]], [*xs[1:2], X, *xs[2:]],
                                    None if ts is None else [*ts[1:2], T, *ts[2:]], loss=loss,
                                    per_example=per_example)
    _identical(crowd[min(1, len(others))], alone)


def test_the_same_object_twice_gets_two_equal_independent_results() -> None:
    net = random_network(3)
    X = random_inputs(3, 10, net.n_inputs)
    T = random_targets(3, "mse", 10, net.n_outputs)
    for loss, per_example in ((None, False), ("mse", False), ("mse", True)):
        first, second = edgegrad.gradients_many([net, net], X, T if loss else None, loss=loss,
                                                per_example=per_example)
        _identical(first, second)
        kept = second.edge_grads.copy(), second.deltas.copy(), second.outputs.copy()
        first.edge_grads[...] = 7.0
        first.deltas[...] = 7.0
        first.outputs[...] = 7.0
        assert all(np.array_equal(a, b) for a, b in zip(kept, (second.edge_grads, second.deltas, second.outputs)))


def test_shared_and_per_network_rows_give_the_same_bits() -> None:
    nets = [random_network(s, n_inputs=3, n_outputs=2) for s in range(4)]
    X = random_inputs(0, 30, 3)
    T = random_targets(0, "mse", 30, 2)
    shared = edgegrad.gradients_many(nets, X, T, loss="mse")
    for inputs, targets in (([X] * 4, T), (X, [T] * 4), (tuple([X] * 4), [T] * 4), (X.tolist(), T.tolist())):
        for a, b in zip(edgegrad.gradients_many(nets, inputs, targets, loss="mse"), shared):
            _identical(a, b)


def test_outputs_and_outputs_many_equal_the_gradients_outputs() -> None:
    nets = [random_network(s, n_inputs=2 + s % 3, n_nodes=5 + s, n_outputs=1 + s % 3) for s in range(5)]
    xs = [random_inputs(s, 7 + 300 * (s % 2), n.n_inputs) for s, n in enumerate(nets)]
    many = edgegrad.outputs_many(nets, xs)
    for net, x, out in zip(nets, xs, many):
        want = edgegrad.gradients(net, x).outputs
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-12 * np.abs(want).max())
        np.testing.assert_array_equal(edgegrad.outputs(net, x), out)
    single = edgegrad.outputs(nets[0], xs[0], dtype="float32")
    assert single.dtype == np.float32 and single.shape == (xs[0].shape[0], nets[0].n_outputs)


def test_a_fine_tuning_loop_reuses_the_packed_topology() -> None:
    population_pack.clear_topology_cache()
    base = [random_network_dict(s, n_inputs=3) for s in range(6)]
    X = random_inputs(0, 16, 3)
    T = random_targets(0, "mse", 16, 2)
    edgegrad.gradients_many([Network.from_dict(d) for d in base], X, T, loss="mse")
    hits, misses, _ = population_pack.topology_cache_stats()
    rng = np.random.default_rng(0)
    for _ in range(3):                                     # new weights and biases, same topologies
        for d in base:
            for edge in d["edges"]:
                edge["weight"] = float(rng.normal())
            for node in d["nodes"]:
                node["bias"] = float(rng.normal())
        nets = [Network.from_dict(d) for d in base]
        got = edgegrad.gradients_many(nets, X, T, loss="mse")
        for net, res in zip(nets, got):                    # the new weights are the ones used
            _agrees(res, edgegrad.gradients(net, X, T, loss="mse"))
    after = population_pack.topology_cache_stats()
    assert after[0] - hits == 3 and after[1] == misses
    edgegrad.gradients_many([Network.from_dict(d) for d in base[:5]], X, T, loss="mse")   # another topology
    assert population_pack.topology_cache_stats()[1] == misses + 1


@pytest.mark.parametrize("nets, inputs, message", [
    ("not a list", [[1.0]], "nets: expected a sequence of edgegrad.Network, got str"),
    ([], [[1.0]], "nets: expected at least one network"),
])
def test_bad_nets(nets, inputs, message) -> None:
    with pytest.raises(InvalidInput) as info:
        edgegrad.gradients_many(nets, inputs)
    assert str(info.value) == message


def test_bad_input_names_the_entry() -> None:
    nets = [random_network(s, n_inputs=4) for s in range(12)]
    X = random_inputs(0, 5, 4)

    def message(*args: Any, **kw: Any) -> str:
        with pytest.raises(InvalidInput) as info:
            edgegrad.gradients_many(*args, **kw)
        return str(info.value)

    odd = list(nets)
    odd[3] = {"inputs": []}  # type: ignore[call-overload]
    assert message(odd, X) == "nets[3]: expected an edgegrad.Network, got dict"
    wide = list(nets)
    wide[7] = random_network(7, n_inputs=3)
    assert message(wide, X).startswith("nets[7]: inputs: expected shape (B, 3) ")
    assert message(nets, X[:, :3]).startswith("inputs: expected shape (B, 4) ")     # fits no network: not one named
    xs = [X] * 12
    xs[2] = random_inputs(0, 5, 3)
    assert message(nets, xs).startswith("inputs[2]: expected shape (B, 4) ")
    assert message(nets, [X] * 11) == "inputs: expected 12 arrays (one per network), got 11"
    bad = [X.copy() for _ in range(12)]
    bad[4][1, 2] = np.nan
    assert message(nets, bad) == "inputs[4][1][2]: must be finite, got nan"
    T = random_targets(0, "mse", 5, 2)
    ts = [T] * 12
    ts[9] = random_targets(0, "mse", 4, 2)
    assert message(nets, X, ts, loss="mse") == "targets[9]: has 4 rows but inputs has 5"
    assert message(nets, X, T) == "targets: given without a loss (pass loss='mse', 'bce' or 'softmax_ce')"
    assert message(nets, X, norms=True).startswith("norms: per-example norms and clipping need a loss")
    assert message(nets, X, T, loss="mse", clip_norm=-1.0) == "clip_norm: must be finite and > 0, got -1.0"


def test_an_overflow_names_its_network() -> None:
    nets = [random_network(s, n_inputs=3) for s in range(6)]
    data = random_network_dict(5, n_inputs=3, activations=("identity",))
    for edge in data["edges"]:
        edge["weight"] = 1e200
    nets[5] = Network.from_dict(data)
    X = random_inputs(0, 5, 3) * 1e150
    T = random_targets(0, "mse", 5, 2)
    with pytest.raises(InvalidInput) as info:
        edgegrad.gradients_many(nets, X, T, loss="mse")
    assert str(info.value).startswith("nets[5]: nodes[")
    with pytest.raises(InvalidInput, match=r"^nets\[5\]: "):
        edgegrad.outputs_many(nets, X)
    with pytest.raises(InvalidInput, match=r"^nets\[5\]: edges\[\d+\]\.weight: .* beyond float32's range"):
        edgegrad.gradients_many(nets, X / 1e150, dtype="float32")


def test_bce_outputs_outside_the_unit_interval_name_the_network() -> None:
    nets = [random_network(s, n_inputs=3, output_activations=("sigmoid",)) for s in range(3)]
    nets.append(random_network(9, n_inputs=3, output_activations=("identity",)))
    X = random_inputs(0, 6, 3) * 5
    T = random_targets(0, "bce", 6, 2)
    with pytest.raises(InvalidInput, match=r"^nets\[3\]: outputs\[\d+\]\[\d\]: bce needs outputs in \[0, 1\]"):
        edgegrad.gradients_many(nets, X, T, loss="bce")


def test_the_readme_population_example_runs(monkeypatch) -> None:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "gradients_many" in block)
    monkeypatch.chdir(root)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert len(scope["results"]) == 3 and len(scope["outs"]) == 3
    _identical(scope["results"][0], edgegrad.gradients_many(scope["nets"][:1], scope["X"], scope["T"], loss="mse")[0])
    np.testing.assert_array_equal(scope["out"], scope["outs"][0])


def test_a_big_network_takes_fewer_rows_at_a_time_and_still_equals_its_gradients_call(monkeypatch) -> None:
    from edgegrad.engine import population_results

    nets = [random_network(s, n_inputs=3, n_nodes=5 + 6 * s) for s in range(4)]
    chunk_bytes = 8 * (3 + 3 * 20 + 3 * 2 + 6) * 7      # networks of 20+ nodes: at most 7 rows at a time
    monkeypatch.setattr(population_results, "CHUNK_BYTES", chunk_bytes)
    chunks = population_results.row_chunks(np.array([3] * 4), np.array([n.n_nodes for n in nets]), np.array([2] * 4))
    assert chunks[0] > 7 and chunks[-1] < 7
    X = random_inputs(0, 40, 3)
    T = random_targets(0, "mse", 40, 2)
    for loss, per_example in ((None, False), ("mse", False), ("mse", True)):
        got = edgegrad.gradients_many(nets, X, T if loss else None, loss=loss, per_example=per_example)
        for net, res in zip(nets, got):
            _agrees(res, edgegrad.gradients(net, X, T if loss else None, loss=loss, per_example=per_example))


def test_slabs_groups_and_threads_do_not_change_a_bit(monkeypatch) -> None:
    from edgegrad.engine import population, population_numpy

    nets = [random_network(s, n_inputs=3, n_nodes=4 + s % 7) for s in range(9)]
    xs = [random_inputs(s, 40 + 100 * (s % 3), 3) for s in range(9)]
    ts = [random_targets(s, "mse", x.shape[0], 2) for s, x in enumerate(xs)]
    runs = []
    for slab_edges, group_bytes, threads in ((1 << 19, 16 << 20, "2"), (30, 4096, "1"), (1, 1, "2")):
        monkeypatch.setattr(population, "SLAB_EDGES", slab_edges)
        monkeypatch.setattr(population_numpy, "GROUP_BYTES", group_bytes)
        monkeypatch.setenv("EDGEGRAD_THREADS", threads)
        runs.append([edgegrad.gradients_many(nets, xs, ts, loss="mse", per_example=per_example)
                     for per_example in (False, True)])
    for other in runs[1:]:
        for mine, theirs in zip(runs[0], other):
            for a, b in zip(mine, theirs):
                _identical(a, b)


def test_calls_from_several_threads_at_once_give_the_same_bits() -> None:
    import threading

    nets = [random_network(s, n_inputs=3, n_nodes=6 + s % 5) for s in range(12)]
    X = random_inputs(0, 300, 3)
    T = random_targets(0, "mse", 300, 2)
    want = edgegrad.gradients_many(nets, X, T, loss="mse")
    failures: list[str] = []

    def call() -> None:
        try:
            for _ in range(5):
                for a, b in zip(edgegrad.gradients_many(nets, X, T, loss="mse"), want):
                    _identical(a, b)
        except Exception as exc:  # reported below, in the test's thread
            failures.append(repr(exc))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_networks_without_edges_and_without_hidden_nodes() -> None:
    bare = Network.from_arrays(["x"], ["n"], ["n"], "tanh", [0.5], [], [], [])
    direct = Network.from_arrays(["a", "b"], ["o"], ["o"], "sigmoid", [0.1], ["a", "b"], ["o", "o"], [0.3, -0.7])
    X = random_inputs(1, 5, 2)
    T = random_targets(1, "mse", 5, 1)
    xs = [X[:, :1], X]
    for loss, per_example in ((None, False), ("mse", False), ("mse", True)):
        got = edgegrad.gradients_many([bare, direct, bare], [xs[0], xs[1], xs[0]], T if loss else None, loss=loss,
                                      per_example=per_example)
        for net, x, res in zip([bare, direct, bare], [xs[0], xs[1], xs[0]], got):
            _agrees(res, edgegrad.gradients(net, x, T if loss else None, loss=loss, per_example=per_example))


def test_targets_outside_the_unit_interval_are_named() -> None:
    nets = [random_network(s, n_inputs=3, output_activations=("sigmoid",)) for s in range(3)]
    X = random_inputs(0, 4, 3)
    ts = [random_targets(s, "bce", 4, 2) for s in range(3)]
    ts[2] = ts[2].copy()
    ts[2][3, 1] = 1.5
    with pytest.raises(InvalidInput, match=r"^targets\[2\]\[3\]\[1\]: bce needs targets in \[0, 1\], got 1.5$"):
        edgegrad.gradients_many(nets, X, ts, loss="bce")
    with pytest.raises(InvalidInput, match=r"^targets\[3\]\[1\]: softmax_ce needs targets in \[0, 1\], got 1.5$"):
        edgegrad.gradients_many(nets, X, ts[2], loss="softmax_ce")


def test_without_the_kernel_the_numpy_path_runs(monkeypatch) -> None:
    from edgegrad.engine import kernelcache, population_numpy

    monkeypatch.setitem(kernelcache._loaded, "population_kernel", "ImportError: no numba here")
    ran = []
    real = population_numpy.run
    monkeypatch.setattr(population_numpy, "run", lambda *args: ran.append(1) or real(*args))
    nets = [random_network(s, n_inputs=3) for s in range(3)]
    X = random_inputs(0, 5, 3)
    T = random_targets(0, "mse", 5, 2)
    for net, res in zip(nets, edgegrad.gradients_many(nets, X, T, loss="mse")):
        _agrees(res, edgegrad.gradients(net, X, T, loss="mse"))
    assert ran


def test_clip_norm_alone_gives_norms_and_a_norm_past_the_squares_range_is_rescued_as_alone() -> None:
    nets = [random_network(s, n_inputs=3) for s in range(3)]
    X = random_inputs(0, 8, 3)
    T = random_targets(0, "mse", 8, 2)
    for res in edgegrad.gradients_many(nets, X, T, loss="mse", clip_norm=0.5):
        assert res.norms is not None and res.norms.shape == (8,)
    assert all(r.norms is None for r in edgegrad.gradients_many(nets, X, T, loss="mse"))
    # sin(0) = 0 hides a huge weight from the outputs but not from δ: δ² overflows, the norm does not
    huge = Network.from_arrays(["x"], ["o"], ["h", "o"], ["sin", "identity"], [0.0, 0.5], ["x", "h"], ["h", "o"],
                               [1.0, 1e155])
    xs, ts = [np.zeros((4, 1)), X], [np.ones((4, 1)), T]
    got = edgegrad.gradients_many([huge, nets[0]], xs, ts, loss="mse", norms=True)
    want = edgegrad.gradients(huge, xs[0], ts[0], loss="mse", norms=True)
    assert np.isfinite(want.norms).all() and want.norms.max() > 1e150
    _agrees(got[0], want)
    _agrees(got[1], edgegrad.gradients(nets[0], X, T, loss="mse", norms=True))
