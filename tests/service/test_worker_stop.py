"""A worker asked to stop (SIGTERM) remembers the request, so its work loop ends even where the StopRequested that
rq raises from the signal handler is lost inside a blocking Redis read (CI saw a late worker ignore SIGTERM)."""

from __future__ import annotations

import signal

import pytest
from rq.exceptions import StopRequested

from edgegrad.jobs.connections import sync_redis
from edgegrad.worker.runner import make_worker


def test_a_stop_request_is_remembered_when_its_exception_is_lost(namespace) -> None:
    settings = namespace("stop")
    connection = sync_redis(settings)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = make_worker(settings, connection, name=f"{settings.queue}.stop")
        assert not worker._stop_requested
        with pytest.raises(StopRequested):   # idle: rq's own way out of the loop
            worker.request_stop(signal.SIGTERM, None)
        assert worker._stop_requested       # and the loop's own check at its next turn
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        connection.close()
