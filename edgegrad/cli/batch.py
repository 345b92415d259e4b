"""``edgegrad batch``: submit a batch job to a server and write its result to a file as it arrives.

The job's name goes to stderr at once, then progress (rows done of B, rate, ETA). Ctrl-C
detaches: the job keeps running and ``edgegrad jobs watch NAME --out OUT`` continues the file.
"""

from __future__ import annotations

import argparse
import shlex
import signal
from typing import Any

from ..errors import InvalidInput, Unavailable
from .common import EXIT_INTERRUPTED, EXIT_UNREACHABLE, CommandFailure, add_batch_args, check_mode_flags, load_batch
from .io import result_labels
from .population import batch_many, is_population
from .progress import Progress, format_seconds
from .remote import HeldInterrupts, add_server_argument, connect, job_failure, say, server_address, stream_backoff
from .resultfiles import ResultWriter, RowProgress, check_out, partial_place

#: the largest --shard-rows the wire carries (a uint64)
UINT64_MAX = 2 ** 64 - 1

__all__ = ["add_arguments", "run", "follow"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad batch``."""
    p.description = ("Submit one batch job (the arguments of `edgegrad grad`) to an edgegrad server and write "
                     "its result to OUT as it arrives: OUT.npz is one file; any other OUT is a folder of "
                     ".npy files (outputs, edge_grads, deltas, loss in loss mode; edges and nodes). "
                     "Ctrl-C detaches and leaves the job running. Several networks (or a folder of them): "
                     "one population job, network i's result in the folder OUT/<i>/.")
    add_batch_args(p, many=True)
    p.add_argument("--shard-rows", type=int, default=None, metavar="N",
                   help="rows per shard (default: the server chooses)")
    add_server_argument(p)
    p.add_argument("--out", required=True, metavar="OUT",
                   help="where the result goes: FILE.npz, or a folder of .npy files")


def run(args: argparse.Namespace) -> int:
    """Check everything, submit, then follow the job into OUT."""
    from ..model.network import Network

    check_mode_flags(args)
    if args.shard_rows is not None and not 1 <= args.shard_rows <= UINT64_MAX:
        raise InvalidInput(f"--shard-rows: must be between 1 and {UINT64_MAX}, got {args.shard_rows}")
    server = server_address(args.server)
    if is_population(args.network):  # one population job: OUT/<i>/ per network
        return batch_many(args, server, {"loss": args.loss, "reduction": args.reduction or "mean",
                                         "per_example": args.per_example, "dtype": args.dtype,
                                         "norms": args.norms, "clip_norm": args.clip_norm})
    check_out(args.out)
    net = Network.load(args.network[0])
    x, t = load_batch(args, net)
    options: dict[str, Any] = {"targets": t, "loss": args.loss, "reduction": args.reduction or "mean",
                               "per_example": args.per_example, "dtype": args.dtype, "shard_rows": args.shard_rows,
                               "norms": args.norms, "clip_norm": args.clip_norm}
    labels = result_labels(net)  # as `grad --out X.npz` has them
    with connect(server) as client:
        held = HeldInterrupts(reraise=False)
        uploading = Progress("uploading", int(x.shape[0]))  # shown only for a batch sent in pieces

        def uploaded(sent: int, total: int) -> None:
            uploading.update(sent * int(x.shape[0]) // max(1, total))

        with held:  # a Ctrl-C while submitting still learns the job's name, then detaches
            job = client.submit(net, x, upload_progress=uploaded, **options).job
        uploading.end()
        return follow(client, job, server, args.out, labels=labels, interrupted=held.pending,
                      announce=f"submitted {job.name} ({job.layout.batch:,} rows)")


def follow(client: Any, job: Any, server: str, out: str | None, labels: dict[str, Any] | None = None,
           announce: str | None = None, interrupted: bool = False) -> int:
    """Stream ``job``'s chunks into ``out`` (continuing a partial result there) with progress on stderr.

    ``announce`` is said first; ``interrupted`` means a Ctrl-C came already (while submitting).
    0 once the job succeeded and the file is complete; an exit-1 failure if the job failed or was
    cancelled; on Ctrl-C (from the very first line on) the partial result and its record are kept
    and the command detaches (130).
    """
    from ..v1 import job_pb2

    name, layout = job.name, job.layout
    progress = Progress(name, int(layout.batch))
    writer: ResultWriter | None = None
    try:
        with HeldInterrupts():  # the name is said and the files and their record made whole, then Ctrl-C counts
            if announce is not None:
                say(announce)
            if out is not None:
                writer = ResultWriter.open(out, name, layout, labels)
        if interrupted:
            raise KeyboardInterrupt
        if writer is not None:
            progress = Progress(name, int(layout.batch), done=writer.rows_done)  # rate: this session's rows
            if writer.resumed:
                say(f"{name}: continuing {out} after {writer.chunks_done} of {layout.chunk_count} chunks")
        handle = _stream(client, name, writer, RowProgress(layout), progress)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the record short
        if writer is not None:
            writer.close()
        progress.end(_detach_message(name, server, out, progress.done, int(layout.batch)))
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if writer is not None:
            writer.close()  # keep what is on disk: `jobs watch` can continue it
        if isinstance(exc, Unavailable):
            where = f" --out {shlex.quote(out)}" if out is not None else ""
            raise CommandFailure(f"server {server}: unreachable ({exc.message}); {name} may still be running"
                                 f" (edgegrad jobs watch {name}{where} continues)", EXIT_UNREACHABLE) from None
        raise
    final = handle.job
    if final.state != job_pb2.JOB_STATE_SUCCEEDED:
        progress.end()
        failure = job_failure(final)
        if writer is not None and final.state == job_pb2.JOB_STATE_CANCELLED and writer.rows_done > 0:
            writer.close()  # what was written stays, with its record
            raise CommandFailure(f"{failure}; the {writer.rows_done:,} of {int(layout.batch):,} rows written"
                                 f" are kept in {partial_place(writer.out)}", failure.status)
        if writer is not None:
            writer.discard()
        raise failure
    if writer is not None:
        writer.finish(final.loss if final.HasField("loss") else None)
    rows = int(layout.batch)
    if progress.tty:
        progress.update(rows, force=True)  # the full bar
    progress.end(_success_line(final, rows, progress, out, ended_before=_ended_before(job)))
    return 0


def _ended_before(job: Any) -> bool:
    """Whether ``job`` (as first read) had ended already, so following it only downloads its result."""
    from ..v1 import job_pb2

    return job.state in (job_pb2.JOB_STATE_SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED)


def _success_line(final: Any, rows: int, progress: Progress, out: str | None, ended_before: bool) -> str:
    """``NAME: succeeded, ROWS rows in T (R rows/s)``, the job's own time (from its start and end), and the
    download's when the job had ended before this command followed it."""
    took = progress.elapsed()
    if final.HasField("start_time") and final.HasField("end_time"):
        took = max(0.0, (final.end_time.ToNanoseconds() - final.start_time.ToNanoseconds()) / 1e9)
    rate = f" ({rows / took:,.0f} rows/s)" if took > 0 else ""
    line = f"{final.name}: succeeded, {rows:,} rows in {format_seconds(took)}{rate}"
    if ended_before:
        line += f"; downloaded in {format_seconds(progress.elapsed())}"
    return line + (f"; result in {out}" if out is not None else "")


def _stream(client: Any, name: str, writer: ResultWriter | None, received: RowProgress, progress: Progress) -> Any:
    """Read the job's chunks to its end (after those already in ``writer``); return the handle."""
    client.backoff = stream_backoff()  # the server answered: ride out a restart while the result streams
    # only a watch that writes the result is its consumer: an onlooker frees no chunks
    handle = client.job(name, after_seq=writer.after_seq if writer is not None else 0, assemble=False,
                        acknowledge=writer is not None)
    for chunk in handle.chunk_views():  # copied straight into the file: never parsed into messages
        if writer is None:
            progress.update(received.add(chunk))
            continue
        writer.add(chunk)
        writer.checkpoint()
        progress.update(writer.rows_done)
    return handle


def _detach_message(name: str, server: str, out: str | None, done: int, total: int) -> str:
    where = f" --out {shlex.quote(out)}" if out is not None else ""
    written = f"; {done:,} of {total:,} rows written in {partial_place(out)}" if out is not None else ""
    return (f"detached: {name} keeps running{written}\n"
            f"  continue: edgegrad jobs watch {name}{where} --server {shlex.quote(server)}\n"
            f"  cancel:   edgegrad jobs cancel {name} --server {shlex.quote(server)}")
