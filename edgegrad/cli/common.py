"""What the subcommands share: exit statuses, the two failures they raise, and the gradient-request arguments.

A leaf of ``edgegrad.cli``: it imports no other module of the command line, so every command
module can import it without a cycle.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Any, NoReturn, TextIO

from ..errors import InvalidInput

__all__ = ["LOSSES", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_JOB_FAILED", "EXIT_UNREACHABLE", "EXIT_INTERRUPTED",
           "UsageError", "CommandFailure", "Parser", "add_loss_args", "add_batch_args", "check_mode_flags",
           "load_batch", "rpc_message", "show_engine_notices"]

LOSSES = ("mse", "bce", "softmax_ce")
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_JOB_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command line that argparse rejects; reported as one ``error:`` line, exit 2."""


class CommandFailure(Exception):
    """A problem already phrased for the user, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_loss_args(p: argparse.ArgumentParser) -> None:
    """``--targets`` and ``--loss``."""
    p.add_argument("--targets", metavar="T", help="targets, one row per example, one column per output")
    p.add_argument("--loss", choices=LOSSES, help="loss to differentiate (needs --targets)")


def add_batch_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """The arguments of a gradient request: NET, --inputs, --targets/--loss, --reduction, --per-example, --dtype
    (``many``: NET [NET ...], each a network file or a folder of them)."""
    if many:
        p.add_argument("network", metavar="NET", nargs="+",
                       help="network file (.json, or .npz written by Network.save); several, or a folder (its"
                            " *.json and *.npz in sorted order), make one population call on the same rows")
    else:
        p.add_argument("network", metavar="NET", help="network file (.json, or .npz written by Network.save)")
    p.add_argument("--inputs", required=True, metavar="X",
                   help="inputs, one row per example (.json list of rows, .npy, or .csv; - reads JSON rows"
                        " from stdin)")
    add_loss_args(p)
    p.add_argument("--reduction", choices=("mean", "sum"), default=None,
                   help="loss reduction over the batch (default mean; loss mode only)")
    p.add_argument("--per-example", action="store_true",
                   help="loss mode: one gradient row per example (the rows sum to the batch gradient)")
    p.add_argument("--norms", action="store_true",
                   help="loss mode: also each example's gradient norm (written as norms)")
    p.add_argument("--clip-norm", type=float, default=None, metavar="C",
                   help="loss mode: clip each example's gradient to norm C before summing (DP-SGD's step;"
                        " implies --norms)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the computation (default float64)")


def check_mode_flags(args: argparse.Namespace) -> None:
    """Refuse flags that do not go together (--targets without --loss, --per-example without --loss, ...)."""
    if args.targets is not None and args.loss is None:
        raise InvalidInput("--loss: required with --targets (mse, bce or softmax_ce)")
    if args.loss is not None and args.targets is None:
        raise InvalidInput("--targets: required with --loss")
    if args.loss is None and args.reduction is not None:
        raise InvalidInput("--reduction: only meaningful with --loss")
    if args.loss is None and getattr(args, "per_example", False):
        raise InvalidInput("--per-example: only meaningful with --loss (output mode is already per example)")
    clip = getattr(args, "clip_norm", None)
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise InvalidInput(f"--clip-norm: must be finite and > 0, got {clip}")
    for flag, given in (("--norms", getattr(args, "norms", False)), ("--clip-norm", clip is not None)):
        if given and args.loss is None:
            raise InvalidInput(f"{flag}: per-example norms and clipping need --loss (and --targets)")


def load_batch(args: argparse.Namespace, net: Any) -> tuple[Any, Any]:
    """The --inputs and --targets matrices (None where not given), checked against the network."""
    from .io import STDIN, load_matrix

    if args.inputs == STDIN and args.targets == STDIN:
        raise InvalidInput("--targets: only one of --inputs and --targets can read standard input ('-')")
    x = load_matrix(args.inputs, "inputs", net.inputs) if args.inputs is not None else None
    t = load_matrix(args.targets, "targets", net.outputs) if args.targets is not None else None
    return x, t


def rpc_message(exc: BaseException) -> str | None:
    """``CODE: details`` for a grpc.RpcError (details alone for INVALID_ARGUMENT); None otherwise."""
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(exc, grpc.RpcError):
        return None
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    details = details or str(exc)
    if code is None or code == grpc.StatusCode.INVALID_ARGUMENT:
        return details
    return f"{code.name}: {details}"


def show_engine_notices(stream: TextIO | None = None) -> bool:
    """On a terminal, show the engine's one-off notices (kernels being compiled) as ``note:`` lines on
    ``stream`` (default stderr); elsewhere (a pipe, a file) stay silent. Whether they will show."""
    stream = stream or sys.stderr
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    logger = logging.getLogger("edgegrad.engine.kernelcache")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return True
