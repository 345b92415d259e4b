"""Network loading benchmark: Network.load of the ~1M-edge JSON beside json.loads, orjson and .npz, and from_arrays.

    python -m benchmarks.load                  # the irregular DAG (960,160 edges, ~89 MB JSON), 5 rounds
    python -m benchmarks.load --quick          # a ~100k-edge version, 3 rounds
    python -m benchmarks.load --exact          # also time the exact road alone (what load did before)

Every round times each contender once, in a rotating order, so the per-round ratios compare calls
that saw about the same machine; the table gives medians, minima and the median per-round ratio.
``json.loads``, ``orjson.loads`` and the typed decoding get the bytes already in memory and are
timed for the call alone (freeing what they built comes after the clock stops); ``Network.load``
is timed from the file name to the checked network. orjson is optional (``pip install '.[bench]'``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

if __package__ in (None, ""):                         # run as a script: python benchmarks/load.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from edgegrad import Network
from edgegrad.model.checks import JsonObject
from edgegrad.model.network_json import _DECODER, read_columns

from . import networks
from .timing import fmt_time

__all__ = ["main"]

#: the issue's goals: Network.load ≤ json.loads on the same bytes; from_arrays with string ids ≤ 0.5 s
LOAD_RATIO_GOAL, FROM_ARRAYS_GOAL = 1.0, 0.5


def _exact_road(raw: bytes) -> Network:
    """What Network.load did before the quick road: json with the repeated-key hook, then from_dict."""
    return Network.from_dict(json.loads(raw.decode("utf-8-sig"), object_pairs_hook=JsonObject.from_pairs))


def _contenders(json_path: str, npz_path: str, raw: bytes, net: Network) -> dict[str, Callable[[], object]]:
    ids = net.vertex_ids
    src_list, dst_list = [ids[i] for i in net.src.tolist()], [ids[i] for i in net.dst.tolist()]
    src_array, dst_array = np.array(src_list), np.array(dst_list)
    columns = (list(net.inputs), list(net.outputs), list(net.node_ids), list(net.activations), net.biases)
    found: dict[str, Callable[[], object]] = {
        "Network.load (.json)": lambda: Network.load(json_path),
        "json.loads (same bytes)": lambda: json.loads(raw),
    }
    try:
        import orjson
        found["orjson.loads (same bytes)"] = lambda: orjson.loads(raw)
    except ImportError:
        pass
    found["msgspec typed decode (the quick road's floor)"] = lambda: _DECODER.decode(raw)
    found["Network.load (.npz)"] = lambda: Network.load(npz_path)
    found["from_arrays, string ids (lists of str)"] = lambda: Network.from_arrays(*columns, src_list, dst_list, net.weights)
    found["from_arrays, string ids (numpy str arrays)"] = lambda: Network.from_arrays(*columns, src_array, dst_array, net.weights)
    found["from_arrays, int indices"] = lambda: Network.from_arrays(*columns, net.src, net.dst, net.weights)
    return found


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU time is steadier on a machine others share)."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    del result                                        # freed after the clock stops
    return elapsed, cpu


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; exit 0 (the goals are reported, not enforced)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~100k-edge network and 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5, or 3 with --quick)")
    parser.add_argument("--exact", action="store_true", help="also time the exact road once (~5 s at full size)")
    parser.add_argument("--width", type=int, default=None, help="nodes a level (default 6000, or 600 with --quick)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    width = args.width or (600 if args.quick else 6000)
    net = networks.irregular_dag(width=width)
    with tempfile.TemporaryDirectory() as tmp:
        json_path, npz_path = os.path.join(tmp, "net.json"), os.path.join(tmp, "net.npz")
        net.save(json_path)
        net.save(npz_path)
        with open(json_path, "rb") as fh:
            raw = fh.read()
        print(f"network: {net.n_inputs:,} inputs, {net.n_nodes:,} nodes, {net.n_edges:,} edges; "
              f"JSON {len(raw) / 1e6:.1f} MB (Network.save), .npz {os.path.getsize(npz_path) / 1e6:.1f} MB", flush=True)
        quick = read_columns(raw) is not None
        same = Network.load(json_path) == net and Network.load(npz_path) == net
        print(f"quick road taken: {'yes' if quick else 'NO'}; loads equal the generated network: "
              f"{'yes' if same else 'NO'}", flush=True)
        contenders = _contenders(json_path, npz_path, raw, net)
        names = list(contenders)
        print(f"load average before: {_load_average()}", flush=True)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(_timed(contenders[name]))
        exact = _timed(lambda: _exact_road(raw)) if args.exact else None
        print(f"load average after: {_load_average()}", flush=True)
    _report(times, exact, full_size=width == 6000)
    return 0


def _load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _report(times: dict[str, list[tuple[float, float]]], exact: tuple[float, float] | None, full_size: bool) -> None:
    print(f"\n  {'what':<48} {'median':>9} {'min':>9} {'cpu med':>9} {'runs':>5}")
    for name, ts in times.items():
        wall, cpu = np.array(ts).T
        print(f"  {name:<48} {fmt_time(float(np.median(wall))):>9} {fmt_time(wall.min()):>9}"
              f" {fmt_time(float(np.median(cpu))):>9} {len(ts):>5}")
    if exact is not None:
        print(f"  {'exact road alone (json + hook + from_dict)':<48} {fmt_time(exact[0]):>9} {'':>9}"
              f" {fmt_time(exact[1]):>9} {1:>5}")
    load = np.array(times["Network.load (.json)"])
    print("\n  per-round ratios, wall (median, range) and CPU (median):")
    for name in ("json.loads (same bytes)", "orjson.loads (same bytes)", "Network.load (.npz)"):
        if name in times:
            ratio = load / np.array(times[name])
            print(f"    Network.load (.json) ÷ {name:<30} {np.median(ratio[:, 0]):5.2f}"
                  f"  ({ratio[:, 0].min():.2f}–{ratio[:, 0].max():.2f})   cpu {np.median(ratio[:, 1]):5.2f}")
    load_ratio = float(np.median(load[:, 0] / np.array(times["json.loads (same bytes)"])[:, 0]))
    from_arrays = float(np.median(np.array(times["from_arrays, string ids (lists of str)"])[:, 0]))
    scope = "" if full_size else "  (goals are stated for the full size)"
    print(f"\n  goal Network.load ≤ json.loads: {load_ratio:.2f}× → {'ok' if load_ratio <= LOAD_RATIO_GOAL else 'MISSED'}"
          f"; goal from_arrays with string ids ≤ {FROM_ARRAYS_GOAL} s: {fmt_time(from_arrays)} → "
          f"{'ok' if from_arrays <= FROM_ARRAYS_GOAL else 'MISSED'}{scope}")


if __name__ == "__main__":
    raise SystemExit(main())
