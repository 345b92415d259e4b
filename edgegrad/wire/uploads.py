"""Batches larger than one message: the checks an upload's pieces get as they arrive, and at submit.

Pieces are checked one at a time (the server never holds the whole batch): shape, finiteness
and, for later use, the first value outside float32's range and the first target outside [0, 1].
At submit the record is checked against the network and the loss with the same messages the
in-process call gives.

A population's upload may also hold flat fields (``FLAT_FIELDS``: packed per-network rows, weights,
biases: 1-D pieces whose bad values are only noted, to be named ``inputs[p][b][c]`` or
``nets[p].weights[e]`` at submit, where the networks are known) and the networks' topology
(``networks``: bytes of a serialized ``Networks`` message); ``edgegrad.wire.population_uploads``
checks those at submit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..engine.batch import _names, check_modes
from ..errors import InvalidInput
from ..model.sizes import NetworkSizes
from ..v1 import job_pb2, tensor_pb2

__all__ = ["UploadChecker", "check_upload", "FIELDS", "ROW_FIELDS", "FLAT_FIELDS", "BYTE_FIELDS", "pieces_of"]

ROW_FIELDS = ("inputs", "targets")
FLAT_FIELDS = ("inputs_packed", "targets_packed", "weights", "biases")
BYTE_FIELDS = ("networks",)
FIELDS = ROW_FIELDS + FLAT_FIELDS + BYTE_FIELDS
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass
class _FieldState:
    rows: int = 0
    columns: int = -1
    pieces: int = 0
    last_short: bool = False
    beyond_f32: str = ""       #: "row,col,value" of the first value float32 cannot hold
    outside_unit: str = ""     #: "row,col,value" of the first value outside [0, 1]
    size: int = 0              #: flat and byte fields: values (bytes) per piece, the first piece's
    nonfinite: str = ""        #: flat fields: "index,value" of the first value that is not finite


@dataclass
class UploadChecker:
    """Checks pieces in arrival order and keeps what submit needs to know (no data)."""

    piece_rows: int = 0
    fields: dict[str, _FieldState] = field(default_factory=lambda: {name: _FieldState() for name in FIELDS})

    def add(self, name: str, rows: np.ndarray) -> tuple[int, bytes]:
        """Check one piece; return (its index in its field, its rows as float64 little-endian bytes)."""
        if name not in FIELDS:
            raise InvalidInput(f"upload.field: expected one of {', '.join(repr(f) for f in FIELDS)}, got {name!r}")
        if name in BYTE_FIELDS:
            raise InvalidInput(f"upload.{name}: its pieces carry data (bytes), not rows")
        if name in FLAT_FIELDS:
            return self._add_flat(name, rows)
        if name == "inputs" and self.fields["targets"].pieces:
            raise InvalidInput("upload: inputs pieces must all come before targets pieces")
        state = self.fields[name]
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise InvalidInput(f"upload.{name}: expected a non-empty 2-D piece of rows, got shape {list(rows.shape)}")
        if state.columns not in (-1, rows.shape[1]):
            raise InvalidInput(f"upload.{name}: pieces have {state.columns} columns, this one {rows.shape[1]}")
        if state.last_short:
            raise InvalidInput(f"upload.{name}: only the last piece may have fewer than {self.piece_rows} rows")
        if not self.piece_rows:
            self.piece_rows = rows.shape[0]
        if rows.shape[0] > self.piece_rows:
            raise InvalidInput(f"upload.{name}: pieces have {self.piece_rows} rows, this one {rows.shape[0]}")
        if rows.dtype.kind != "f":
            raise InvalidInput(f"upload.{name}.dtype: expected float64 or float32, got {rows.dtype.name}")
        values = rows.astype("<f8", copy=False)
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            b, c = bad[0]
            raise InvalidInput(f"{name}[{state.rows + int(b)}][{int(c)}]: must be finite, got {values[b, c]}")
        if not state.beyond_f32:
            state.beyond_f32 = _first(np.abs(values) > _F32_MAX, values, state.rows)
        if not state.outside_unit:
            state.outside_unit = _first((values < 0) | (values > 1), values, state.rows)
        state.columns = rows.shape[1]
        state.last_short = rows.shape[0] < self.piece_rows
        state.rows += rows.shape[0]
        state.pieces += 1
        return state.pieces - 1, np.ascontiguousarray(values).tobytes()

    def add_bytes(self, name: str, data: bytes) -> tuple[int, bytes]:
        """Take one piece of a byte field (the networks' serialized topology); (its index, its bytes)."""
        if name not in BYTE_FIELDS:
            raise InvalidInput(f"upload.{name}: data (bytes) goes with the field 'networks' only; give rows")
        state = self._sized(name, len(data))
        state.rows += len(data)
        state.pieces += 1
        return state.pieces - 1, data

    def _sized(self, name: str, size: int) -> _FieldState:
        """The field's state once a piece of ``size`` values (bytes) fits its pieces' size."""
        state = self.fields[name]
        if size == 0:
            raise InvalidInput(f"upload.{name}: empty piece")
        if state.last_short or (state.size and size > state.size):
            raise InvalidInput(f"upload.{name}: pieces hold {state.size} values each (only the last fewer),"
                               f" this one {size}")
        state.size = state.size or size
        state.last_short = size < state.size
        return state

    def _add_flat(self, name: str, values: np.ndarray) -> tuple[int, bytes]:
        """One piece of a flat field: 1-D floats; the first value not finite (or outside float32's range or
        [0, 1]) is noted, not refused: submit names it by its network."""
        if values.ndim != 1:
            raise InvalidInput(f"upload.{name}: expected a 1-D piece of values, got shape {list(values.shape)}")
        if values.dtype.kind != "f":
            raise InvalidInput(f"upload.{name}.dtype: expected float64 or float32, got {values.dtype.name}")
        state = self._sized(name, values.shape[0])
        data = values.astype("<f8", copy=False)
        if not state.nonfinite:
            state.nonfinite = _first_flat(~np.isfinite(data), data, state.rows)
        if not state.beyond_f32:
            state.beyond_f32 = _first_flat(np.abs(data) > _F32_MAX, data, state.rows)
        if not state.outside_unit:
            state.outside_unit = _first_flat((data < 0) | (data > 1), data, state.rows)
        state.rows += data.shape[0]
        state.pieces += 1
        return state.pieces - 1, np.ascontiguousarray(data).tobytes()

    @property
    def stored_bytes(self) -> int:
        """Bytes of every piece taken so far."""
        return sum(st.rows * (1 if name in BYTE_FIELDS else 8 * max(st.columns, 1)) for name, st in self.fields.items())

    def record(self) -> dict[str, str]:
        """The upload's record for Redis (a population's fields only where it has pieces of them)."""
        if not any(st.pieces for st in self.fields.values()):
            raise InvalidInput("upload: no pieces")
        out = {"piece_rows": str(self.piece_rows)}
        for name, st in self.fields.items():
            if name in ROW_FIELDS:
                out.update({f"{name}_rows": str(st.rows), f"{name}_columns": str(max(st.columns, 0)),
                            f"{name}_beyond_f32": st.beyond_f32, f"{name}_outside_unit": st.outside_unit,
                            f"{name}_pieces": str(st.pieces)})
            elif st.pieces:
                out.update({f"{name}_values": str(st.rows), f"{name}_pieces": str(st.pieces),
                            f"{name}_piece_values": str(st.size), f"{name}_nonfinite": st.nonfinite,
                            f"{name}_beyond_f32": st.beyond_f32, f"{name}_outside_unit": st.outside_unit})
        return out


def _first(mask: np.ndarray, values: np.ndarray, row_offset: int) -> str:
    hit = np.argwhere(mask)
    if not hit.size:
        return ""
    b, c = hit[0]
    return f"{row_offset + int(b)},{int(c)},{float(values[b, c])!r}"


def _first_flat(mask: np.ndarray, values: np.ndarray, offset: int) -> str:
    hit = np.flatnonzero(mask)
    return f"{offset + int(hit[0])},{float(values[hit[0]])!r}" if hit.size else ""


def check_upload(meta: NetworkSizes, record: dict[str, str], upload_id: str, loss: str | None, reduction: str,
                 dtype: str, per_example: bool) -> job_pb2.BatchPieces:
    """Check an upload against a network and options as ``check_options`` checks arrays; its BatchPieces."""
    dtype = check_modes(loss, reduction, dtype, per_example)
    extra = [name for name in FLAT_FIELDS + BYTE_FIELDS if record.get(f"{name}_pieces")]
    if extra:
        raise InvalidInput(f"request.upload: upload {upload_id!r} holds {extra[0]}, a population's part (give it with"
                           " a population request)", field="request.upload")
    if not int(record["inputs_rows"]):
        raise InvalidInput(f"request.upload: upload {upload_id!r} holds no inputs", field="request.upload")
    rows, cols = int(record["inputs_rows"]), int(record["inputs_columns"])
    _shape("inputs", rows, cols, meta.n_inputs, meta.inputs)
    if dtype == "float32":
        _beyond("inputs", record["inputs_beyond_f32"])
    t_rows, t_cols = int(record["targets_rows"]), int(record["targets_columns"])
    if loss is None:
        if t_rows:
            raise InvalidInput("targets: given without a loss (pass loss='mse', 'bce' or 'softmax_ce')")
    else:
        if not t_rows:
            raise InvalidInput(f"targets: loss '{loss}' needs targets (B×{meta.n_outputs})")
        _shape("targets", t_rows, t_cols, meta.n_outputs, meta.outputs)
        if dtype == "float32":
            _beyond("targets", record["targets_beyond_f32"])
        if t_rows != rows:
            raise InvalidInput(f"targets: has {t_rows} rows but inputs has {rows}")
        if loss in ("bce", "softmax_ce") and record["targets_outside_unit"]:
            b, k, value = record["targets_outside_unit"].split(",", 2)
            raise InvalidInput(f"targets[{b}][{k}]: {loss} needs targets in [0, 1], got {float(value)}")
    return job_pb2.BatchPieces(upload=upload_id, rows=rows, piece_rows=int(record["piece_rows"]),
                               dtype=tensor_pb2.DTYPE_FLOAT64, input_columns=cols,
                               target_columns=t_cols if loss else 0)


def _shape(name: str, rows: int, cols: int, columns: int, names: Sequence[str]) -> None:
    if cols != columns:  # the same words check_array uses for an inline batch
        raise InvalidInput(f"{name}: expected shape (B, {columns}) with columns {_names(names)}, got {(rows, cols)}")


def _beyond(name: str, found: str) -> None:
    if found:
        b, c, value = found.split(",", 2)
        raise InvalidInput(f"{name}[{b}][{c}]: {float(value)} is beyond float32's range (use dtype float64)")


def pieces_of(values: np.ndarray, piece_rows: int) -> list[bytes]:
    """Rows of a validated float64 array as pieces of ``piece_rows`` rows (raw little-endian bytes)."""
    data = np.ascontiguousarray(values, dtype="<f8")
    return [data[a:a + piece_rows].tobytes() for a in range(0, data.shape[0], piece_rows)]
