"""What the server's and the worker's halves agree on besides key names and scripts.

Job states are stored in the job hash (and passed to the scripts) as the decimal numbers of
``edgegrad.v1.JobState``; the Lua in ``scripts.py`` compares those same digits. Every shard is
one rq job calling ``JOB_FUNCTION``, except small jobs: they wait in a lane, and one rq job calling
``BATCH_FUNCTION`` runs the lane's waiting jobs together. Workers run those two functions and no other.
"""

from __future__ import annotations

from ..v1 import job_pb2

__all__ = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "stored", "state_name", "JOB_FUNCTION",
           "BATCH_FUNCTION"]

QUEUED = job_pb2.JOB_STATE_QUEUED
RUNNING = job_pb2.JOB_STATE_RUNNING
SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED
FAILED = job_pb2.JOB_STATE_FAILED
CANCELLED = job_pb2.JOB_STATE_CANCELLED

#: the rq job function of every shard (rq's ``func_name``), enqueued by the server, run by workers
JOB_FUNCTION = "edgegrad.worker.jobs.run_gradient_job"
#: the rq job function that takes the small jobs waiting in one lane and runs them together
BATCH_FUNCTION = "edgegrad.worker.batch.run_job_batch"


def stored(state: int) -> str:
    """A state as the job hash and the scripts spell it: its number in decimal."""
    return str(int(state))


def state_name(state: int | str) -> str:
    """``running`` for JOB_STATE_RUNNING (or its stored ``"2"``); the number itself for a state not in the enum."""
    try:
        return job_pb2.JobState.Name(int(state)).removeprefix("JOB_STATE_").lower()
    except ValueError:
        return str(state)
