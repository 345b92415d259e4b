"""``edgegrad grad``: outputs and exact gradients of a network for a batch, printed as JSON or written to a file."""

from __future__ import annotations

import argparse
import sys

from ..errors import InvalidInput
from .common import add_batch_args, check_mode_flags, load_batch

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad grad``."""
    p.description = ("Compute outputs and exact gradients (edge weights and biases) of a network for a "
                     "batch of inputs and print one JSON object: outputs, loss, edge_grads, deltas, "
                     "edges, nodes. Output mode (no --loss): derivatives of every output per example. "
                     "Loss mode: derivatives of the loss.")
    add_batch_args(p)
    p.add_argument("--server", metavar="HOST:PORT", help="compute through an edgegrad service instead of in-process")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE (.json or .npz) instead of stdout")
    p.add_argument("--indent", type=int, nargs="?", const=2, default=None, metavar="N",
                   help="pretty-print the JSON, indented by N spaces (default 2)")


def run(args: argparse.Namespace) -> int:
    """Compute, then print the JSON object or write --out."""
    from ..model.network import Network
    from .io import check_result_path, dumps_result, save_result

    if args.out is not None:
        check_result_path(args.out)
    if args.indent is not None and not 0 <= args.indent <= 16:
        raise InvalidInput(f"--indent: must be between 0 and 16, got {args.indent}")
    check_mode_flags(args)
    if args.server is not None and not args.server.strip():
        raise InvalidInput("--server: expected HOST:PORT, got an empty string")
    net = Network.load(args.network)
    x, t = load_batch(args, net)
    options = {"targets": t, "loss": args.loss, "reduction": args.reduction or "mean",
               "per_example": args.per_example}
    if args.server is None:
        from ..engine.api import gradients

        res = gradients(net, x, dtype=args.dtype, **options)
    else:
        from .remote import remote_gradients

        res = remote_gradients(args.server.strip(), net, x, args.dtype, options)
    if args.out is not None:
        save_result(args.out, net, res, args.indent)
    else:
        text = dumps_result(net, res, args.indent)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0
