"""Positions of string ids, looked up a million names at a time without a dict probe per name.

Names and ids become fixed-width numpy strings and each row is hashed in a few whole-array passes.
A table addressed by the top bits of the hash gives each name its one candidate id (names whose
slot several ids share are settled by binary search), then every candidate is compared character
by character, so the answer is exact whatever the hashes do.
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
        self._table = np.array(self.ids, dtype=f"<U{max(self.width, 1)}")
        hashes = _row_hashes(self._table)
        self._order = np.argsort(hashes)
        self._sorted = hashes[self._order]
        bits = max(10, (8 * len(self.ids)).bit_length())       # at least 8 slots an id
        self._shift = np.uint64(64 - bits)
        slots = (hashes >> self._shift).astype(np.intp)
        self._slots = np.full(1 << bits, _EMPTY, dtype=np.int64)
        self._slots[slots] = np.arange(len(self.ids))
        shared = np.bincount(slots, minlength=1 << bits) > 1
        self._slots[shared] = _SHARED
        # a numpy string drops trailing NULs, and equal hashes would hide ids from each other
        self._dict: dict[str, int] | None = None
        if any(v.endswith("\0") for v in self.ids) or np.any(self._sorted[1:] == self._sorted[:-1]):
            self._dict = {v: i for i, v in enumerate(self.ids)}

    def positions(self, names: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """The position of every name among the ids (int64), or None when some name is not an id.

        ``names`` is a list of ``str`` or a numpy ``str_`` array (then compared as its ``tolist()``).
        """
        if isinstance(names, np.ndarray) and names.dtype.kind != "U":
            raise TypeError(f"expected names as str, got a {names.dtype} array")
        if len(names) == 0:
            return np.zeros(0, dtype=np.int64)
        if self._dict is not None:
            listed = names.tolist() if isinstance(names, np.ndarray) else names
            try:
                return np.fromiter(map(self._dict.__getitem__, listed), dtype=np.int64, count=len(listed))
            except KeyError:
                return None
        if isinstance(names, np.ndarray):
            too_long = names.dtype.itemsize // 4 > self.width and bool(np.char.str_len(names).max() > self.width)
        else:   # measured first, so that no giant array is made for a giant name
            too_long = max(map(len, names)) > self.width
        if too_long or not self.ids:
            return None
        rows = np.asarray(names, dtype=self._table.dtype).reshape(-1)
        hashes = _row_hashes(rows)
        candidate = self._slots[(hashes >> self._shift).astype(np.intp)]
        if np.any(candidate == _EMPTY):
            return None
        shared = np.flatnonzero(candidate == _SHARED)
        if shared.size:
            found = np.searchsorted(self._sorted, hashes[shared])
            np.minimum(found, self._sorted.size - 1, out=found)
            candidate[shared] = self._order[found]
        if not np.array_equal(self._table[candidate], rows):
            return None
        return candidate


def _row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each fixed-width string (FNV-1a over its UCS-4 code points, then mixed)."""
    width = rows.dtype.itemsize // 4
    points = rows.view(np.uint32).reshape(rows.size, width)
    acc = np.full(rows.size, _FNV_OFFSET, dtype=np.uint64)
    for column in range(width):
        acc ^= points[:, column]
        acc *= _FNV_PRIME
    for mix in (_MIX1, _MIX2):      # spread every character into the top bits the table uses
        acc ^= acc >> np.uint64(33)
        acc *= mix
    acc ^= acc >> np.uint64(33)
    return acc
