"""The ``edgegrad`` command: ``grad`` and ``explain`` in-process; ``batch``, ``jobs``, ``server``,
``worker`` and ``up`` from their own modules, imported only when chosen.

Bad input of any kind ends with exit status 2, nothing on stdout and exactly one line on
stderr that starts with ``error:`` and names the place; never a traceback. An unreachable
server is exit status 3, a failed job 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, NoReturn, Sequence

from .. import __version__
from ..errors import EdgegradError, InvalidInput

__all__ = ["main", "build_parser", "UsageError", "CommandFailure", "LOSSES", "check_mode_flags", "load_batch",
           "add_loss_args", "rpc_message", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_JOB_FAILED",
           "EXIT_UNREACHABLE", "EXIT_INTERRUPTED"]

LOSSES = ("mse", "bce", "softmax_ce")
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_JOB_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

#: subcommands owned by other modules (``_command_module``), imported only when chosen: name -> one-line help
LAZY_COMMANDS: dict[str, str] = {
    "batch": "run a batch job on a server and write its result to a file as it arrives",
    "jobs": "list, show, watch, cancel or delete a server's jobs",
    "up": "run the whole service: gRPC server, workers and Redis",
    "server": "run the gRPC front end only",
    "worker": "run one job worker",
    "protos": "write every .proto a client in another language needs",
    "draw": "draw a network as a picture (.svg or .png), shaded by its gradients",
}


def _command_module(name: str) -> Any:
    """The module of a lazy subcommand (its ``add_arguments`` and ``run``), imported now."""
    if name == "batch":
        from . import batch
        return batch
    if name == "jobs":
        from . import jobs
        return jobs
    if name == "up":
        from ..server import up
        return up
    if name == "server":
        from ..server import main as server_main
        return server_main
    if name == "worker":
        from ..worker import main as worker_main
        return worker_main
    if name == "draw":
        from ..draw import cli as draw_cli
        return draw_cli
    from ..wire import protofiles
    return protofiles


class UsageError(Exception):
    """A command line that argparse rejects; reported as one ``error:`` line, exit 2."""


class CommandFailure(Exception):
    """A problem already phrased for the user, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------- parser
def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; the subcommand named in ``argv`` (if a lazy one) gets its real arguments."""
    parser = _Parser(prog="edgegrad",
                     description="Exact gradients of neural networks given as arbitrary DAGs.")
    parser.add_argument("--version", action="version", version=f"edgegrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_grad(sub)
    _add_explain(sub)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in LAZY_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = _import_command(name)
            mod.add_arguments(p)
            p.set_defaults(handler=mod.run)
    return parser


def _import_command(name: str) -> Any:
    try:
        return _command_module(name)
    except ImportError as exc:
        raise CommandFailure(f"edgegrad {name}: not available in this installation ({exc})", EXIT_INTERNAL) from None


def add_batch_args(p: argparse.ArgumentParser) -> None:
    """The arguments of a gradient request: NET, --inputs, --targets/--loss, --reduction, --per-example, --dtype."""
    p.add_argument("network", metavar="NET", help="network file (.json, or .npz written by Network.save)")
    p.add_argument("--inputs", required=True, metavar="X",
                   help="inputs, one row per example (.json list of rows, .npy, or .csv)")
    add_loss_args(p)
    p.add_argument("--reduction", choices=("mean", "sum"), default=None,
                   help="loss reduction over the batch (default mean; loss mode only)")
    p.add_argument("--per-example", action="store_true",
                   help="loss mode: one gradient row per example (the rows sum to the batch gradient)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the computation (default float64)")


def _add_grad(sub: Any) -> None:
    p = sub.add_parser(
        "grad", help="gradients of a network for a batch of inputs",
        description="Compute outputs and exact gradients (edge weights and biases) of a network for a "
                    "batch of inputs and print one JSON object: outputs, loss, edge_grads, deltas, "
                    "edges, nodes. Output mode (no --loss): derivatives of every output per example. "
                    "Loss mode: derivatives of the loss.")
    add_batch_args(p)
    p.add_argument("--server", metavar="HOST:PORT", help="compute through an edgegrad service instead of in-process")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE (.json or .npz) instead of stdout")
    p.add_argument("--indent", type=int, nargs="?", const=2, default=None, metavar="N",
                   help="pretty-print the JSON, indented by N spaces (default 2)")
    p.set_defaults(handler=_grad)


def add_loss_args(p: argparse.ArgumentParser) -> None:
    """``--targets`` and ``--loss``."""
    p.add_argument("--targets", metavar="T", help="targets, one row per example, one column per output")
    p.add_argument("--loss", choices=LOSSES, help="loss to differentiate (needs --targets)")


def _add_explain(sub: Any) -> None:
    p = sub.add_parser(
        "explain", help="show the δ recursion for one edge, with numbers",
        description="For one edge (u, v) and one input row, print o[u], z[v], f_v'(z[v]), δ(v) and how "
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
    p.set_defaults(handler=_explain)


# ----------------------------------------------------------------- commands
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


def load_batch(args: argparse.Namespace, net: Any) -> tuple[Any, Any]:
    """The --inputs and --targets matrices (None where not given), checked against the network."""
    from .io import load_matrix

    x = load_matrix(args.inputs, "inputs", net.inputs) if args.inputs is not None else None
    t = load_matrix(args.targets, "targets", net.outputs) if args.targets is not None else None
    return x, t


def _grad(args: argparse.Namespace) -> int:
    """``edgegrad grad``: compute, then print the JSON object or write --out."""
    from .io import check_result_path, dumps_result, save_result
    from ..model.network import Network

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


def _explain(args: argparse.Namespace) -> int:
    """``edgegrad explain``: print the δ recursion for one edge."""
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
    explanation = explain_edge(net, args.edge[0], args.edge[1], inputs=x, row=args.row, targets=t,
                               loss=args.loss, reduction=args.reduction or "mean", output=args.output)
    sys.stdout.write(render(explanation, digits=args.digits, max_nodes=args.max_nodes))
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------- main
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


def _say(message: str) -> None:
    """Exactly one ``error:`` line on stderr."""
    line = " ".join(str(message).split("\n")).strip() or "unknown error"
    try:
        sys.stderr.write(f"error: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 internal, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
        handler: Callable[[argparse.Namespace], int | None] = args.handler
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except UsageError as exc:
        _say(str(exc))
        return EXIT_BAD_INPUT
    except CommandFailure as exc:
        _say(str(exc))
        return exc.status
    except EdgegradError as exc:
        _say(exc.message)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); keep Python from complaining at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_INTERNAL
    except MemoryError:
        _say("out of memory (try a smaller batch)")
        return EXIT_INTERNAL
    except Exception as exc:  # never a traceback
        message = rpc_message(exc)
        if message is not None:
            _say(message)
            return EXIT_BAD_INPUT
        if os.environ.get("EDGEGRAD_DEBUG"):
            raise
        _say(f"internal error: {type(exc).__name__}: {exc} (set EDGEGRAD_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
