"""``edgegrad grad``: outputs and exact gradients of a network for a batch, printed as JSON or written to a file."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import InvalidInput
from .common import add_batch_args, check_mode_flags, load_batch, show_engine_notices
from .population import grad_many, is_population
from .remote import SERVER_ENV, remote_gradients, server_address

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad grad``."""
    p.description = ("Compute outputs and exact gradients (edge weights and biases) of a network for a "
                     "batch of inputs and print one JSON object: outputs, loss, edge_grads, deltas, "
                     "edges, nodes (several networks, or a folder of them: a JSON list, one object per "
                     "network in argument order, from one population call). Output mode (no --loss): derivatives of every output per example. "
                     "Loss mode: derivatives of the loss (--norms adds each example's gradient norm, "
                     "--clip-norm C clips each example's gradient to norm C before the sum). In-process unless --server or $EDGEGRAD_SERVER names"
                     " a server (--local: in-process whatever is set).")
    add_batch_args(p, many=True)
    p.add_argument("--server", metavar="HOST:PORT",
                   help="compute through an edgegrad service instead of in-process (default: $EDGEGRAD_SERVER)")
    p.add_argument("--local", action="store_true", help="compute in-process, whatever $EDGEGRAD_SERVER says")
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
    if args.local and args.server is not None:
        raise InvalidInput("--local: computes in-process; give either --local or --server, not both")
    server = None if args.local or (args.server is None and not os.environ.get(SERVER_ENV)) else \
        server_address(args.server)
    if is_population(args.network):  # several networks: a JSON list, one result object each
        return grad_many(args, server, {"loss": args.loss, "reduction": args.reduction or "mean",
                                        "per_example": args.per_example, "norms": args.norms,
                                        "clip_norm": args.clip_norm})
    net = Network.load(args.network[0])
    x, t = load_batch(args, net)
    options = {"targets": t, "loss": args.loss, "reduction": args.reduction or "mean",
               "per_example": args.per_example, "norms": args.norms, "clip_norm": args.clip_norm}
    if server is None:
        from ..engine.api import gradients

        show_engine_notices()
        res = gradients(net, x, dtype=args.dtype, **options)
    else:
        res = remote_gradients(server, net, x, args.dtype, options)
    if args.out is not None:
        save_result(args.out, net, res, args.indent)
    else:
        text = dumps_result(net, res, args.indent)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0
