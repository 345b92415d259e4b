"""The service's check of a population in columns, and a worker's run of a stored topology.

    EDGEGRAD_THREADS=1 python -m benchmarks.population_checks             # P = 1,000 and 10,000, best of 7
    EDGEGRAD_THREADS=1 python -m benchmarks.population_checks --sizes 1000 --repeat 3

``networks_from_proto``: decoding and checking a Networks message of P NEAT-size networks (what the
server does with a population sent inline). ``flat_results``: a worker's shard of the whole population,
its topology decoded from the stored blob (``topology_from_blob``) and given values, B = 256 (``--rows``),
mse; and the same decode with ``pack`` alone (the part the stored levels change). Each repetition runs
on a population of its own (another seed), the packed-topology cache emptied, so packing runs in full. Both timed best of ``--repeat``; numba is loaded and warmed before timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.population_nets import neat_size_population, neat_size_rows  # noqa: E402
from edgegrad.engine.population import flat_results  # noqa: E402
from edgegrad.engine.population_pack import clear_topology_cache, pack  # noqa: E402
from edgegrad.model.population import PopulationColumns  # noqa: E402
from edgegrad.v1 import network_pb2  # noqa: E402
from edgegrad.wire.columns import networks_from_proto, networks_to_proto, topology_blob, topology_from_blob  # noqa: E402


def _best(times: list[float]) -> str:
    return f"best {min(times) * 1e3:7.2f} ms  median {float(np.median(times)) * 1e3:7.2f} ms"


def bench(count: int, repeat: int, rows: int) -> None:
    """The figures for P = ``count``."""
    pops = [PopulationColumns.from_networks(neat_size_population(seed, count)) for seed in range(repeat)]
    edges = int(pops[0].edge_off[-1])
    x, t = neat_size_rows(0, rows)
    wire = [networks_to_proto(cols).SerializeToString() for cols in pops]
    times = []
    for data in wire:
        msg = network_pb2.Networks.FromString(data)
        start = time.perf_counter()
        networks_from_proto(msg)
        times.append(time.perf_counter() - start)
    print(f"P={count:6d} ({edges} edges)  networks_from_proto      {_best(times)}")
    blobs = [topology_blob(networks_from_proto(network_pb2.Networks.FromString(data))) for data in wire]
    times = []
    for cols, blob in zip(pops, blobs):
        clear_topology_cache()
        start = time.perf_counter()
        nets = topology_from_blob(blob).with_values(cols.weights, cols.biases)
        flat_results(nets, x, t, loss="mse")
        times.append(time.perf_counter() - start)
    print(f"P={count:6d} ({edges} edges)  blob -> flat_results B={rows:<4d}{_best(times)}")
    times = []
    for cols, blob in zip(pops, blobs):
        clear_topology_cache()
        start = time.perf_counter()
        pack(topology_from_blob(blob).with_values(cols.weights, cols.biases), np.dtype(np.float64))
        times.append(time.perf_counter() - start)
    print(f"P={count:6d} ({edges} edges)  blob -> pack (all at once){_best(times)}")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=256, help="rows B of each network (flat_results)")
    args = parser.parse_args()
    warm = PopulationColumns.from_networks(neat_size_population(99, 50))
    networks_from_proto(networks_to_proto(warm))
    flat_results(warm, *neat_size_rows(0), loss="mse")
    for count in args.sizes:
        bench(count, args.repeat, args.rows)


if __name__ == "__main__":
    main()
