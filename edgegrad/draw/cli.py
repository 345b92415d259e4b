"""``edgegrad draw``: a picture of a network, shaded by its gradients for a batch or by a saved result."""

from __future__ import annotations

import argparse
import os

from edgegrad.errors import InvalidInput

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``edgegrad draw``."""
    from edgegrad.cli.common import add_loss_args

    from . import MAX_NODES

    p.add_argument("network", metavar="NET", help="network file (.json, or .npz written by Network.save)")
    p.add_argument("--inputs", metavar="X", help="inputs to compute gradients for (.json, .npy or .csv)")
    add_loss_args(p)
    p.add_argument("--reduction", choices=("mean", "sum"), default=None, help="loss reduction (default mean)")
    p.add_argument("--result", metavar="RESULT.npz", help="shade by a saved result (edgegrad grad/batch --out)")
    p.add_argument("--out", required=True, metavar="PICTURE", help="picture to write (.svg, or .png with cairosvg)")
    p.add_argument("--title", default=None, help="title line (default: the file name and what is shown)")
    p.add_argument("--max-nodes", type=int, default=MAX_NODES, metavar="N",
                   help=f"draw every vertex up to N vertices, a per-level summary beyond (default {MAX_NODES})")


def run(args: argparse.Namespace) -> int:
    """Compute (or read) the gradients, lay the network out and write the picture."""
    from edgegrad.cli.common import check_mode_flags, load_batch, show_engine_notices
    from edgegrad.model.network import Network

    from . import check_picture_path, draw, load_result

    check_picture_path(args.out)
    if args.max_nodes < 1:
        raise InvalidInput(f"--max-nodes: must be at least 1, got {args.max_nodes}")
    if args.result is not None and (args.inputs or args.targets or args.loss or args.reduction):
        raise InvalidInput("--result: give either --result or --inputs (with --targets and --loss), not both")
    if args.inputs is None and (args.targets or args.loss or args.reduction):
        raise InvalidInput("--inputs: required with --targets, --loss or --reduction")
    net = Network.load(args.network)
    name = os.path.basename(args.network)
    if args.result is not None:
        result, what = load_result(args.result, net), f"result {os.path.basename(args.result)}"
    elif args.inputs is not None:
        check_mode_flags(args)
        from edgegrad.engine.api import gradients

        x, t = load_batch(args, net)
        show_engine_notices()
        result = gradients(net, x, targets=t, loss=args.loss, reduction=args.reduction or "mean")
        what = (f"{args.loss} loss" if args.loss else "output mode") + f", batch of {x.shape[0]}"
        if result.loss is not None:
            what += f", L = {result.loss:.4g}"
    else:
        result, what = None, "weights and biases"
    draw(net, result, args.out, title=args.title or f"{name}: {what}", max_nodes=args.max_nodes)
    return 0
