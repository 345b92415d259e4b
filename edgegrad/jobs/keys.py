"""Every Redis key edgegrad uses, in one module (rq's own keys are rq's).

A tenant's keys all live under its own scope, derived once from its (checked) name: ``<prefix>``
for tenant ``default`` (the layout from before tenants), ``<prefix>:t:<tenant>`` for the others.
No tenant name holds a ':' and no key of ``default`` starts with ``<prefix>:t:``, so keys made for
one tenant can never name another's. Registered networks alone are shared, under ``<prefix>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tenants import DEFAULT_TENANT, check_tenant

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    """Key names of one tenant under one prefix; tests use a unique prefix to isolate themselves."""

    prefix: str = "edgegrad"
    tenant: str = DEFAULT_TENANT
    scope: str = field(init=False, repr=False, compare=False)  #: the start of every key of the tenant

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        scope = self.prefix if self.tenant == DEFAULT_TENANT else f"{self.prefix}:t:{self.tenant}"
        object.__setattr__(self, "scope", scope)

    def for_tenant(self, tenant: str) -> Keys:
        """The keys of ``tenant`` under the same prefix (InvalidInput for a bad tenant name)."""
        return Keys(self.prefix, tenant)

    def job(self, job_id: str) -> str:
        """Hash: the job record (state, layout, times, error, loss, cancel flag...)."""
        return f"{self.scope}:job:{job_id}"

    def spec(self, job_id: str) -> str:
        """String: the serialized GradientRequest (network by hash) a worker runs, when over 4 KiB (a smaller one is
        the job record's field ``spec``)."""
        return f"{self.scope}:job:{job_id}:spec"

    def events(self, job_id: str) -> str:
        """Stream: state changes, result chunks (id ``seq-0``) and the final event."""
        return f"{self.scope}:job:{job_id}:events"

    def chunk(self, job_id: str, seq: int) -> str:
        """String: a large result chunk (serialized ResultChunk without seq) whose stream entry ``seq-0`` has no data."""
        return f"{self.scope}:job:{job_id}:chunk:{seq}"

    def staged(self, job_id: str, shard_field: str, number: int) -> str:
        """String: a large chunk a worker wrote before EMIT put it on the stream (``shard_field`` 's:<i>' or 's:r')."""
        return f"{self.scope}:job:{job_id}:staged:{shard_field}:{number}"

    def part(self, job_id: str, shard: int) -> str:
        """String: a loss-mode shard's summed partial result, kept until the shards are folded."""
        return f"{self.scope}:job:{job_id}:part:{shard}"

    def upload(self, upload_id: str) -> str:
        """Hash: an upload's sizes and what was found checking it (see edgegrad.wire.uploads)."""
        return f"{self.scope}:upload:{upload_id}"

    def piece(self, upload_id: str, field: str, index: int) -> str:
        """String: rows of one piece of an upload's ``inputs`` or ``targets`` (raw bytes)."""
        return f"{self.scope}:upload:{upload_id}:{field}:{index}"

    def request(self, request_id: str) -> str:
        """String: the job id claimed by a client request_id."""
        return f"{self.scope}:req:{request_id}"

    def lane(self, lane: str) -> str:
        """List: ids of the tenant's small jobs of one kind (``lane``) waiting to be run together."""
        return f"{self.scope}:lane:{lane}"

    def lane_wake(self, lane: str) -> str:
        """String: set while an rq job that will take from ``lane`` is queued (its rq job id)."""
        return f"{self.scope}:lane:{lane}:wake"

    def batch(self, rq_job_id: str) -> str:
        """List: ids of the small jobs the batch rq job ``rq_job_id`` took, kept for its retry."""
        return f"{self.scope}:batch:{rq_job_id}"

    def network(self, content_hash: str) -> str:
        """String: a serialized edgegrad.v1.Network."""
        return f"{self.prefix}:net:{content_hash}"

    def network_meta(self, content_hash: str) -> str:
        """String: JSON with the network's inputs, outputs and sizes (enough to validate a batch)."""
        return f"{self.prefix}:netmeta:{content_hash}"

    def network_owned(self, content_hash: str) -> str:
        """String: marks a network the tenant registered (only those are visible to it); same TTL as the network."""
        return f"{self.scope}:netown:{content_hash}"

    def population(self, content_hash: str) -> str:
        """String: a population's topology (``edgegrad.wire.columns.topology_blob``), shared as networks are."""
        return f"{self.prefix}:pop:{content_hash}"

    def population_owned(self, content_hash: str) -> str:
        """String: marks a population topology the tenant sent (only those are visible to it); same TTL as it."""
        return f"{self.scope}:popown:{content_hash}"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}:*"

    @property
    def jobs(self) -> str:
        """Sorted set (all scores 0, members ordered by time-prefixed job id): the tenant's job index."""
        return f"{self.scope}:jobs"

    @property
    def inflight(self) -> str:
        """Sorted set: the tenant's queued and running job ids, scored by when their records expire (Redis ms)."""
        return f"{self.scope}:inflight"

    @property
    def live(self) -> str:
        """Sorted set: every job id of the tenant not yet deleted, scored by when its records expire (Redis ms)."""
        return f"{self.scope}:live"

    @property
    def held(self) -> str:
        """Hash: result bytes of each job in ``live``, and their sum in field ``total``."""
        return f"{self.scope}:held"

    @property
    def quota(self) -> list[str]:
        """The keys that count the tenant's jobs and result bytes: inflight, live, held."""
        return [self.inflight, self.live, self.held]

    def job_keys(self, job_id: str) -> list[str]:
        """All keys of one job."""
        return [self.job(job_id), self.spec(job_id), self.events(job_id)]
