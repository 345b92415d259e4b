"""Progress of a job on stderr: a redrawn bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]

BAR_WIDTH = 24
TTY_INTERVAL = 0.1   #: seconds between redraws of the bar
LINE_INTERVAL = 5.0  #: seconds between plain lines when stderr is not a terminal


def format_seconds(seconds: float) -> str:
    """``0.4s``, ``42s``, ``3m05s`` or ``2h01m``."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Rows done of ``total`` rows for job ``name``, with rate and ETA, on ``stream`` (default stderr)."""

    def __init__(self, name: str, total: int, done: int = 0, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.name, self.total = name, max(0, int(total))
        self.stream = stream or sys.stderr
        self.tty = self._isatty() if tty is None else tty
        self._start_rows, self._start = int(done), time.monotonic()
        self.done = int(done)
        self._last = 0.0 if self.tty else self._start  # a plain line only after LINE_INTERVAL
        self._drawn = False

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def rate(self) -> float:
        """Rows per second since this progress started."""
        elapsed = time.monotonic() - self._start
        return (self.done - self._start_rows) / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        """``12,000/20,000 rows (60%)  4,100 rows/s  ETA 2s``."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.done:,}/{self.total:,} rows ({pct:.0f}%)"]
        rate = self.rate()
        if rate > 0:
            parts.append(f"{rate:,.0f} rows/s")
            if self.done < self.total:
                parts.append(f"ETA {format_seconds((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def update(self, done: int, force: bool = False) -> None:
        """Note ``done`` rows; redraw (terminal) or print a line (otherwise) when it is time."""
        self.done = int(done)
        now = time.monotonic()
        if not force and now - self._last < (TTY_INTERVAL if self.tty else LINE_INTERVAL):
            return
        self._last = now
        if self.tty:
            filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self._write(f"\r{self.name} [{bar}] {self.text()}\x1b[K")
            self._drawn = True
        else:
            self._write(f"{self.name}: {self.text()}\n")

    def end(self, line: str | None = None) -> None:
        """Finish the bar (if drawn) and print ``line`` (if any)."""
        if self._drawn:
            self._write("\n")
            self._drawn = False
        if line is not None:
            self._write(line + "\n")

    def elapsed(self) -> float:
        """Seconds since this progress started."""
        return time.monotonic() - self._start

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
