"""Everything edgegrad asks of Redis, in one run: what the ACL test runs under a restricted user."""

from __future__ import annotations

import numpy as np
from svc_helpers import example_network

import edgegrad

NET = example_network(n_inputs=3, n_nodes=10, n_outputs=2, seed=31)


def exercise(address: str, token: str | None = None) -> None:
    """Output and loss mode, shards, an upload, list, watch, ack, cancel and delete through ``address``."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, NET.n_inputs))
    t = rng.random(size=(8, NET.n_outputs))
    with edgegrad.Client(address, timeout=60, token=token) as client:
        for got, want in ((client.gradients(NET, x), edgegrad.gradients(NET, x)),
                          (client.gradients(NET, x, targets=t, loss="mse", shard_rows=3),
                           edgegrad.gradients(NET, x, targets=t, loss="mse"))):
            np.testing.assert_allclose(got.edge_grads, want.edge_grads, rtol=1e-9, atol=1e-300)
        big = rng.normal(size=(60_000, NET.n_inputs))  # over the test server's message limit: an upload
        handle = client.submit(NET, big, targets=rng.random(size=(60_000, NET.n_outputs)), loss="mse")
        assert np.isfinite(handle.result(timeout=60).loss)
        per_example = client.submit(NET, x, targets=t, loss="mse", per_example=True)
        per_example.result(timeout=60)
        list(client.list_jobs(page_size=2))
        client.get_job(per_example.name)
        queued = client.submit(NET, rng.normal(size=(20_000, NET.n_inputs)))
        client.cancel_job(queued.name)
        client._ack(per_example.name, 1)
        client.delete_job(per_example.name)
