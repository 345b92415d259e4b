"""The kernel seam: one interface (``Kernel``) for the engine's passes, and the one place a kernel is chosen.

A *kernel* is one implementation of the passes over a plan: ``NumpyKernel`` (``passes``: numpy and
scipy, BLAS for dense levels) or ``numba_kernel.NumbaKernel`` (the numba loops of ``numba_loops``).
``choose_kernel`` picks one per call from the ``kernel`` setting (EDGEGRAD_KERNEL): ``numpy`` always
runs numpy; ``compiled`` runs numba; ``auto`` (the default) runs numba for plans big enough to repay
numba's one-off import (``AUTO_MIN_EDGES``) with no dense BLAS level (numpy is faster there). The
choice depends on the plan alone, never on the batch or the thread count, so a network's results are
bit-identical across calls, slabs and workers. Per-example and output-mode results are written by
the numba loops from ``COMPILED_WRITE_MIN_BYTES`` on under ``auto`` (always under ``compiled``, never
under ``numpy``), whichever kernel ran the passes: the same bits either way. Likewise numpy's dense
gradient blocks are put into file order by a numba scatter from ``COMPILED_SCATTER_MIN_BYTES`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

import numpy as np

from ..settings import KERNELS
from . import clipping, numba_kernel, passes
from .kernelcache import kernel_setting
from .passes import PassBuffers
from .plan import Plan

__all__ = ["Kernel", "NumpyKernel", "choose_kernel", "kernel_setting", "example_writer", "uses_compiled",
           "available", "AUTO_MIN_EDGES", "COMPILED_WRITE_MIN_BYTES", "COMPILED_SCATTER_MIN_BYTES"]

#: ``auto`` runs plans of at least this many edges on numba (below, numba's import and cache load, ~0.7 s
#: once per process, cost more). numba's passes are faster at every size (measured here: 3× at 10k edges,
#: B=256, 3.8 ms saved per call, the load repaid in ~200 calls; 2.3× at 20k, in ~125)
AUTO_MIN_EDGES = 8_000
#: ``auto`` writes per-example and output-mode results at least this large with the numba loops (one pass
#: over the result instead of numpy's gather then multiply; the same bits: one product per value)
COMPILED_WRITE_MIN_BYTES = 16 << 20
#: ``auto`` puts dense gradient blocks of at least this many bytes into file order with the numba loops
#: (``dense.dense_grads``: a scatter instead of numpy's gather, the same numbers; measured here on the 1.58M-edge
#: MLP of ``benchmarks/clip.py``, edges in a random file order, B=256: a loss-mode call 1.2–3 ms faster, of ~34;
#: numba's load and first call, ~0.45 s once per process, repaid within a few hundred calls)
COMPILED_SCATTER_MIN_BYTES = 8 << 20

PlanT = TypeVar("PlanT", contravariant=True)


class Kernel(Protocol[PlanT]):
    """The passes of one slab over a plan; ``api`` calls these and nothing else of a kernel.

    Buffers are node-major (``passes.PassBuffers``). A loss-mode slab is ``forward``, then the loss,
    then ``backward_summed``; a per-example or output-mode slab is ``forward``, ``backward``,
    ``write_rows``. Clipping (``clipping.py``) runs ``forward`` with ``squares``, ``backward``, the norms (``example_squares``),
    ``scale_deltas``, then ``edge_sums``. ``PlanT``
    is ``Plan`` for one network (a population kernel takes its own plan).
    """

    name: ClassVar[str]              #: "numpy" or "numba"
    own_edge_order: ClassVar[bool]   #: summed edge gradients come in the kernel's order (``file_order`` fixes it)

    def forward(self, plan: PlanT, x: np.ndarray, n_outputs: int | None, workspace: np.ndarray,
                squares: bool = False) -> PassBuffers:
        """o of every vertex and f'(z) of every node for inputs ``x`` (B×I), buffers carved from ``workspace``;
        with ``squares`` also the norm pass's ``PassBuffers.squares`` (where ``passes.pass_buffers`` makes it)."""

    def backward(self, plan: PlanT, buffers: PassBuffers, direct: np.ndarray | None) -> None:
        """δ in place of f'(z); ``direct`` is ∂L/∂o (K×B) in loss mode, None in output mode."""

    def sum_slots(self, plan: PlanT) -> int:
        """Length of a slab's summed edge gradients (``backward_summed``'s ``sums``)."""

    def backward_summed(self, plan: PlanT, buffers: PassBuffers, direct: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """Loss-mode δ, every edge's Σ_b δ(v)·o[u] into ``sums``; returns Σ_b δ per node row."""

    def edge_sums(self, plan: PlanT, buffers: PassBuffers, sums: np.ndarray) -> None:
        """Every edge's Σ_b δ(v)·o[u] into ``sums`` (as ``backward_summed`` lays them out) from δ in ``buffers``."""

    def source_squares(self, plan: PlanT, acts: np.ndarray, base: float) -> np.ndarray:
        """``base + Σ_{(u,v)∈E} o(u)²`` for every node row v, float64 (rows × columns of ``acts``): the norm pass."""

    def example_squares(self, plan: PlanT, deltas: np.ndarray, fan: np.ndarray) -> np.ndarray:
        """Σ_v δ[v]²·fan[v] per column, float64, from this kernel's ``forward`` ``squares`` (``fan``)."""

    def scale_deltas(self, plan: PlanT, deltas: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """Each example's δ column (N×B) times its factor (B), in place; returns Σ_b δ per node row after."""

    def file_order(self, plan: PlanT, sums: np.ndarray) -> np.ndarray:
        """Summed edge gradients in file order (``sums`` itself where they already are)."""

    def write_rows(self, plan: PlanT, buffers: PassBuffers, edges_out: np.ndarray, deltas_out: np.ndarray) -> None:
        """Per-example (B×E, B×N) or output-mode (B×K×E, B×K×N) rows δ(v)·o[u] and δ, file order."""


@dataclass(frozen=True)
class NumpyKernel:
    """``Kernel`` on numpy and scipy (``passes``): summed edge gradients computed apart, in file order."""

    write_min_bytes: float           #: per-example / output-mode results from this size on by ``numba_loops``
    scatter_min_bytes: float = float("inf")  #: dense blocks put in file order by ``numba_loops`` from this size on
    name: ClassVar[str] = "numpy"
    own_edge_order: ClassVar[bool] = False

    def forward(self, plan: Plan, x: np.ndarray, n_outputs: int | None, workspace: np.ndarray,
                squares: bool = False) -> PassBuffers:
        """o and f'(z) of every row (``passes.forward``), then the sources' squares (``clipping.fill_squares``: a
        fully connected level's in its first row only, as ``example_squares`` reads them)."""
        buffers = passes.forward(plan, x, n_outputs=n_outputs, workspace=workspace, squares=squares)[0]
        if buffers.squares is not None:
            clipping.fill_squares(plan, buffers.acts, buffers.squares)
        return buffers

    def backward(self, plan: Plan, buffers: PassBuffers, direct: np.ndarray | None) -> None:
        """δ in place of f'(z) (``passes.backward``)."""
        passes.backward(plan, buffers, direct)

    def sum_slots(self, plan: Plan) -> int:
        """One slot per edge, file order."""
        return plan.edge_file.size

    def backward_summed(self, plan: Plan, buffers: PassBuffers, direct: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """``passes.backward``, then ``passes.summed_edge_grads`` into ``sums``; Σ_b δ per node row."""
        passes.backward(plan, buffers, direct)
        self.edge_sums(plan, buffers, sums)
        return buffers.deltas.sum(axis=1)

    def edge_sums(self, plan: Plan, buffers: PassBuffers, sums: np.ndarray) -> None:
        """``passes.summed_edge_grads`` into ``sums`` (file order); dense blocks of ``scatter_min_bytes`` or more
        put in place by ``numba_loops.put_cells`` where numba loads."""
        loops = numba_kernel.rows_writer(plan.dense.put.size * sums.itemsize, self.scatter_min_bytes)
        passes.summed_edge_grads(plan, buffers, sums, None if loops is None else loops.put_cells)

    def source_squares(self, plan: Plan, acts: np.ndarray, base: float) -> np.ndarray:
        """Level by level: a column sum, a BLAS product or a sparse product (``clipping.source_squares``)."""
        return clipping.source_squares(plan, np.square(acts, dtype=np.float64), base)

    def example_squares(self, plan: Plan, deltas: np.ndarray, fan: np.ndarray) -> np.ndarray:
        """``clipping.block_squares`` (a fully connected level's rows read through its one fan row)."""
        return clipping.block_squares(plan, deltas, fan)

    def scale_deltas(self, plan: Plan, deltas: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """One product, then a sum along the rows."""
        np.multiply(deltas, factors, out=deltas)
        return deltas.sum(axis=1)

    def file_order(self, plan: Plan, sums: np.ndarray) -> np.ndarray:
        """``sums`` itself: already in file order."""
        return sums

    def write_rows(self, plan: Plan, buffers: PassBuffers, edges_out: np.ndarray, deltas_out: np.ndarray) -> None:
        """Per-example or output-mode rows δ(v)·o[u] and δ (``passes.per_example_results``)."""
        writer = numba_kernel.rows_writer(edges_out.nbytes + deltas_out.nbytes, self.write_min_bytes)
        passes.per_example_results(plan, buffers, edges_out, deltas_out, writer)


def available() -> bool:
    """Whether the numba kernel loads here (imports numba on first call)."""
    return numba_kernel.available()


def eligible(plan: Plan) -> bool:
    """Whether ``auto`` would run this plan on numba: enough edges, no dense BLAS level, int32 indices."""
    return plan.edge_file.size >= AUTO_MIN_EDGES and not plan.dense.levels and numba_kernel.fits_int32(plan)


def _uses_numba(choice: str, plan: Plan) -> bool:
    if choice == "numpy" or (choice == "auto" and not eligible(plan)):
        return False
    return numba_kernel.fits_int32(plan) and numba_kernel.available()


def uses_compiled(plan: Plan) -> bool:
    """Whether this plan's passes run on the numba kernel (see the module docstring)."""
    return _uses_numba(kernel_setting(), plan)


def _write_min_bytes(choice: str) -> float:
    """Results of at least this many bytes are written by the numba loops under the setting ``choice``."""
    return float("inf") if choice == "numpy" else COMPILED_WRITE_MIN_BYTES if choice == "auto" else 0


def _scatter_min_bytes(choice: str) -> float:
    """Dense gradient blocks of at least this many bytes go into file order by the numba loops under ``choice``."""
    return float("inf") if choice == "numpy" else COMPILED_SCATTER_MIN_BYTES if choice == "auto" else 0


def example_writer(nbytes: int) -> object | None:
    """The numba loops that write a per-example or output-mode result of ``nbytes``, or None for numpy's way:
    the kernel setting ``numpy``, numba missing, or (``auto``) a result too small to repay loading numba."""
    return numba_kernel.rows_writer(nbytes, _write_min_bytes(kernel_setting()))


#: the kernels, one of each per setting (they hold no state but the setting's result-writer threshold)
_NUMPY = {choice: NumpyKernel(_write_min_bytes(choice), _scatter_min_bytes(choice)) for choice in KERNELS}
_NUMBA = {choice: numba_kernel.NumbaKernel(_write_min_bytes(choice)) for choice in KERNELS}


def choose_kernel(plan: Plan) -> Kernel[Plan]:
    """The kernel every slab of a call on ``plan`` runs on: the one place numpy or numba is chosen."""
    choice = kernel_setting()
    return _NUMBA[choice] if _uses_numba(choice, plan) else _NUMPY[choice]
