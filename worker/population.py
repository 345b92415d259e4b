"""The shard of a population job: run ``gradients_many`` on its networks (its flat arrays, ``flat_results``) and stream their results.

A shard is a range of networks. It reads the request (its networks sliced from the population's stored
topology with the request's weights and biases, or, for a request of members, networks by hash with new
weights and biases where the request gives them), computes with the in-process engine, writes every field's part of its
networks and reports itself done; the worker whose shard is the last ends the job. Nothing is folded:
each network's result is its own, so it does not depend on which worker ran which shard.
"""

from __future__ import annotations

import re

import numpy as np

from edgegrad import joblog
from edgegrad.engine.population import flat_results
from edgegrad.engine.population_results import RowSpan
from edgegrad.errors import InvalidInput
from edgegrad.jobs.contract import SUCCEEDED
from edgegrad.jobs.population_store import worker_topology
from edgegrad.jobs.record import final_state
from edgegrad.jobs.worker_store import EMIT_WRITTEN, Started, WorkerStore
from edgegrad.model.network import Network
from edgegrad.model.population import PopulationColumns
from edgegrad.v1 import job_pb2
from edgegrad.wire.chunking import buffered_chunk_limit, chunk_parts, result_bytes
from edgegrad.wire.codec import array_from_tensor
from edgegrad.wire.columns import float_column
from edgegrad.wire.population import (
    flat_arrays,
    population_chunk_plans,
    population_offsets,
    population_row_elements,
    population_shard_bounds,
    population_sizes,
)
from edgegrad.wire.population_shards import has_partials, row_shard_chunks, row_shards

from .population_fold import fold_group, fold_missing, partial_bytes
from .population_pieces import piece_values, shard_rows

__all__ = ["run_population_shard", "finish_population"]

_NETS = re.compile(r"^nets\[(\d+)\]")


def run_population_shard(store: WorkerStore, job_id: str, shard: int, started: Started,
                         layout: job_pb2.ResultLayout) -> str:
    """Compute and stream one shard; returns 'last' when it was the job's last shard to finish (the caller
    ends the job), 'done' otherwise, 'stopped' when the job was cancelled or deleted meanwhile. The last row
    shard of a group to finish folds the group's partial sums (``population_fold``)."""
    request = job_pb2.PopulationRequest.FromString(started.spec)
    a, b = population_shard_bounds(layout, shard)
    nets: list[Network] | PopulationColumns
    if request.networks_hash:  # in columns: the shard's networks are slices, no Network built
        whole = worker_topology(store, request.networks_hash)
        n_in, n_out = whole.n_inputs_each, whole.n_outputs_each
        e, n = whole.edge_off, whole.node_off
        nets = whole.slice(a, b).with_values(_values(store, request, "weights", e, a, b),
                                             _values(store, request, "biases", n, a, b))
    else:
        nets = _networks(store, request, a, b)
        n_in, n_out = (np.zeros(int(layout.population.size), dtype=np.int64) for _ in range(2))
        n_in[a:b] = [net.n_inputs for net in nets]      # only networks [a, b) are read (packed rows go with
        n_out[a:b] = [net.n_outputs for net in nets]    # columns, whose sizes are all known)
    shards = row_shards(layout) if layout.population.shard_rows else None
    span, window = None, None
    if shards is not None:  # a row shard: its rows of each network, "mean" over each one's whole batch
        window = (int(shards.row_start[shard]), int(shards.row_stop[shard]))
        span = RowSpan(population_sizes(layout)[a:b, 0], window[0])
    x = shard_rows(store, request, "inputs", n_in, a, b, window)
    t = shard_rows(store, request, "targets", n_out, a, b, window)
    try:
        flat = flat_results(nets, x, t, loss=request.loss or None, reduction=request.reduction or "mean",
                            per_example=request.per_example, dtype=request.dtype or "float64", norms=request.norms,
                            clip_norm=request.clip_norm if request.clip_norm != 0 else None,
                            outputs_only=request.outputs_only, span=span)
    except InvalidInput as exc:  # name the network by its place in the whole population
        raise InvalidInput(_NETS.sub(lambda m: f"nets[{int(m.group(1)) + a}]", exc.message), field=exc.field) from None
    arrays = flat_arrays(flat, layout)
    offsets = population_offsets(layout)
    plans = population_chunk_plans(layout, shard, offsets)
    if shards is None:
        chunks = chunk_parts(arrays, layout, plans, shard=shard, after=started.chunks_done,
                             offsets={f: int(off[a]) for f, off in offsets.items()})
        done_call = store.shard_done(job_id, shard, len(plans), b - a, "", b"")
    else:
        chunks = row_shard_chunks(arrays, layout, shard, plans, offsets, population_row_elements(layout),
                                  started.chunks_done)
        g = shards.group[shard]
        count = shards.group_shards[g + 1] - shards.group_shards[g]
        done_call = store.shard_done(job_id, shard, len(plans), b - a, "", partial_bytes(flat, layout), (g, count))
    code, replies = store.emit(job_id, f"s:{shard}", chunks, buffered_chunk_limit(layout), [done_call])
    if code != EMIT_WRITTEN:  # cancelled or deleted: CANCEL/DELETE ended the job already
        return "stopped"
    joblog.shard_done(b - a, sum(int(v.nbytes) for v in arrays.values()))
    done, total, *group_done = list(replies[0]) + [0]
    if done == -2:
        raise InvalidInput(f"shard {shard}: result chunks missing")
    if shards is not None and group_done and group_done[0] == count and has_partials(layout):
        if not fold_group(store, job_id, layout, g):  # this shard completed its group: fold it now
            return "stopped"
    return "last" if done == total else "done"


def finish_population(store: WorkerStore, job_id: str, layout: job_pb2.ResultLayout) -> None:
    """End a population job whose shards are all done (first folding any group whose fold is not written: its
    folding worker died, or is still at it)."""
    if has_partials(layout) and not fold_missing(store, job_id, layout):
        return
    state = store.call(store.finish(job_id, SUCCEEDED, layout.chunk_count, {}))[-1]
    joblog.job_ended(final_state(state), store, job_id, None, rows=int(layout.population.size),
                     nbytes=result_bytes(layout))


def _values(store: WorkerStore, request: job_pb2.PopulationRequest, name: str, offsets: np.ndarray, a: int,
            b: int) -> np.ndarray:
    """Networks [a, b)'s weights or biases: from the job's upload (only theirs read) or the request."""
    for part in request.uploaded:
        if part.field == name:
            return piece_values(store, request.upload, part, int(offsets[a]), int(offsets[b]))
    if request.upload and not request.HasField(name):   # an uploaded population of no such values
        return np.zeros(0, dtype=np.float64)
    return float_column(getattr(request, name), name, int(offsets[-1]))[offsets[a]:offsets[b]]


def _networks(store: WorkerStore, request: job_pb2.PopulationRequest, a: int, b: int) -> list[Network]:
    """Networks [a, b) of the request, with their new weights and biases where given."""
    members = request.members[a:b]
    nets = store.networks([m.network_hash for m in members])
    out = []
    for i, (member, net) in enumerate(zip(members, nets)):
        if member.HasField("weights") or member.HasField("biases"):
            place = f"nets[{a + i}]"
            weights = array_from_tensor(member.weights, f"{place}.weights") if member.HasField("weights") else None
            biases = array_from_tensor(member.biases, f"{place}.biases") if member.HasField("biases") else None
            net = net.with_parameters(weights, biases)
        out.append(net)
    return out
