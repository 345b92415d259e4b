"""Reading batches (inputs, targets) from .json/.npy/.csv files and writing results as JSON or .npz."""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import sys
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.result import GradientResult
from ..errors import InvalidInput
from ..model.network import Network

__all__ = ["MATRIX_SUFFIXES", "RESULT_SUFFIXES", "STDIN", "load_matrix", "result_to_dict", "dumps_result",
           "save_result", "check_result_path"]

MATRIX_SUFFIXES = (".json", ".npy", ".csv")
#: the --inputs / --targets value that reads JSON rows from standard input, and its name in messages
STDIN = "-"
STDIN_NAME = "<stdin>"
RESULT_SUFFIXES = (".json", ".npz")


def load_matrix(path: str | os.PathLike[str], name: str = "inputs",
                columns: Sequence[str] | None = None) -> np.ndarray:
    """Read a B×C float64 matrix (one row per example) from a .json, .npy or .csv file.

    ``name`` ("inputs" or "targets") is used in messages; ``columns`` are the ids the
    columns stand for, used to reorder a CSV file that has a header row.
    Every problem raises ``InvalidInput`` naming the file and the place in it.
    """
    path = os.fspath(path)
    if path == STDIN:
        return _checked(_rows_from_json(sys.stdin.read(), STDIN_NAME, name), STDIN_NAME, name, columns)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in MATRIX_SUFFIXES:
        raise InvalidInput(f"{path}: unsupported file type '{suffix or '(none)'}' for {name}"
                           f" (expected .json, .npy or .csv)")
    try:
        if suffix == ".json":
            matrix = _load_json(path, name)
        elif suffix == ".npy":
            matrix = _load_npy(path, name)
        else:
            matrix = _load_csv(path, name, columns)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {name} ({exc.strerror or exc})") from None
    return _checked(matrix, path, name, columns)


def _checked(matrix: np.ndarray, path: str, name: str, columns: Sequence[str] | None) -> np.ndarray:
    """``matrix`` once it has rows, the expected columns and finite values (InvalidInput naming the place)."""
    if matrix.shape[0] == 0:
        raise InvalidInput(f"{path}: {name}: no rows")
    if columns is not None and matrix.shape[1] != len(columns):
        shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
        raise InvalidInput(f"{path}: {name}: expected {len(columns)} columns ({shown}) per row,"
                           f" got {matrix.shape[1]}")
    bad = np.argwhere(~np.isfinite(matrix))
    if bad.size:
        b, c = (int(i) for i in bad[0])
        raise InvalidInput(f"{path}: {name}[{b}][{c}]: must be finite, got {matrix[b, c]}")
    return matrix


_FLOAT_MAX = float(np.finfo(np.float64).max)


# ----------------------------------------------------------------- readers
def _load_json(path: str, name: str) -> np.ndarray:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc})") from None
    return _rows_from_json(text, path, name)


def _rows_from_json(text: str, path: str, name: str) -> np.ndarray:
    """The matrix a JSON list of rows holds (``path`` names where the text came from in messages)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: {name}: expected a list of rows, got {_kind(data)}")
    width = None
    for b, row in enumerate(data):
        if not isinstance(row, list):
            raise InvalidInput(f"{path}: {name}[{b}]: expected a row (a list of numbers), got {_kind(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InvalidInput(f"{path}: {name}[{b}]: expected {width} values like row 0, got {len(row)}")
        for c, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInput(f"{path}: {name}[{b}][{c}]: expected a number, got {_kind(value)}")
            if isinstance(value, int) and abs(value) > _FLOAT_MAX:
                raise InvalidInput(f"{path}: {name}[{b}][{c}]: must be finite, got an integer too large for float64")
    return np.array(data, dtype=np.float64).reshape(len(data), width or 0)


def _load_npy(path: str, name: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise InvalidInput(f"{path}: expected a .npy array, got an archive")
    if arr.dtype.kind not in "iuf":
        raise InvalidInput(f"{path}: {name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidInput(f"{path}: {name}: expected a 2-D array (rows × columns), got shape {arr.shape}")
    return np.array(arr, dtype=np.float64)


def _load_csv(path: str, name: str, columns: Sequence[str] | None) -> np.ndarray:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        try:
            rows = [(n, row) for n, row in enumerate(csv.reader(fh), start=1)
                    if row and any(cell.strip() for cell in row)]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not a readable CSV file ({exc})") from None
    order = None
    if rows and not all(_is_number(cell) for cell in rows[0][1]):
        order = _header_order(path, name, [cell.strip() for cell in rows[0][1]], columns)
        rows = rows[1:]
    width = None
    values: list[list[float]] = []
    for b, (line, row) in enumerate(rows):
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InvalidInput(f"{path}: line {line}: {name}[{b}]: expected {width} values like the first row,"
                               f" got {len(row)}")
        parsed = []
        for c, cell in enumerate(row):
            try:
                parsed.append(float(cell))
            except ValueError:
                raise InvalidInput(f"{path}: line {line}: {name}[{b}][{c}]: expected a number,"
                                   f" got {cell.strip()!r}") from None
        values.append(parsed)
    if order is not None and width is not None and width != len(order[1]):
        raise InvalidInput(f"{path}: {name}: the header has {len(order[1])} columns, the rows {width}")
    if not values:
        return np.zeros((0, 0))
    matrix = np.array(values, dtype=np.float64)
    return matrix if order is None else matrix[:, order[0]]


def _header_order(path: str, name: str, header: list[str],
                  columns: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """Column positions that put a header's named columns into ``columns`` order."""
    seen: dict[str, int] = {}
    for c, cell in enumerate(header):
        if cell in seen:
            raise InvalidInput(f"{path}: header: column '{cell}' appears twice")
        seen[cell] = c
    if columns is None:
        return list(range(len(header))), header
    for c, cell in enumerate(header):
        if cell not in columns:
            raise InvalidInput(f"{path}: header[{c}]: unknown column '{cell}'"
                               f" (the network's {name}: {', '.join(columns)})")
    missing = [col for col in columns if col not in seen]
    if missing:
        raise InvalidInput(f"{path}: header: missing column '{missing[0]}' for {name}")
    return [seen[col] for col in columns], header


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _kind(value: Any) -> str:
    if isinstance(value, (str, bool)) or value is None:
        return json.dumps(value)
    names: dict[type, str] = {dict: "an object", list: "a list"}
    return names.get(type(value), type(value).__name__)


# ----------------------------------------------------------------- writers
def result_to_dict(net: Network, res: GradientResult) -> dict[str, Any]:
    """The CLI's JSON object: outputs, loss, edge_grads, deltas, (norms,) edges and nodes in file order."""
    return {
        "outputs": _plain(res.outputs),
        "loss": None if res.loss is None else _plain_float(float(res.loss)),
        "edge_grads": _plain(res.edge_grads),
        "deltas": _plain(res.deltas),
        **({} if res.norms is None else {"norms": _plain(res.norms)}),
        "edges": net.edge_pairs(),
        "nodes": list(net.node_ids),
    }


def check_result_path(path: str) -> None:
    """Reject an --out name that is neither .json nor .npz before any work is done."""
    if os.path.splitext(path)[1].lower() not in RESULT_SUFFIXES:
        raise InvalidInput(f"{path}: unsupported result file type (expected .json or .npz)")


def save_result(path: str, net: Network, res: GradientResult, indent: int | None = None) -> None:
    """Write a result as JSON (the CLI's object) or .npz (arrays; no ``loss`` in output mode).

    The file is written next to its destination and renamed into place, so a failed write
    never leaves a half-written result behind.
    """
    check_result_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".edgegrad-{os.getpid()}-{secrets.token_hex(6)}.tmp")
    try:  # created like any new file (0666 less the umask), not mkstemp's 0600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if path.lower().endswith(".npz"):
                arrays = {"outputs": np.asarray(res.outputs), "edge_grads": np.asarray(res.edge_grads),
                          "deltas": np.asarray(res.deltas), **result_labels(net)}
                if res.loss is not None:
                    arrays["loss"] = np.array(float(res.loss))
                if res.norms is not None:
                    arrays["norms"] = np.asarray(res.norms)
                np.savez_compressed(fh, allow_pickle=False, **arrays)  # numbers and labels only: no pickles
            else:
                fh.write(dumps_result(net, res, indent).encode("utf-8") + b"\n")
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        raise InvalidInput(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        remove_quietly(tmp)
        raise


def dumps_result(net: Network, res: GradientResult, indent: int | None = None) -> str:
    """The result as strict JSON (non-finite numbers become null): one line, or indented by ``indent``
    with every row of numbers (a list of plain values) kept on one line."""
    if indent is not None:
        return _indented(result_to_dict(net, res), indent, 0)
    return json.dumps(result_to_dict(net, res), allow_nan=False, separators=(",", ":"))


def _indented(value: Any, indent: int, level: int) -> str:
    """``value`` as JSON, objects and lists of lists one item a line, lists of plain values on one line."""
    items: list[tuple[str | None, Any]]
    if isinstance(value, dict):
        items = [(json.dumps(key), item) for key, item in value.items()]
        brackets = "{}"
    elif isinstance(value, list) and any(isinstance(item, (list, dict)) for item in value):
        items, brackets = [(None, item) for item in value], "[]"
    else:
        return json.dumps(value, allow_nan=False, separators=(", ", ": "))
    if not items:
        return brackets
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    lines = [inner + (f"{key}: " if key is not None else "") + _indented(item, indent, level + 1)
             for key, item in items]
    return brackets[0] + "\n" + ",\n".join(lines) + "\n" + pad + brackets[1]


def result_labels(net: Network) -> dict[str, np.ndarray]:
    """The arrays that name a result's columns in ``.npz`` and ``.npy`` files: ``edges`` (E×2) and ``nodes``."""
    return {"edges": np.array(net.edge_pairs(), dtype=str).reshape(-1, 2), "nodes": np.array(net.node_ids, dtype=str)}


def remove_quietly(path: str) -> None:
    """Delete a file if it is there (a temporary file left by a failed write)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _plain(arr: Any) -> Any:
    """Nested lists of floats, with NaN/±inf as None so the JSON stays strict."""
    arr = np.asarray(arr, dtype=np.float64)
    if np.isfinite(arr).all():
        return arr.tolist()
    cleaned = arr.astype(object)                   # an object array keeps None
    cleaned[~np.isfinite(arr)] = None
    return cleaned.tolist()


def _plain_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
