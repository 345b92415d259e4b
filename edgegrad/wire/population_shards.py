"""Row shards of a population job (``PopulationLayout.shard_rows``): which networks and rows each shard takes, the
chunks it writes, and the chunks of each group's fold.

A *group* is a range of networks cut into row shards: row shard j takes rows [j·R, (j+1)·R) of each of its
networks (up to the network's own B). A row shard writes its rows of the per-row fields, one run per network
(the layout stays network after network, as without row shards). The *folded* fields (loss in loss mode;
edge_grads and deltas of loss mode's sums) of a group are written once its row shards are done, as the chunks
of shard number ``shard_count + g``: its row shards' partial sums added in shard order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

from ..engine.population_results import SUMS
from ..v1 import job_pb2, tensor_pb2
from .chunking import ChunkPlan, chunk_parts, field_dtype
from .codec import array_from_tensor

__all__ = ["RowShards", "row_shards", "folded_fields", "row_shard_plans", "fold_plans", "row_shard_chunks",
           "has_partials", "field_budget"]

_OUT, _EDGES, _DELTAS = job_pb2.RESULT_FIELD_OUTPUTS, job_pb2.RESULT_FIELD_EDGE_GRADS, job_pb2.RESULT_FIELD_DELTAS
_LOSS = job_pb2.RESULT_FIELD_LOSS
_ITEMSIZE: dict[int, int] = {tensor_pb2.DTYPE_FLOAT64: 8, tensor_pb2.DTYPE_FLOAT32: 4}


class RowShards(NamedTuple):
    """Every shard's networks and rows, and the groups: shard i takes networks [net_start[i], net_stop[i]) and
    rows [row_start[i], row_stop[i]) of each (a network's own B may end them earlier); group g is shards
    [group_shards[g], group_shards[g + 1])."""

    net_start: list[int]
    net_stop: list[int]
    row_start: list[int]
    row_stop: list[int]
    group: list[int]           #: each shard's group
    group_shards: list[int]    #: G + 1 entries


def row_shards(layout: job_pb2.ResultLayout) -> RowShards:
    """The shards of a population layout (without row shards: each shard its own group, every row)."""
    pop = layout.population
    starts, size, rows = [int(s) for s in pop.shard_starts], int(pop.size), int(pop.shard_rows)
    distinct = sorted(set(starts))
    batch = np.asarray(_batch(layout), dtype=np.int64)
    most = dict(zip(distinct, np.maximum.reduceat(batch, distinct).tolist())) if size else {}
    stop_of = dict(zip(distinct, distinct[1:] + [size]))
    net_stop, row_start, row_stop, group, group_shards = [], [], [], [], []
    for i, a in enumerate(starts):
        if i == 0 or starts[i - 1] != a:
            group_shards.append(i)
        j = i - group_shards[-1]
        net_stop.append(stop_of[a])
        row_start.append(j * rows)
        row_stop.append(min((j + 1) * rows, most[a]) if rows else most[a])
        group.append(len(group_shards) - 1)
    group_shards.append(len(starts))
    return RowShards(starts, net_stop, row_start, row_stop, group, group_shards)


def folded_fields(layout: job_pb2.ResultLayout, mode: int) -> list[int]:
    """The fields written by a group's fold (row shards only): loss in loss mode, and the sums in SUMS mode."""
    if not layout.loss_mode or not layout.population.shard_rows:
        return []
    return [f.field for f in layout.fields if f.field == _LOSS or (mode == SUMS and f.field in (_EDGES, _DELTAS))]


def has_partials(layout: job_pb2.ResultLayout) -> bool:
    """Whether a population job's shards leave partial sums to fold (row shards in loss mode)."""
    return layout.HasField("population") and layout.loss_mode and layout.population.shard_rows > 0


def field_budget(layout: job_pb2.ResultLayout, field: int) -> int:
    """Elements of ``field`` one chunk may carry, leaving room for the message's own fields."""
    return max(1, (int(layout.chunk_bytes) - 256) // _ITEMSIZE[field_dtype(layout, field)])


def _cut(field: int, first: int, last: int, step: int, net: tuple[int, int], plans: list[ChunkPlan]) -> None:
    for start in range(first, last, step):
        plans.append(ChunkPlan(len(plans) + 1, field, start, min(last, start + step), net[0], net[1], False))


def row_shard_plans(layout: job_pb2.ResultLayout, index: int, offsets: Mapping[int, np.ndarray],
                    row_elements: Mapping[int, np.ndarray]) -> list[ChunkPlan]:
    """The chunks row shard ``index`` writes: network by network, field by field (the per-row fields, whose
    elements per row of each network ``row_elements`` gives), the run of its rows."""
    shards = row_shards(layout)
    a, b, r0, r1 = (shards.net_start[index], shards.net_stop[index], shards.row_start[index],
                    shards.row_stop[index])
    batch = _batch(layout).tolist()
    fields = list(row_elements)
    steps = {f: field_budget(layout, f) for f in fields}
    plans: list[ChunkPlan] = []
    for p in range(a, b):
        stop = min(r1, batch[p])
        for f in fields:
            per, at = int(row_elements[f][p]), int(offsets[f][p])
            _cut(f, at + r0 * per, at + stop * per, steps[f], (p, p + 1), plans)
    return plans


def fold_plans(layout: job_pb2.ResultLayout, group: int, offsets: Mapping[int, np.ndarray],
               folded: list[int]) -> list[ChunkPlan]:
    """The chunks of group ``group``'s fold: its networks' part of each folded field."""
    shards = row_shards(layout)
    first = shards.group_shards[group]
    a, b = shards.net_start[first], shards.net_stop[first]
    plans: list[ChunkPlan] = []
    for f in folded:
        lo, hi = int(offsets[f][a]), int(offsets[f][b])
        step = field_budget(layout, f)
        for start in range(lo, hi, step):
            stop = min(hi, start + step)
            p0 = int(np.searchsorted(offsets[f], start, side="right")) - 1
            p1 = int(np.searchsorted(offsets[f], stop, side="left"))
            plans.append(ChunkPlan(len(plans) + 1, f, start, stop, p0, p1, False))
    return plans


def _batch(layout: job_pb2.ResultLayout) -> np.ndarray:
    return array_from_tensor(layout.population.sizes, "layout.population.sizes").reshape(-1, 4)[:, 0]


def row_shard_chunks(arrays: Mapping[int, np.ndarray], layout: job_pb2.ResultLayout, index: int,
                     plans: list[ChunkPlan], offsets: Mapping[int, np.ndarray],
                     row_elements: Mapping[int, np.ndarray], after: int) -> Iterator[tuple[int, list]]:
    """The chunks of row shard ``index`` (its ``plans``) from the engine's flat arrays of its networks' rows
    (``arrays``: each network's rows after the one before), as ``chunk_parts`` gives them."""
    shards = row_shards(layout)
    a, r0 = shards.net_start[index], shards.row_start[index]
    batch = _batch(layout).tolist()
    local = {f: 0 for f in row_elements}
    by_net: dict[int, list[ChunkPlan]] = {}
    for plan in plans:
        by_net.setdefault(plan.row_start, []).append(plan)
    for p in range(a, shards.net_stop[index]):
        rows = min(shards.row_stop[index], batch[p]) - r0
        where = {f: int(offsets[f][p]) + r0 * int(row_elements[f][p]) - local[f] for f in local}
        yield from chunk_parts(arrays, layout, by_net.get(p, []), shard=index, after=after, offsets=where)
        for f in local:
            local[f] += rows * int(row_elements[f][p])
