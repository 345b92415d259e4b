"""``edgegrad jobs list|show|watch|cancel|delete``: a server's jobs from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from ..jobs.contract import state_name
from .remote import add_server_argument, connect, job_failure, job_name, say, server_address

__all__ = ["add_arguments", "run", "STATES", "job_to_dict", "describe"]

#: --state values, in the order jobs pass through them
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The five actions and their options."""
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show_list = actions.add_parser("list", help="the server's jobs, newest first",
                                   description="List the server's jobs, newest first.")
    show_list.add_argument("--state", choices=STATES, default=None, help="only jobs in this state")
    show_list.add_argument("--json", action="store_true", help="a JSON array of jobs instead of a table")
    show = actions.add_parser("show", help="one job in detail", description="Show one job in detail.")
    show.add_argument("name", metavar="NAME", help="the job (jobs/<id> or <id>)")
    show.add_argument("--json", action="store_true", help="the job as one JSON object")
    watch = actions.add_parser(
        "watch", help="attach (again) to a job, with progress; write its result with --out",
        description="Follow a job to its end with progress on stderr. With --out, write its result there "
                    "(continuing a file an interrupted `edgegrad batch` or `jobs watch` left).")
    watch.add_argument("name", metavar="NAME", help="the job (jobs/<id> or <id>)")
    watch.add_argument("--out", metavar="OUT", default=None, help="FILE.npz, or a folder of .npy files")
    cancel = actions.add_parser("cancel", help="cancel a job", description="Cancel a queued or running job.")
    cancel.add_argument("name", metavar="NAME", help="the job (jobs/<id> or <id>)")
    delete = actions.add_parser("delete", help="delete a job and its result",
                                description="Delete a job and its result from the server.")
    delete.add_argument("name", metavar="NAME", help="the job (jobs/<id> or <id>)")
    for sub in (show_list, show, watch, cancel, delete):
        add_server_argument(sub)


def run(args: argparse.Namespace) -> int:
    """Run the chosen action."""
    server = server_address(args.server)
    name = job_name(args.name) if hasattr(args, "name") else ""
    if args.action == "watch" and args.out is not None:
        from .resultfiles import check_out

        check_out(args.out)
    with connect(server) as client:
        if args.action == "list":
            return _list(client, args.state, args.json)
        if args.action == "show":
            job = client.get_job(name)
            _print(json.dumps(job_to_dict(job), indent=2) if args.json else describe(job))
            return 0
        if args.action == "watch":
            return _watch(client, name, server, args.out)
        if args.action == "cancel":
            job = client.cancel_job(name)
            _print(f"{job.name}: {state_name(job.state)}")
            return 0
        client.delete_job(name)
        _print(f"{name}: deleted")
        return 0


# ------------------------------------------------------------ actions
def _list(client: Any, state: str | None, as_json: bool) -> int:
    jobs: Iterable[Any] = client.list_jobs()
    if state is not None:
        jobs = (job for job in jobs if state_name(job.state) == state)
    if as_json:
        _print(json.dumps([job_to_dict(job) for job in jobs], indent=2))
        return 0
    rows = [(job.name, state_name(job.state), f"{job.layout.batch:,}",
             f"{job.chunks_done}/{job.layout.chunk_count}", _time(job, "create_time")) for job in jobs]
    header = ("NAME", "STATE", "ROWS", "CHUNKS", "CREATED")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    _print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]))
    return 0


def _watch(client: Any, name: str, server: str, out: str | None) -> int:
    from ..v1 import job_pb2
    from .batch import follow

    job = client.get_job(name)
    if out is None and job.state in (job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED):
        raise job_failure(job)
    if out is None and job.state == job_pb2.JOB_STATE_SUCCEEDED:  # nothing to follow, nothing to write
        say(f"{job.name}: succeeded, {job.layout.batch:,} rows")
        return 0
    return follow(client, job, server, out,
                  announce=f"watching {job.name} ({state_name(job.state)}, {job.layout.batch:,} rows)")


# ------------------------------------------------------------ formatting
def job_to_dict(job: Any) -> dict[str, Any]:
    """The job as proto3 JSON (proto field names, zero values included; states as lower-case words; a shard's
    range of rows, or of networks for a population job)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(job, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    data["state"] = state_name(job.state)
    population = bool(job.population_size)
    if not population:  # a one-network job: the population fields are all 0
        data.pop("population_size", None)
    for shard, msg in zip(data.get("shards", ()), job.shards):
        shard["state"] = state_name(msg.state)
        for field in (("row_start", "row_stop") if population else ("network_start", "network_stop")):
            shard.pop(field, None)  # a population's shards are ranges of networks, a job's of rows
    return data


def describe(job: Any) -> str:
    """The job as ``key: value`` lines, then its shards."""
    lines = [("name", job.name), ("state", state_name(job.state)),
             ("rows", f"{job.layout.batch:,}"),
             ("mode", "loss" if job.layout.loss_mode else "output"),
             ("chunks", f"{job.chunks_done} of {job.layout.chunk_count}")]
    if job.HasField("loss"):
        lines.append(("loss", repr(job.loss)))
    if job.error.message:
        lines.append(("error", job.error.message))
    lines += [("worker", job.worker), ("attempt", str(job.attempt)), ("network", job.network_hash)]
    lines += [(label, _time(job, field)) for label, field in
              (("created", "create_time"), ("started", "start_time"), ("ended", "end_time"),
               ("expires", "expire_time"))]
    text = "\n".join(f"{k + ':':<9} {v}" for k, v in lines if v)
    if len(job.shards) > 1:
        width = max(len(f"{s.row_start}..{s.row_stop}") for s in job.shards)
        text += "\nshards:\n" + "\n".join(
            f"  {s.index:>5}  rows {f'{s.row_start}..{s.row_stop}':<{width}}  {state_name(s.state):<9}  "
            f"attempt {s.attempt}  {s.worker or '-'}" for s in job.shards)
    return text


def _time(job: Any, field: str) -> str:
    if not job.HasField(field):
        return ""
    return getattr(job, field).ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
