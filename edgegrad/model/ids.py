"""Positions of string ids, looked up a million names at a time without a dict probe per name.

Names and ids become zero-padded rows of 8-byte words holding their characters (one join and one
encode for a whole list; bytes when every id is ASCII), and each row is hashed in one pass a word.
A table addressed by the top bits of the hash gives each name its one candidate id (names whose
slot several ids share are settled by binary search), then every candidate is compared word by
word, so the answer is exact whatever the hashes do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["IdIndex"]

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_MIX1, _MIX2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_EMPTY, _SHARED = -1, -2           # table entries: no id in this slot / several ids share it


class IdIndex:
    """Look up many names among distinct ids; a name matches an id only when the strings are equal."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self.width = max(map(len, self.ids), default=0)
        self._dict: dict[str, int] | None = None
        joined = "\0".join(self.ids)
        self._ascii = joined.isascii()          # then names are rows of bytes, else of UCS-4 code points
        words = _joined_rows(joined, len(self.ids), self.width, self._ascii)
        if not isinstance(words, np.ndarray):  # an id holding a NUL: the separator the rows rely on
            self._dict = {v: i for i, v in enumerate(self.ids)}
            return
        self._words = words
        hashes = _row_hashes(words)
        self._order = np.argsort(hashes)
        self._sorted = hashes[self._order]
        if np.any(self._sorted[1:] == self._sorted[:-1]):      # ids a hash cannot tell apart
            self._dict = {v: i for i, v in enumerate(self.ids)}
            return
        # two tables: the top bits of the hash, then (for ids sharing a slot there) the next bits
        everyone = np.arange(len(self.ids))
        self._tables = [_SlotTable(hashes, everyone, 0)]
        crowded = everyone[self._tables[0].shared_at(hashes)]
        self._tables.append(_SlotTable(hashes[crowded], crowded, self._tables[0].bits))

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
        words: np.ndarray | None | Literal[False]
        if isinstance(names, np.ndarray):
            words = _array_rows(names, self.width, self._ascii)
        else:
            try:
                joined = "\0".join(names)
            except TypeError:
                return None                      # not all strings: the careful road decides
            words = _joined_rows(joined, len(names), self.width, self._ascii)
        if words is None:
            return self._dict_positions(names)   # NULs in a name
        if words is False:
            return None                          # a name no id can equal (too long, or not ASCII)
        hashes = _row_hashes(words)
        first, second = self._tables
        candidate = first.look_up(hashes)
        shared = np.flatnonzero(candidate == _SHARED)
        if shared.size:
            candidate[shared] = second.look_up(hashes[shared])
        if np.any(candidate == _EMPTY):
            return None                          # no id has this name's hash
        shared = np.flatnonzero(candidate == _SHARED)
        if shared.size:
            found = np.searchsorted(self._sorted, hashes[shared])
            np.minimum(found, self._sorted.size - 1, out=found)
            candidate[shared] = self._order[found]
        if not np.array_equal(self._words[candidate], words):
            return None
        return candidate.astype(np.int64, copy=False)

    def _dict_positions(self, names: Sequence[str] | np.ndarray) -> np.ndarray | None:
        """The same answer by one dict probe a name."""
        if self._dict is None:
            self._dict = {v: i for i, v in enumerate(self.ids)}
        try:
            listed = names.tolist() if isinstance(names, np.ndarray) else [v.rstrip("\0") for v in names]
            return np.fromiter(map(self._dict.__getitem__, listed), dtype=np.int64, count=len(listed))
        except (KeyError, TypeError, AttributeError):
            return None


class _SlotTable:
    """Ids by ``bits`` bits of their hash, taken ``skip`` bits below the top; a slot is empty, one id, or shared."""

    def __init__(self, hashes: np.ndarray, positions: np.ndarray, skip: int) -> None:
        self.bits = max(10, (8 * len(positions)).bit_length())   # at least 8 slots an id
        self._skip = skip
        self._shift = np.uint64(max(64 - skip - self.bits, 0))
        self._mask = np.uint64((1 << self.bits) - 1)
        dtype = np.int32 if len(positions) and int(positions.max()) < 2**31 else np.int64
        self._slots = np.full(1 << self.bits, _EMPTY, dtype=dtype)
        where = self._slot(hashes)
        self._slots[where] = positions
        self._slots[np.bincount(where, minlength=1 << self.bits) > 1] = _SHARED

    def _slot(self, hashes: np.ndarray) -> np.ndarray:
        return ((hashes >> self._shift) & self._mask).astype(np.intp)

    def shared_at(self, hashes: np.ndarray) -> np.ndarray:
        """Which of these hashes fall in a shared slot."""
        return self._slots[self._slot(hashes)] == _SHARED

    def look_up(self, hashes: np.ndarray) -> np.ndarray:
        """The one id in each hash's slot, or ``_EMPTY`` / ``_SHARED``."""
        return self._slots[self._slot(hashes)]


def _cells(width: int, itemsize: int) -> int:
    """Characters a row holds: ``width`` rounded up to whole 8-byte words (at least one word)."""
    per_word = 8 // itemsize
    return max(1, -(-width // per_word)) * per_word


def _joined_rows(joined: str, count: int, width: int, ascii_only: bool) -> np.ndarray | None | Literal[False]:
    """``count`` NUL-joined names as zero-padded rows of 8-byte words (bytes if ``ascii_only``, else UCS-4).

    None when a name holds a NUL (the count of separators is off); False when some name cannot
    equal any id: longer than ``width``, or not ASCII where every id is.
    """
    if ascii_only:
        if not joined.isascii():
            return False
        points = np.frombuffer(joined.encode("ascii"), dtype="<u1")
    else:
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    ends = np.flatnonzero(points == 0)
    if ends.size != count - 1:
        return None
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends + 1
    lengths = np.empty(count, dtype=np.int64)
    lengths[:-1] = ends - starts[:-1]
    lengths[-1] = points.size - starts[-1]
    if int(lengths.max()) > width:
        return False
    size = points.itemsize
    cells = _cells(width, size)
    per_word = 8 // size
    padded = np.zeros(points.size + cells, dtype=points.dtype)          # room to read past the end
    padded[:points.size] = points
    # the words of a row starting at every character (unaligned 8-byte reads), taken at each name
    windows = np.ndarray((points.size + 1, cells // per_word), dtype="<u8", buffer=padded,
                         strides=(size, 8))
    words = windows[starts]
    for column in range(words.shape[1]):       # cut each row at its name's end
        valid = np.clip(lengths - column * per_word, 0, per_word).astype(np.uint64)
        keep = (np.uint64(1) << (valid * np.uint64(8 * size))) - np.uint64(1)
        keep[valid == per_word] = _ALL_ONES
        words[:, column] &= keep
    return words


def _array_rows(names: np.ndarray, width: int, ascii_only: bool) -> np.ndarray | Literal[False]:
    """A numpy string array as the rows ``_joined_rows`` makes; False when a name cannot equal any id."""
    own = names.dtype.itemsize // 4
    points = np.ascontiguousarray(names).reshape(-1).view(np.uint32).reshape(names.size, own)
    if own > width:
        if points[:, width:].any():
            return False
        points = points[:, :width]
    if ascii_only and np.any(points >= 128):
        return False
    dtype = np.dtype("<u1" if ascii_only else "<u4")
    rows = np.zeros((names.size, _cells(width, dtype.itemsize)), dtype=dtype)
    rows[:, :points.shape[1]] = points
    return rows.view("<u8")


def _row_hashes(words: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of words (FNV-1a over the words, then mixed)."""
    acc = np.full(words.shape[0], _FNV_OFFSET, dtype=np.uint64)
    for column in range(words.shape[1]):
        acc ^= words[:, column]
        acc *= _FNV_PRIME
    for mix in (_MIX1, _MIX2):      # spread every character into the top bits the table uses
        acc ^= acc >> np.uint64(33)
        acc *= mix
    acc ^= acc >> np.uint64(33)
    return acc
