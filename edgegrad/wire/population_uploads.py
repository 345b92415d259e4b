"""A population's uploaded parts, checked at submit against its networks (no I/O, no values read).

The upload's record (``edgegrad.wire.uploads``) says how many values each field holds and where the first
bad one is; here those are matched with the networks' sizes and named as the in-process call names them
(``inputs[p][b][c]``, ``nets[p].weights[e]``, ``nets[p]: inputs: expected shape ...``). What comes out is
each network's rows and the ``UploadedField`` entries a job's spec keeps for its workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..engine.batch import _names
from ..errors import InvalidInput, ResourceExhausted
from ..v1 import job_pb2
from .uploads import BYTE_FIELDS, FLAT_FIELDS, ROW_FIELDS

__all__ = ["UploadRecord", "flat_offsets"]


def flat_offsets(counts: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(P+1,) first value of each network's packed rows (``counts[p]`` rows of ``widths[p]`` values)."""
    starts = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64) * np.asarray(widths, dtype=np.int64), out=starts[1:])
    return starts


def _at(found: str) -> tuple[int, float]:
    index, value = found.split(",", 1)
    return int(index), float(value)


class UploadRecord:
    """An upload's record seen as a population's parts."""

    def __init__(self, upload_id: str, record: dict[str, str]) -> None:
        self.upload_id, self.record = upload_id, record
        self.fields: list[job_pb2.UploadedField] = []

    def has(self, name: str) -> bool:
        """Whether the upload holds pieces of ``name``."""
        if name in ROW_FIELDS:
            return int(self.record.get(f"{name}_rows", "0") or 0) > 0
        return int(self.record.get(f"{name}_pieces", "0") or 0) > 0

    def pieces(self, name: str) -> int:
        """Pieces of ``name``."""
        return int(self.record.get(f"{name}_pieces", "0") or 0)

    @property
    def most_pieces(self) -> int:
        """Pieces of the field with the most (what is dropped with the job runs up to it)."""
        rows = -(-int(self.record.get("inputs_rows", "0")) // max(1, int(self.record.get("piece_rows", "1") or 1)))
        return max([rows] + [self.pieces(n) for n in FLAT_FIELDS + BYTE_FIELDS])

    def _keep(self, name: str, values: int, piece_values: int, columns: int) -> None:
        self.fields.append(job_pb2.UploadedField(field=name, values=values, piece_values=piece_values,
                                                 columns=columns))

    # ------------------------------------------------------------ weights and biases
    def values(self, name: str, offsets: np.ndarray) -> None:
        """Check uploaded ``weights`` or ``biases`` against the networks' totals (``offsets``: (P+1,))."""
        count, got = int(offsets[-1]), int(self.record[f"{name}_values"])
        if got != count:
            raise InvalidInput(f"{name}: expected {count} float64 values (every network's, in order), the upload"
                               f" holds {got}")
        if self.record[f"{name}_nonfinite"]:
            at, value = _at(self.record[f"{name}_nonfinite"])
            p = int(np.searchsorted(offsets, at, side="right")) - 1
            raise InvalidInput(f"nets[{p}].{name}[{at - int(offsets[p])}]: expected a finite number, got {value}")
        self._keep(name, count, int(self.record[f"{name}_piece_values"]), 1)

    # ------------------------------------------------------------ rows
    def rows(self, name: str, widths: np.ndarray, row_counts: np.ndarray | None, ids: Callable[[int], Sequence[str]],
             dtype: str, loss: str | None, max_batch: int) -> np.ndarray:
        """Check uploaded ``inputs`` or ``targets`` (shared, or packed with ``row_counts``) against each network's
        width; each network's rows. ``ids(p)``: network p's column ids."""
        shared, packed = self.has(name), self.has(f"{name}_packed")
        if shared and packed:
            raise InvalidInput(f"{name}: the upload holds {name} and {name}_packed; give one of them")
        kind = "inputs" if name == "inputs" else "outputs"
        if shared:
            rows, cols = int(self.record[f"{name}_rows"]), int(self.record[f"{name}_columns"])
            bad = np.flatnonzero(widths != cols)
            if bad.size:
                p = int(bad[0])
                where = f"nets[{p}]: {name}" if bad.size < widths.size or np.ptp(widths) > 0 else name
                raise InvalidInput(f"{where}: expected shape (B, {int(widths[p])}) with columns {_names(ids(p))},"
                                   f" got {(rows, cols)}")
            self._flagged(name, self.record[f"{name}_beyond_f32"] if dtype == "float32" else "", loss,
                          lambda b, c: f"{name}[{b}][{c}]")
            piece_rows = int(self.record["piece_rows"])
            self._keep(name, rows * cols, piece_rows * cols, cols)
            return np.full(widths.size, rows, dtype=np.int64)
        if row_counts is None:
            raise InvalidInput("row_counts: missing (packed rows need each network's number of rows)")
        over = np.flatnonzero(row_counts > max_batch)
        if over.size:
            p = int(over[0])
            raise ResourceExhausted(f"{name}[{p}]: batch of {int(row_counts[p])} rows, over the limit of {max_batch}")
        empty = np.flatnonzero(row_counts == 0)
        if empty.size:
            raise InvalidInput(f"{name}[{int(empty[0])}]: the batch is empty (B = 0)")
        starts = flat_offsets(row_counts, widths)
        field = f"{name}_packed"
        got = int(self.record[f"{field}_values"])
        if got != int(starts[-1]):
            raise InvalidInput(f"{field}: expected {int(starts[-1])} float values (row_counts[p] rows of each"
                               f" network's {kind}, network after network), the upload holds {got}")

        def place(at: int) -> str:
            p = int(np.searchsorted(starts, at, side="right")) - 1
            b, c = divmod(at - int(starts[p]), int(widths[p]))
            return f"{name}[{p}][{b}][{c}]"

        if self.record[f"{field}_nonfinite"]:
            at, value = _at(self.record[f"{field}_nonfinite"])
            raise InvalidInput(f"{place(at)}: must be finite, got {value}")
        self._flagged(field, self.record[f"{field}_beyond_f32"] if dtype == "float32" else "", loss,
                      lambda at: place(int(at)))
        self._keep(field, got, int(self.record[f"{field}_piece_values"]), 1)
        return row_counts

    def _flagged(self, field: str, beyond: str, loss: str | None, place: Callable[..., str]) -> None:
        """Refuse a value beyond float32's range (``beyond``), or a target outside [0, 1] for bce/softmax_ce."""
        if beyond:
            *at, value = beyond.split(",")
            raise InvalidInput(f"{place(*at)}: {float(value)} is beyond float32's range (use dtype float64)")
        outside = self.record[f"{field}_outside_unit"]
        if field.startswith("targets") and loss in ("bce", "softmax_ce") and outside:
            *at, value = outside.split(",")
            raise InvalidInput(f"{place(*at)}: {loss} needs targets in [0, 1], got {float(value)}")
