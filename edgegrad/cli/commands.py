"""The ``edgegrad`` command: one table of subcommands, each a module with ``add_arguments`` and ``run``,
imported only when chosen; ``main`` maps every failure to one ``error:`` line and an exit status.

Bad input of any kind ends with exit status 2, nothing on stdout and exactly one line on
stderr that starts with ``error:`` and names the place; never a traceback. An unreachable
server is exit status 3, a failed job 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import EdgegradError
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, CommandFailure, Parser, UsageError, rpc_message

__all__ = ["main", "build_parser", "COMMANDS"]

#: every subcommand: name -> (its module, one-line help), in the order ``edgegrad --help`` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "grad": ("edgegrad.cli.grad", "gradients of a network for a batch of inputs"),
    "explain": ("edgegrad.cli.explain", "show the δ recursion for one edge, with numbers"),
    "batch": ("edgegrad.cli.batch", "run a batch job on a server and write its result to a file as it arrives"),
    "jobs": ("edgegrad.cli.jobs", "list, show, watch, cancel or delete a server's jobs"),
    "up": ("edgegrad.server.up", "run the whole service: gRPC server, workers and Redis"),
    "server": ("edgegrad.server.main", "run the gRPC front end only"),
    "worker": ("edgegrad.worker.main", "run one job worker"),
    "protos": ("edgegrad.wire.protofiles", "write every .proto a client in another language needs"),
    "draw": ("edgegrad.draw.cli", "draw a network as a picture (.svg or .png), shaded by its gradients"),
}


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; the subcommand named in ``argv`` gets its real arguments (its module imported now)."""
    parser = Parser(prog="edgegrad", description="Exact gradients of neural networks given as arbitrary DAGs.")
    parser.add_argument("--version", action="version", version=f"edgegrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = _import_command(name, module_name)
            module.add_arguments(p)
            p.set_defaults(handler=module.run)
    return parser


def _import_command(name: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandFailure(f"edgegrad {name}: not available in this installation ({exc})", EXIT_INTERNAL) from None


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
