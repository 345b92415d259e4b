"""Positions of string ids, looked up a million names at a time without a dict probe per name.

Names and ids become zero-padded rows of code points (one join and one encode for a whole list)
and each row is hashed in a few whole-array passes. A table addressed by the top bits of the hash
gives each name its one candidate id (names whose slot several ids share are settled by binary
search), then every candidate is compared code point by code point, so the answer is exact
whatever the hashes do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["IdIndex"]

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_EMPTY, _SHARED = -1, -2           # table entries: no id in this slot / several ids share it


class IdIndex:
    """Look up many names among distinct ids; a name matches an id only when the strings are equal."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self.width = max(map(len, self.ids), default=0)
        self._dict: dict[str, int] | None = None
        codes = _code_rows(self.ids, self.width)
        if codes is None:          # an id holding a NUL: the separator the rows rely on
            self._dict = {v: i for i, v in enumerate(self.ids)}
            return
        self._codes = codes
        hashes = _row_hashes(codes)
        self._order = np.argsort(hashes)
        self._sorted = hashes[self._order]
        if np.any(self._sorted[1:] == self._sorted[:-1]):      # ids a hash cannot tell apart
            self._dict = {v: i for i, v in enumerate(self.ids)}
            return
        bits = max(10, (8 * len(self.ids)).bit_length())       # at least 8 slots an id
        self._shift = np.uint64(64 - bits)
        slots = (hashes >> self._shift).astype(np.intp)
        self._slots = np.full(1 << bits, _EMPTY, dtype=np.int64)
        self._slots[slots] = np.arange(len(self.ids))
        self._slots[np.bincount(slots, minlength=1 << bits) > 1] = _SHARED

    def positions(self, names: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """The position of every name among the ids (int64), or None when some name is not an id.

        ``names`` is a list of ``str`` or a numpy ``str_`` array, compared as numpy strings
        (trailing NULs dropped, as ``np.asarray(names).tolist()`` gives them). A list holding
        anything but strings gives None.
        """
        if isinstance(names, np.ndarray) and names.dtype.kind != "U":
            raise TypeError(f"expected names as str, got a {names.dtype} array")
        if len(names) == 0:
            return np.zeros(0, dtype=np.int64)
        if self._dict is not None:
            return self._dict_positions(names)
        if not self.ids:
            return None
        rows = _array_rows(names, self.width) if isinstance(names, np.ndarray) else _code_rows(names, self.width)
        if rows is None:
            return self._dict_positions(names)   # NULs in a name, or not strings: the careful road
        if rows is False:
            return None                          # a name longer than every id
        hashes = _row_hashes(rows)
        candidate = self._slots[(hashes >> self._shift).astype(np.intp)]
        if np.any(candidate == _EMPTY):
            return None
        shared = np.flatnonzero(candidate == _SHARED)
        if shared.size:
            found = np.searchsorted(self._sorted, hashes[shared])
            np.minimum(found, self._sorted.size - 1, out=found)
            candidate[shared] = self._order[found]
        if not np.array_equal(self._codes[candidate], rows):
            return None
        return candidate

    def _dict_positions(self, names: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """The same answer by one dict probe a name."""
        if self._dict is None:
            self._dict = {v: i for i, v in enumerate(self.ids)}
        try:
            listed = names.tolist() if isinstance(names, np.ndarray) else [v.rstrip("\0") for v in names]
            return np.fromiter(map(self._dict.__getitem__, listed), dtype=np.int64, count=len(listed))
        except (KeyError, TypeError, AttributeError):
            return None


def _code_rows(names: Sequence[str], width: int) -> np.ndarray | None | bool:
    """Code points of each name as a zero-padded ``len(names) × width`` array.

    None when some item is not a string or holds a NUL, False when some name is longer than ``width``.
    """
    try:
        joined = "\0".join(names)
    except TypeError:
        return None
    if joined.isascii():
        points = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    else:
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.flatnonzero(points == 0)
    if ends.size != len(names) - 1:
        return None
    starts = np.empty(len(names), dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    lengths = np.empty(len(names), dtype=np.int64)
    lengths[:-1] = ends - starts[:-1]
    lengths[-1] = points.size - starts[-1]
    if lengths.size and int(lengths.max()) > width:
        return False
    padded = np.append(points, points.dtype.type(0))    # a zero to read past a name's end
    past_end = padded.size - 1
    rows = np.zeros((len(names), max(width, 1)), dtype=points.dtype, order="F")
    for column in range(width):               # one pass a character position, not a name
        rows[:, column] = padded[np.where(lengths > column, starts + column, past_end)]
    return rows


def _array_rows(names: np.ndarray, width: int) -> np.ndarray | bool:
    """A numpy string array's code points as ``size × width`` rows; False when a name is too long."""
    own = names.dtype.itemsize // 4
    points = np.ascontiguousarray(names).reshape(-1).view(np.uint32).reshape(names.size, own)
    if own > width:
        if points[:, width:].any():
            return False
        return points[:, :max(width, 1)]
    rows = np.zeros((names.size, max(width, 1)), dtype=np.uint32)
    rows[:, :own] = points
    return rows


def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each zero-padded row of code points (FNV-1a, then mixed)."""
    acc = np.full(rows.shape[0], _FNV_OFFSET, dtype=np.uint64)
    for column in range(rows.shape[1]):
        acc ^= rows[:, column]
        acc *= _FNV_PRIME
    for mix in (_MIX1, _MIX2):      # spread every character into the top bits the table uses
        acc ^= acc >> np.uint64(33)
        acc *= mix
    acc ^= acc >> np.uint64(33)
    return acc
