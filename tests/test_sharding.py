"""Shard sizes the service picks: within the memory budget, about the target time, evenly cut."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgegrad.engine.memory import working_memory_bytes
from edgegrad.errors import ResourceExhausted
from edgegrad.jobs.sharding import MIN_SHARD_ROWS, WORK_PER_SECOND, shard_rows_for

META = SimpleNamespace(n_inputs=64, n_nodes=1000, n_edges=10_000, n_outputs=8, widest_level=62)
GiB = 1 << 30


def _rows(batch: int, loss: str | None = "mse", per_example: bool = False, requested: int = 0,
          budget: int = 2 * GiB, seconds: float = 1.0, max_shards: int = 4096) -> int:
    return shard_rows_for(META, batch, loss, per_example, "float64", requested, budget, seconds, max_shards)


def test_the_service_cuts_a_batch_into_even_shards_of_about_the_target_time() -> None:
    per_second = int(WORK_PER_SECOND / (META.n_edges + META.n_nodes))
    rows = _rows(200_000)
    shards = -(-200_000 // rows)
    assert shards == -(-200_000 // per_second) and rows * shards - 200_000 < shards  # even: no tiny last shard
    assert _rows(100) == 100 and _rows(1) == 1                                     # small jobs: one shard
    tiny_shards = _rows(10_000, seconds=1e-9)  # never below MIN_SHARD_ROWS however short the target
    assert -(-10_000 // tiny_shards) == -(-10_000 // MIN_SHARD_ROWS) and tiny_shards <= MIN_SHARD_ROWS


def test_shards_fit_the_worker_memory_budget() -> None:
    budget = 256 << 20
    rows = _rows(100_000, loss=None, budget=budget, seconds=1e6)   # output mode: a big result per row
    assert working_memory_bytes(64, 1000, 10_000, 8, rows, None, False, widest_level=62) <= budget
    assert _rows(1000, requested=7) == 7 and _rows(5, requested=7) == 5


def test_a_job_that_cannot_fit_is_refused_naming_the_limit() -> None:
    with pytest.raises(ResourceExhausted, match=r"one row of this job needs about \d+ bytes .*\(EDGEGRAD_WORKER_MEMORY_BYTES\)"):
        _rows(10, loss=None, budget=1 << 20)
    with pytest.raises(ResourceExhausted, match="shard_rows: 90000 rows need about .*use at most"):
        _rows(100_000, loss=None, requested=90_000, budget=256 << 20)
    with pytest.raises(ResourceExhausted, match="EDGEGRAD_MAX_SHARDS"):
        _rows(100_000, loss=None, budget=256 << 20, max_shards=2)


def test_shards_of_a_big_result_are_small_enough_to_stream_while_others_compute() -> None:
    from edgegrad.engine.memory import result_bytes_per_row
    from edgegrad.jobs.sharding import SHARD_RESULT_BYTES

    rows = _rows(50_000, per_example=True, seconds=1e6)
    per_row = result_bytes_per_row(META.n_nodes, META.n_edges, META.n_outputs, "mse", True)
    assert rows * per_row <= SHARD_RESULT_BYTES and -(-50_000 // rows) > 1


def test_the_partial_sums_of_a_loss_mode_job_stay_within_their_redis_budget() -> None:
    from edgegrad.jobs.sharding import PARTIAL_SUMS_BYTES

    huge = SimpleNamespace(n_inputs=256, n_nodes=96_000, n_edges=960_000, n_outputs=16, widest_level=6000)
    rows = shard_rows_for(huge, 200_000, "mse", False, "float64", 0, 8 * GiB, 1.0, 4096)
    shards = -(-200_000 // rows)
    assert shards * (huge.n_edges + huge.n_nodes) * 8 <= PARTIAL_SUMS_BYTES and shards > 1


def test_a_client_cannot_ask_for_more_shards_than_the_limit() -> None:
    with pytest.raises(ResourceExhausted, match="shard_rows: 1 rows make 53 shards, over the limit of 4.*at least 14"):
        _rows(53, requested=1, max_shards=4)
    assert _rows(53, requested=14, max_shards=4) == 14


def _population_starts(count: int, batch: int, workers: int, requested: int = 0) -> list[int]:
    import numpy as np

    from edgegrad.engine.population_results import SUMS
    from edgegrad.jobs.population_sharding import population_shards

    rng = np.random.default_rng(count)
    edges = rng.integers(5, 60, size=count)
    sizes = np.stack([np.full(count, batch), np.full(count, 2), edges, edges // 2 + 2], axis=1).astype(np.int64)
    return population_shards(sizes, np.full(count, 4), SUMS, False, 8, requested, 0, 2 * GiB, 1.0, 4096,
                             workers).starts


def test_a_population_worth_cutting_gives_every_worker_a_part_of_about_equal_work() -> None:
    import numpy as np

    from edgegrad.jobs.population_sharding import SPLIT_WORK

    assert _population_starts(1000, 256, workers=1) == [0]        # one worker: one shard within the time target
    starts = _population_starts(1000, 256, workers=3)
    assert len(starts) == 3 and starts[0] == 0
    rng = np.random.default_rng(1000)                              # the same sizes as _population_starts made
    edges = rng.integers(5, 60, size=1000)
    work = 256 * (edges + edges // 2 + 2)
    parts = np.add.reduceat(work, starts)
    assert parts.min() >= SPLIT_WORK and parts.max() - parts.min() <= 2 * work.max()   # even, up to a network
    assert _population_starts(5, 256, workers=8) == [0]            # too little work to be worth a second shard
    assert 1 < len(_population_starts(4, 100_000, workers=8)) <= 4  # never more parts than networks
    assert _population_starts(1000, 256, workers=3, requested=600) == [0, 600]   # shard_networks decides
