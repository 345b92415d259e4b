"""The ``edgegrad`` command line: local commands, remote batch jobs and their result files."""

from .commands import main

__all__ = ["main"]
