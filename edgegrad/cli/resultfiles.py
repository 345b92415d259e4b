"""A job's result written to disk as its chunks arrive: a folder of ``.npy`` files, or one ``.npz``.

Chunks may come in any order (shards finish when they finish): each one lands in place in a
memory-mapped ``.npy`` (``np.lib.format.open_memmap``), so a result larger than memory never has
to fit in it. A small progress record beside the data names the job and the chunk seqs already on
disk, so an interrupted write can be continued (``edgegrad jobs watch NAME --out OUT``). An
``.npz`` is assembled from a temporary folder (``OUT.part``) once the last chunk is in.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInput
from ..v1 import job_pb2, tensor_pb2
from ..wire.chunking import FIELD_NAMES
from ..wire.rawchunk import RawChunk, chunk_values
from .io import remove_quietly

__all__ = ["partial_place", "ResultWriter", "RowProgress", "PROGRESS_NAME", "PART_SUFFIX", "is_npz", "data_dir",
           "check_out", "layout_key"]

PROGRESS_NAME = ".edgegrad-progress.json"  #: the progress record, inside the data folder
PART_SUFFIX = ".part"  #: an .npz's data folder while it is being written: OUT + ".part"
CHECKPOINT_SECONDS = 0.5  #: at most this long between progress records while chunks arrive
_LABELS = ("edges", "nodes")
_NPZ_ORDER = ("outputs", "edge_grads", "deltas", "edges", "nodes", "loss", "norms")  # as io.save_result writes them
_DTYPES: dict[int, np.dtype] = {tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"), tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4")}


def is_npz(out: str) -> bool:
    """Whether ``out`` names one ``.npz`` file (anything else is a folder of ``.npy`` files)."""
    return out.lower().endswith(".npz")


def data_dir(out: str) -> str:
    """The folder the ``.npy`` files are written into: ``out`` itself, or ``out.part`` for an .npz."""
    return out + PART_SUFFIX if is_npz(out) else out


def partial_place(out: str) -> str:
    """Where a partial result lies, in words: ``OUT.part/`` (an .npz is packed once complete) or ``OUT/``."""
    if is_npz(out):
        return f"{data_dir(out)}/ ({out} is made from it once the job is complete)"
    return f"{out.rstrip('/')}/"


def _cannot(path: str, exc: OSError) -> InvalidInput:
    return InvalidInput(f"{path}: cannot write ({exc.strerror or exc})")


def check_out(out: str) -> None:
    """Refuse an --out that cannot be written before any work is done (InvalidInput naming it)."""
    if not out.strip():
        raise InvalidInput("--out: expected a file (.npz) or folder name, got an empty string")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise InvalidInput(f"{out}: cannot write (no folder {parent})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{out}: cannot write (folder {parent} is not writable)")
    if is_npz(out) and os.path.isdir(out):
        raise InvalidInput(f"{out}: is a folder (an .npz result needs a file name)")
    if not is_npz(out) and os.path.exists(out) and not os.path.isdir(out):
        raise InvalidInput(f"{out}: exists and is not a folder (name an .npz file or a folder)")


def layout_key(layout: job_pb2.ResultLayout) -> dict[str, Any]:
    """What a partial result must agree on to be continued: dtype, field shapes, chunk count."""
    return {"dtype": int(layout.dtype), "chunk_count": int(layout.chunk_count),
            "fields": [[int(f.field), [int(s) for s in f.shape]] for f in layout.fields]}


class RowProgress:
    """How much of a result has arrived, in rows of the batch: the share of its per-row fields' elements.

    Outputs are always per row, and so are ``edge_grads``/``deltas`` except in reduced loss mode;
    counting all of them keeps the measure honest whichever order fields and shards arrive in.
    """

    def __init__(self, layout: job_pb2.ResultLayout, received: dict[int, int] | None = None) -> None:
        self.batch = int(layout.batch)
        self._sizes = {int(f.field): math.prod(int(s) for s in f.shape) for f in layout.fields
                       if f.field == job_pb2.RESULT_FIELD_OUTPUTS or len(f.shape) >= 2}
        self._total = sum(self._sizes.values())
        self.received = {field: int((received or {}).get(field, 0)) for field in self._sizes}

    def add(self, chunk: job_pb2.ResultChunk | RawChunk) -> int:
        """Count one (new) chunk; return the rows done."""
        if chunk.field in self.received:
            self.received[chunk.field] += int(chunk.stop - chunk.start)
        return self.rows

    @property
    def rows(self) -> int:
        """Rows' worth of the per-row fields received (B once all of them are in)."""
        if not self._total:
            return self.batch
        return min(self.batch, self.batch * sum(self.received.values()) // self._total)


class ResultWriter:
    """Writes one job's result chunks, in any order, into memory-mapped ``.npy`` files under ``out``.

    ``ResultWriter.open`` continues a partial result of the same job (``after_seq`` then says where
    to resume the stream) or starts afresh; ``add`` places a chunk; ``checkpoint`` records progress
    (data first, record after); ``finish`` completes the files; ``close`` leaves a partial result
    to continue later; ``discard`` removes what was written.
    """

    def __init__(self, out: str, job_name: str, layout: job_pb2.ResultLayout, record: dict[str, Any] | None,
                 labels: dict[str, Sequence[Any]] | None) -> None:
        self.out, self.job_name, self.layout = out, job_name, layout
        self.dir = data_dir(out)
        self._dtype = _DTYPES.get(layout.dtype)
        if self._dtype is None:
            raise InvalidInput(f"{job_name}: unsupported result dtype {layout.dtype}")
        self._maps: dict[int, np.ndarray] = {}
        self._flat: dict[int, np.ndarray] = {}
        self._through = int(record["through"]) if record else 0  # every seq 1..through is on disk
        self._extra: set[int] = set(int(s) for s in record.get("extra", ())) if record else set()
        self.progress = RowProgress(layout, {int(k): v for k, v in record["received"].items()} if record else None)
        self.resumed = record is not None and self.chunks_done > 0  #: continued an earlier partial result
        self._last_checkpoint = 0.0
        self._open_files(resume=record is not None, labels=labels)

    # ------------------------------------------------------------ opening
    @classmethod
    def open(cls, out: str, job_name: str, layout: job_pb2.ResultLayout,
             labels: dict[str, Sequence[Any]] | None = None) -> ResultWriter:
        """Continue ``out``'s partial result of ``job_name`` if it has one, else start afresh."""
        check_out(out)
        record = read_record(out)
        if record is not None and (record.get("job") != job_name or record.get("layout") != layout_key(layout)):
            record = None
        try:
            os.makedirs(data_dir(out), exist_ok=True)
            if record is None:  # a stale record must not describe the files about to be made
                remove_quietly(os.path.join(data_dir(out), PROGRESS_NAME))
            writer = cls(out, job_name, layout, record, labels)
        except OSError as exc:
            raise _cannot(out, exc) from None
        return writer

    def _open_files(self, resume: bool, labels: dict[str, Sequence[Any]] | None, keep_labels: bool = False) -> None:
        for f in self.layout.fields:
            path = self._path(FIELD_NAMES[f.field])
            shape = tuple(int(s) for s in f.shape)
            arr = None
            if resume:
                try:
                    arr = np.lib.format.open_memmap(path, mode="r+")
                except (OSError, ValueError):
                    arr = None
                if arr is not None and (arr.shape != shape or arr.dtype != self._dtype):
                    arr = None
                if arr is None:  # the files do not match their record: start again
                    self._release()
                    self._through, self._extra, self.progress, self.resumed = 0, set(), RowProgress(self.layout), False
                    return self._open_files(resume=False, labels=labels, keep_labels=True)
            else:
                arr = np.lib.format.open_memmap(path, mode="w+", dtype=self._dtype, shape=shape)
            self._maps[f.field] = arr
            self._flat[f.field] = arr.reshape(-1)
        if not resume:
            remove_quietly(self._path("loss"))
            for name in _LABELS:
                if not keep_labels or labels is not None:
                    remove_quietly(self._path(name))
            for name, values in (labels or {}).items():
                np.save(self._path(name), np.array(values, dtype=str))
            self.checkpoint(force=True)

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.npy")

    # ------------------------------------------------------------ progress
    @property
    def after_seq(self) -> int:
        """The seq to resume the job's stream after (every chunk up to it is on disk)."""
        return self._through

    @property
    def chunks_done(self) -> int:
        """How many distinct chunks are written."""
        return self._through + len(self._extra)

    @property
    def rows_done(self) -> int:
        """Rows' worth of the result written (see RowProgress)."""
        return self.progress.rows

    @property
    def complete(self) -> bool:
        """Whether every chunk of the layout is written."""
        return self.chunks_done >= self.layout.chunk_count

    # ------------------------------------------------------------ writing
    def add(self, chunk: job_pb2.ResultChunk | RawChunk) -> bool:
        """Write one chunk (a message, or a RawChunk viewing the received bytes) in place; False if already written."""
        seq = int(chunk.seq)
        if seq <= self._through or seq in self._extra:
            return False
        flat = self._flat.get(chunk.field)
        if flat is None or not 1 <= seq <= self.layout.chunk_count:
            raise ValueError(f"chunk {seq}: field {chunk.field} or seq is not in the job's layout")
        data = chunk_values(chunk, f"chunk {seq}.data")
        start, stop = int(chunk.start), int(chunk.stop)
        if not 0 <= start <= stop <= flat.size or stop - start != data.size:
            raise ValueError(f"chunk {seq}: bad range {start}..{stop} for {data.size} values")
        flat[start:stop] = data
        self.progress.add(chunk)
        self._extra.add(seq)
        while self._through + 1 in self._extra:
            self._extra.remove(self._through + 1)
            self._through += 1
        return True

    def checkpoint(self, force: bool = False) -> None:
        """Flush the data, then record the progress (at most every CHECKPOINT_SECONDS unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = now
        for arr in self._maps.values():
            if isinstance(arr, np.memmap) and arr.size:
                arr.flush()
        record = {"job": self.job_name, "layout": layout_key(self.layout), "through": self._through,
                  "extra": sorted(self._extra), "received": self.progress.received}
        _write_json(os.path.join(self.dir, PROGRESS_NAME), record)

    def finish(self, loss: float | None) -> None:
        """Complete the result: ``loss.npy`` in loss mode, then the .npz (or drop the record of the folder)."""
        if not self.complete:
            raise ValueError(f"{self.job_name}: finished with {self.chunks_done} of "
                             f"{self.layout.chunk_count} chunks written")
        self.checkpoint(force=True)
        self._release()
        if self.layout.loss_mode:
            np.save(self._path("loss"), np.array(float("nan") if loss is None else float(loss)))
        if is_npz(self.out):
            _pack_npz(self.dir, self.out)
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            remove_quietly(os.path.join(self.dir, PROGRESS_NAME))

    def close(self) -> None:
        """Stop writing and keep the partial result and its record, to be continued later."""
        if self._maps:
            self.checkpoint(force=True)
            self._release()

    def discard(self) -> None:
        """Remove everything this writer wrote (the job failed or was cancelled)."""
        self._release()
        if is_npz(self.out):
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for name in (*FIELD_NAMES.values(), "loss", *_LABELS):
            remove_quietly(self._path(name))
        remove_quietly(os.path.join(self.dir, PROGRESS_NAME))
        try:
            os.rmdir(self.dir)  # only if now empty
        except OSError:
            pass

    def _release(self) -> None:
        self._flat.clear()
        self._maps.clear()


# ------------------------------------------------------------ helpers
def read_record(out: str) -> dict[str, Any] | None:
    """The progress record of a partial result at ``out`` (None if there is none or it is unreadable)."""
    try:
        with open(os.path.join(data_dir(out), PROGRESS_NAME), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and isinstance(record.get("through"), int)
          and isinstance(record.get("received"), dict) and isinstance(record.get("extra", []), list))
    return record if ok else None


def _write_json(path: str, value: Any) -> None:
    """Write JSON to ``path`` atomically (a reader sees the old record or the new one)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pack_npz(folder: str, out: str) -> None:
    """Copy the folder's .npy files into an .npz (stored, as np.savez does), renamed into place."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in _NPZ_ORDER:
                path = os.path.join(folder, f"{name}.npy")
                if os.path.exists(path):
                    zf.write(path, arcname=f"{name}.npy")
        os.replace(tmp, out)
    except BaseException:
        remove_quietly(tmp)
        raise
