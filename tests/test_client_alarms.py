"""The client's alarm thread: actions run at their time, cancelled ones never, in time order."""

from __future__ import annotations

import threading
import time

from edgegrad.client.alarms import Alarms


def test_actions_run_in_time_order_and_cancelled_ones_never() -> None:
    alarms = Alarms()
    ran: list[str] = []
    done = threading.Event()
    alarms.after(0.30, lambda: (ran.append("late"), done.set()))
    dropped = alarms.after(0.05, lambda: ran.append("cancelled"))
    alarms.after(0.10, lambda: ran.append("early"))  # earlier than what the thread already sleeps towards
    dropped.cancel()
    assert dropped.cancelled
    assert done.wait(5)
    assert ran == ["early", "late"]


def test_an_early_alarm_added_later_is_not_held_up_by_a_far_one() -> None:
    alarms = Alarms()
    fired = threading.Event()
    alarms.after(60, lambda: None)
    t0 = time.monotonic()
    alarms.after(0.05, fired.set)
    assert fired.wait(5)
    assert time.monotonic() - t0 < 2


def test_many_cancelled_alarms_are_swept_and_live_ones_still_run() -> None:
    alarms = Alarms()
    for _ in range(1000):
        alarms.after(60, lambda: None).cancel()
    hits: list[int] = []
    done = threading.Event()
    for i in range(10):
        alarms.after(0.01 * (i + 1), lambda i=i: hits.append(i))
    alarms.after(0.2, done.set)
    assert done.wait(5)
    assert hits == list(range(10))
    assert len(alarms._heap) < 200  # the cancelled ones went


def test_a_failing_action_does_not_stop_the_next() -> None:
    alarms = Alarms()
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    alarms.after(0.01, boom)
    alarms.after(0.05, done.set)
    assert done.wait(5)
