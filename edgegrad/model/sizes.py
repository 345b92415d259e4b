"""``NetworkSizes``: the part of a network a batch is checked against and a job is sized by.

Both ``Network`` and the server's ``NetworkMeta`` (a registered network's ids and sizes, without
its arrays) satisfy it, so request checks and shard sizing take either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["NetworkSizes"]


class NetworkSizes(Protocol):
    """Input and output ids and the sizes I, N, E, K of a network."""

    @property
    def inputs(self) -> Sequence[str]:
        """Input ids, in column order of a batch's inputs."""

    @property
    def outputs(self) -> Sequence[str]:
        """Output ids, in column order of targets and output-mode results."""

    @property
    def n_inputs(self) -> int:
        """Number of inputs (I)."""

    @property
    def n_nodes(self) -> int:
        """Number of computed nodes (N)."""

    @property
    def n_edges(self) -> int:
        """Number of edges (E)."""

    @property
    def n_outputs(self) -> int:
        """Number of outputs (K)."""
