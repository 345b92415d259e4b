"""``edgegrad explain``: the δ recursion for one edge and one input row, with numbers."""

from __future__ import annotations

import argparse
import sys

from ..errors import InvalidInput
from .common import add_loss_args, check_mode_flags, load_batch, show_engine_notices

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad explain``."""
    p.description = ("For one edge (u, v) and one input row, print o[u], z[v], f_v'(z[v]), δ(v) and how "
                     "δ(v) unfolds through v's children down to the output(s), ending in "
                     "∂P/∂w(u,v) = δ(v)·o[u].")
    p.add_argument("network", metavar="NET", help="network file (.json or .npz)")
    p.add_argument("--edge", nargs=2, required=True, metavar=("SRC", "DST"), help="the edge, by its end ids")
    p.add_argument("--inputs", metavar="X", help="inputs file (default: one row of zeros)")
    p.add_argument("--row", type=int, default=0, metavar="B", help="which input row to explain (default 0)")
    add_loss_args(p)
    p.add_argument("--reduction", choices=("mean", "sum"), default=None,
                   help="loss reduction over the batch (default mean; loss mode only)")
    p.add_argument("--output", metavar="Y", help="output mode: explain only for this output")
    p.add_argument("--max-nodes", type=int, default=200, metavar="N",
                   help="expand at most N nodes' δ (default 200)")
    p.add_argument("--digits", type=int, default=10, metavar="D",
                   help="significant digits of printed numbers (default 10)")


def run(args: argparse.Namespace) -> int:
    """Print the δ recursion for one edge."""
    from ..engine.explain import explain_edge, render
    from ..model.network import Network

    check_mode_flags(args)
    if args.output is not None and args.loss is not None:
        raise InvalidInput("--output: only meaningful in output mode (without --loss)")
    if args.max_nodes < 1:
        raise InvalidInput(f"--max-nodes: must be at least 1, got {args.max_nodes}")
    if not 1 <= args.digits <= 17:
        raise InvalidInput(f"--digits: must be between 1 and 17, got {args.digits}")
    net = Network.load(args.network)
    x, t = load_batch(args, net)
    show_engine_notices()
    explanation = explain_edge(net, args.edge[0], args.edge[1], inputs=x, row=args.row, targets=t,
                               loss=args.loss, reduction=args.reduction or "mean", output=args.output)
    sys.stdout.write(render(explanation, digits=args.digits, max_nodes=args.max_nodes))
    sys.stdout.flush()
    return 0
