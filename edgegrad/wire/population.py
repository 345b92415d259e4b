"""A population job's result on the wire: its layout, the chunks a shard writes, and the client's assembler.

Each field is one flat array: the concatenation over the networks of each network's field flattened
(``ResultLayout.population`` in job.proto). A shard is a range of networks; it writes every field's
part of its networks, cut into chunks of at most ``chunk_bytes``. Chunk counts follow from the
networks' sizes by arithmetic, so a client knows when a shard (and so each of its networks) is whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from ..engine.population_results import EXAMPLES, FORWARD, OUTPUTS, SUMS, FlatResults
from ..engine.result import GradientResult
from ..v1 import job_pb2, tensor_pb2
from .chunking import FIELD_NAMES, ChunkPlan, ResultAssembler
from .codec import array_from_tensor, tensor_from_array
from .population_shards import field_budget, fold_plans, folded_fields, row_shard_plans, row_shards
from .rawchunk import RawChunk

__all__ = ["population_layout", "population_mode", "population_sizes", "element_counts", "population_offsets",
           "population_shard_bounds", "population_chunk_plans", "population_arrays", "flat_arrays",
           "population_row_elements", "PopulationAssembler"]

_OUT, _EDGES, _DELTAS = job_pb2.RESULT_FIELD_OUTPUTS, job_pb2.RESULT_FIELD_EDGE_GRADS, job_pb2.RESULT_FIELD_DELTAS
_NORMS, _LOSS = job_pb2.RESULT_FIELD_NORMS, job_pb2.RESULT_FIELD_LOSS
_NUMPY: dict[int, np.dtype] = {tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"), tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4")}


def element_counts(sizes: np.ndarray, mode: int, norms: bool) -> dict[int, np.ndarray]:
    """Elements of each network's part of each field (``sizes``: int64 P×4 of B, K, E, N), by ResultField."""
    b, k, e, n = (sizes[:, i].astype(np.int64) for i in range(4))
    counts: dict[int, np.ndarray] = {_OUT: b * k}
    if mode == OUTPUTS:
        counts.update({_EDGES: b * k * e, _DELTAS: b * k * n})
    elif mode in (SUMS, EXAMPLES):
        counts.update({_EDGES: e if mode == SUMS else b * e, _DELTAS: n if mode == SUMS else b * n})
        if norms:
            counts[_NORMS] = b
        counts[_LOSS] = np.ones_like(b)
    return counts


def population_mode(layout: job_pb2.ResultLayout) -> int:
    """The engine mode of a population layout (FORWARD, OUTPUTS, SUMS or EXAMPLES)."""
    pop = layout.population
    if pop.outputs_only:
        return FORWARD
    if not layout.loss_mode:
        return OUTPUTS
    return EXAMPLES if pop.per_example else SUMS


def population_sizes(layout: job_pb2.ResultLayout) -> np.ndarray:
    """int64 P×4: B, K, E, N of each network."""
    return array_from_tensor(layout.population.sizes, "layout.population.sizes").reshape(-1, 4).astype(np.int64)


def population_layout(sizes: np.ndarray, loss: str | None, per_example: bool, dtype: str, chunk_bytes: int,
                      shard_starts: Sequence[int], buffer_bytes: int = 0, norms: bool = False,
                      outputs_only: bool = False, shard_rows: int = 0) -> job_pb2.ResultLayout:
    """The layout of a population job whose networks have ``sizes`` (int64 P×4: B, K, E, N) and these shards
    (``shard_rows``: rows per row shard, each group of networks' shards repeating its first network in
    ``shard_starts``; see ``population_shards``)."""
    sizes = np.ascontiguousarray(sizes, dtype=np.int64).reshape(-1, 4)
    code = tensor_pb2.DTYPE_FLOAT32 if dtype == "float32" else tensor_pb2.DTYPE_FLOAT64
    layout = job_pb2.ResultLayout(dtype=code, loss_mode=loss is not None, batch=int(sizes[:, 0].max()),
                                  chunk_bytes=chunk_bytes, shard_rows=0, shard_count=len(shard_starts),
                                  buffer_bytes=buffer_bytes)
    layout.population.CopyFrom(job_pb2.PopulationLayout(
        size=sizes.shape[0], sizes=tensor_from_array(sizes), shard_starts=[int(s) for s in shard_starts],
        outputs_only=outputs_only, per_example=bool(per_example) and loss is not None, shard_rows=int(shard_rows)))
    counts = element_counts(sizes, population_mode(layout), norms and loss is not None)
    for field, count in counts.items():
        layout.fields.add(field=field, shape=[int(count.sum())], row_elements=1)
    offsets = {f: _starts(c) for f, c in counts.items()}
    layout.chunk_count = sum(_expected_chunks(layout, offsets))
    return layout


def population_row_elements(layout: job_pb2.ResultLayout) -> dict[int, np.ndarray]:
    """Each network's elements per row of every per-row field (what a row shard writes of each), by ResultField."""
    sizes = population_sizes(layout)
    sizes[:, 0] = 1
    mode = population_mode(layout)
    norms = any(f.field == _NORMS for f in layout.fields)
    folded = folded_fields(layout, mode)
    return {f: c for f, c in element_counts(sizes, mode, norms).items() if f not in folded}


def _expected_chunks(layout: job_pb2.ResultLayout, offsets: Mapping[int, np.ndarray]) -> list[int]:
    """Chunks of each shard, then (row shards in loss mode) of each group's fold."""
    if not layout.population.shard_rows:
        return [_shard_chunk_count(layout, offsets, i) for i in range(layout.shard_count)]
    shards, batch = row_shards(layout), population_sizes(layout)[:, 0]
    per_row = population_row_elements(layout)
    counts = []
    for a, b, r0, r1 in zip(shards.net_start, shards.net_stop, shards.row_start, shards.row_stop):
        rows = np.minimum(batch[a:b], r1) - r0
        counts.append(sum(int((-(-(rows * per[a:b]) // field_budget(layout, f))).sum()) for f, per in per_row.items()))
    folded = folded_fields(layout, population_mode(layout))
    for g in range(len(shards.group_shards) - 1) if folded else ():
        a, b = shards.net_start[shards.group_shards[g]], shards.net_stop[shards.group_shards[g]]
        counts.append(sum(-(-int(offsets[f][b] - offsets[f][a]) // field_budget(layout, f)) for f in folded))
    return counts


def _starts(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def population_offsets(layout: job_pb2.ResultLayout) -> dict[int, np.ndarray]:
    """Where each network's part of each field starts (P + 1 entries each), by ResultField."""
    norms = any(f.field == _NORMS for f in layout.fields)
    counts = element_counts(population_sizes(layout), population_mode(layout), norms)
    return {f: _starts(c) for f, c in counts.items()}


def population_shard_bounds(layout: job_pb2.ResultLayout, index: int) -> tuple[int, int]:
    """Networks [start, stop) of shard ``index``."""
    if layout.population.shard_rows:
        shards = row_shards(layout)
        return shards.net_start[index], shards.net_stop[index]
    starts = layout.population.shard_starts
    stop = starts[index + 1] if index + 1 < len(starts) else layout.population.size
    return int(starts[index]), int(stop)


def _shard_chunk_count(layout: job_pb2.ResultLayout, offsets: Mapping[int, np.ndarray], index: int) -> int:
    a, b = population_shard_bounds(layout, index)
    return sum(-(-int(off[b] - off[a]) // field_budget(layout, field)) for field, off in offsets.items())


def population_chunk_plans(layout: job_pb2.ResultLayout, index: int,
                           offsets: Mapping[int, np.ndarray] | None = None) -> list[ChunkPlan]:
    """The chunks shard ``index`` writes, field by field (a row shard: network by network, field by field);
    row_start/row_stop are the networks each touches. ``index`` at ``shard_count`` + g: the g-th group's fold."""
    offsets = population_offsets(layout) if offsets is None else offsets
    if layout.population.shard_rows:
        if index >= layout.shard_count:
            return fold_plans(layout, index - layout.shard_count, offsets,
                              folded_fields(layout, population_mode(layout)))
        return row_shard_plans(layout, index, offsets, population_row_elements(layout))
    a, b = population_shard_bounds(layout, index)
    plans: list[ChunkPlan] = []
    for field, off in offsets.items():
        first, last, step = int(off[a]), int(off[b]), field_budget(layout, field)
        for start in range(first, last, step):
            stop = min(last, start + step)
            lo = int(np.searchsorted(off, start, side="right")) - 1
            hi = int(np.searchsorted(off, stop, side="left"))
            plans.append(ChunkPlan(len(plans) + 1, field, start, stop, lo, hi, False))
    return plans


def population_arrays(results: Sequence[GradientResult], layout: job_pb2.ResultLayout) -> dict[int, np.ndarray]:
    """The flat arrays of some consecutive networks' results (a shard's), by ResultField."""
    dtype = _NUMPY[layout.dtype]
    arrays: dict[int, np.ndarray] = {}
    for f in layout.fields:
        if f.field == _LOSS:
            arrays[f.field] = np.array([r.loss for r in results], dtype=np.float64)
            continue
        name = FIELD_NAMES[f.field]
        parts = [np.asarray(getattr(r, name)).reshape(-1) for r in results]
        arrays[f.field] = np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)
    return arrays


def flat_arrays(flat: FlatResults, layout: job_pb2.ResultLayout) -> dict[int, np.ndarray]:
    """The layout's fields from the engine's flat arrays of some consecutive networks (a shard's), as they are."""
    dtype = _NUMPY[layout.dtype]
    found = {_OUT: flat.outputs, _EDGES: flat.edge_grads, _DELTAS: flat.deltas, _NORMS: flat.norms, _LOSS: flat.loss}
    return {f.field: found[f.field].astype(np.float64 if f.field == _LOSS else dtype, copy=False)
            for f in layout.fields}


class PopulationAssembler(ResultAssembler):
    """Collects a population job's chunks (in any order, each once); a shard's networks are ready when all
    its chunks have arrived."""

    def __init__(self, layout: job_pb2.ResultLayout) -> None:
        super().__init__(layout)
        self.mode = population_mode(layout)
        self._sizes = population_sizes(layout)
        self._offsets = population_offsets(layout)
        self._expected = _expected_chunks(layout, self._offsets)   # each shard's, then each group's fold
        self._got = [0] * len(self._expected)
        shards = row_shards(layout)
        self._groups = [(shards.net_start[i], shards.net_stop[i]) for i in shards.group_shards[:-1]]
        #: each shard's group, then each fold's; parts of each group not yet whole
        self._group_of = shards.group + (list(range(len(self._groups))) if len(self._expected) > len(shards.group)
                                         else [])
        self._left = [0] * len(self._groups)
        for g in self._group_of:
            self._left[g] += 1
        self._ready: list[int] = []
        self._whole: list[int] = []   #: groups whole whose results ``build_whole`` has not built yet
        self._built: list[GradientResult | None] = [None] * int(layout.population.size)
        for part, n in enumerate(self._expected):
            if n == 0:
                self._part_done(part)
        self._bounds: dict[int, list[int]] | None = None   #: offsets and sizes as lists, made on first use
        self._shapes: list[list[int]] = []

    def add(self, chunk: job_pb2.ResultChunk | RawChunk) -> None:
        """Copy one chunk into place (a repeated seq is ignored) and count it for its shard."""
        if chunk.seq in self._seen:
            return
        if chunk.shard >= len(self._got) or chunk.field not in self._arrays:
            raise ValueError(f"chunk {chunk.seq}: shard {chunk.shard} or field {chunk.field} is not in the layout")
        super().add(chunk)
        self._got[chunk.shard] += 1
        if self._got[chunk.shard] == self._expected[chunk.shard]:
            self._part_done(chunk.shard)

    def _part_done(self, part: int) -> None:
        group = self._group_of[part]
        self._left[group] -= 1
        if self._left[group] == 0:
            self._ready.append(group)
            self._whole.append(group)

    def take_ready(self) -> list[int]:
        """The networks whose group of shards became whole since the last call, in index order per group."""
        groups, self._ready = self._ready, []
        return [p for g in groups for p in range(*self._groups[g])]

    def network(self, p: int) -> GradientResult:
        """Network ``p``'s result, shaped as ``edgegrad.gradients`` shapes it (views of the flat arrays)."""
        return self.networks([p])[0]

    def networks(self, indices: Sequence[int]) -> list[GradientResult]:
        """These networks' results (views of the flat arrays), with the sizes and offsets read once."""
        if self._bounds is None:
            self._bounds = {f: off.tolist() for f, off in self._offsets.items()}
            self._shapes = self._sizes.tolist()
        bounds, shapes, arrays, mode = self._bounds, self._shapes, self._arrays, self.mode
        outs, at_out = arrays[_OUT], bounds[_OUT]
        if mode == FORWARD:
            empty = np.empty(0, dtype=outs.dtype)
            return [GradientResult(outs[at_out[p]:at_out[p + 1]].reshape(shapes[p][0], shapes[p][1]), None, empty, empty)
                    for p in indices]
        edges, at_e, deltas, at_n = arrays[_EDGES], bounds[_EDGES], arrays[_DELTAS], bounds[_DELTAS]
        found = []
        for p in indices:
            b, k, e, n = shapes[p]
            outputs = outs[at_out[p]:at_out[p + 1]].reshape(b, k)
            ge, gd = edges[at_e[p]:at_e[p + 1]], deltas[at_n[p]:at_n[p + 1]]
            if mode == OUTPUTS:
                found.append(GradientResult(outputs, None, ge.reshape(b, k, e), gd.reshape(b, k, n)))
                continue
            if mode == EXAMPLES:
                ge, gd = ge.reshape(b, e), gd.reshape(b, n)
            norms = arrays[_NORMS][bounds[_NORMS][p]:bounds[_NORMS][p + 1]] if _NORMS in arrays else None
            found.append(GradientResult(outputs, float(arrays[_LOSS][p]), ge, gd, norms))
        return found

    def built(self, indices: Sequence[int]) -> list[GradientResult]:
        """These networks' results (their chunks whole), each built once and kept: ``take_ready``'s, ``build_whole``'s
        and ``results`` share them."""
        missing = [p for p in indices if self._built[p] is None]
        for p, result in zip(missing, self.networks(missing)):
            self._built[p] = result
        return cast(list[GradientResult], [self._built[p] for p in indices])

    def build_whole(self) -> None:
        """Build the results of the groups that became whole since the last call: a shard's results are made while
        the next shard's chunks are on their way."""
        groups, self._whole = self._whole, []
        for g in groups:
            self.built(range(*self._groups[g]))

    def results(self) -> list[GradientResult]:
        """Every network's result in order; raises if chunks are missing."""
        if not self.complete:
            raise ValueError(f"result incomplete: {len(self._seen)} of {self.layout.chunk_count} chunks")
        return self.built(range(int(self.layout.population.size)))

