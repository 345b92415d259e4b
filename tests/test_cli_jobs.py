"""How ``edgegrad jobs show`` / ``list --json`` present a job, shards included (no server needed)."""

from __future__ import annotations

import json

from edgegrad.cli.jobs import describe, job_to_dict
from edgegrad.v1 import job_pb2


def _sharded_job() -> job_pb2.Job:
    job = job_pb2.Job(name="jobs/abc", state=job_pb2.JOB_STATE_RUNNING, chunks_done=3, attempt=1)
    job.layout.batch, job.layout.chunk_count, job.layout.loss_mode = 20000, 9, True
    job.shards.add(index=0, row_start=0, row_stop=10000, state=job_pb2.JOB_STATE_SUCCEEDED, worker="w1", attempt=1)
    job.shards.add(index=1, row_start=10000, row_stop=20000, state=job_pb2.JOB_STATE_RUNNING, worker="w2", attempt=2)
    return job


def test_show_lists_the_shards_with_their_rows_state_and_worker():
    text = describe(_sharded_job())
    assert text.splitlines()[:5] == ["name:     jobs/abc", "state:    running", "rows:     20,000", "mode:     loss",
                                     "chunks:   3 of 9"]
    assert text.endswith("shards:\n      0  rows 0..10000      succeeded  attempt 1  w1\n"
                         "      1  rows 10000..20000  running    attempt 2  w2")


def test_json_keeps_zero_values_and_names_states_in_words():
    data = json.loads(json.dumps(job_to_dict(_sharded_job())))
    assert data["state"] == "running" and data["layout"]["batch"] == "20000"  # proto3 JSON: 64-bit ints as strings
    assert data["shards"][0] == {"index": 0, "row_start": "0", "row_stop": "10000", "state": "succeeded",
                                 "worker": "w1", "attempt": 1, "chunks_done": "0"}
