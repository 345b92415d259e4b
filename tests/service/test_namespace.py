"""Deleting a namespace (what tests and benchmarks clean up with) leaves none of rq's keys behind."""

from __future__ import annotations

import numpy as np
import redis
from svc_helpers import example_network

from edgegrad.client import Client
from edgegrad.jobs.keys import Keys
from edgegrad.jobs.namespace import delete_namespace, rq_job_keys
from edgegrad.jobs.record import rq_job_id

NET = example_network(n_inputs=3, n_nodes=8, n_outputs=1, density=0.5, seed=4)


def test_a_jobs_queued_rq_jobs_go_even_after_its_record_expired(namespace, thread_server) -> None:
    """A record expires with its result while queued rq jobs live to their own TTL: the shard count is
    gone then, and every shard's rq job must still be found (CI once found shards 1 and 2 left)."""
    settings = namespace("nsdelete")
    server = thread_server(settings)  # no workers: the three shards' rq jobs stay queued
    with Client(server.address, timeout=60) as client:
        handle = client.submit(NET, np.zeros((30, NET.n_inputs)), shard_rows=10)
    job_id = handle.name.split("/")[1]
    r = redis.Redis.from_url(settings.redis_url)
    try:
        shards = [f"rq:job:{rq_job_id(job_id, i)}".encode() for i in range(3)]
        assert all(r.exists(k) for k in shards)
        assert sorted(rq_job_keys(r, [job_id])) == sorted(shards)
        r.delete(Keys(settings.key_prefix).job(job_id))  # as its TTL would
        delete_namespace(settings)
        assert [k for k in shards if r.exists(k)] == []
    finally:
        r.close()
