"""One thread that runs actions at their deadlines (cancelling streams), instead of a timer thread per call."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Alarm", "Alarms", "ALARMS"]

log = logging.getLogger("edgegrad.client")


class Alarm:
    """An action due at a monotonic time; ``cancel()`` before then and it never runs."""

    __slots__ = ("when", "action")

    def __init__(self, when: float, action: Callable[[], object]) -> None:
        self.when = when
        self.action: Callable[[], object] | None = action

    def cancel(self) -> None:
        """Do not run the action (it is dropped at once; its place in the queue later)."""
        self.action = None

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called (or the action ran)."""
        return self.action is None


class Alarms:
    """A queue of alarms served by one daemon thread, started on first use (again after a fork)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._compact_at = 64  #: heap size at which cancelled alarms are swept out (amortised O(1) a push)

    def at(self, when: float, action: Callable[[], object]) -> Alarm:
        """Run ``action`` (in the alarm thread) at monotonic time ``when`` unless cancelled first."""
        alarm = Alarm(when, action)
        with self._cond:
            if len(self._heap) >= self._compact_at:  # cancelled alarms wait in the heap until due: drop them
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._compact_at = max(64, 2 * len(self._heap))
            heapq.heappush(self._heap, (when, next(self._order), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="edgegrad-alarms")
                self._thread.start()
            elif self._heap[0][2] is alarm:  # earlier than what the thread sleeps towards
                self._cond.notify()
        return alarm

    def after(self, seconds: float, action: Callable[[], object]) -> Alarm:
        """Run ``action`` ``seconds`` from now unless cancelled first."""
        return self.at(time.monotonic() + seconds, action)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left <= 0:
                        alarm = heapq.heappop(self._heap)[2]
                        action, alarm.action = alarm.action, None
                        break
                    self._cond.wait(left)
            if action is not None:
                try:
                    action()
                except Exception:  # one failing action must not stop the others
                    log.exception("alarm action failed")


#: the process's alarms (the blocking client's stream deadlines)
ALARMS = Alarms()
