"""Every Redis key edgegrad uses, in one module (rq's own keys are rq's)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Keys"]


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix; tests use a unique prefix to isolate themselves."""

    prefix: str = "edgegrad"

    def job(self, job_id: str) -> str:
        """Hash: the job record (state, layout, times, error, loss, cancel flag...)."""
        return f"{self.prefix}:job:{job_id}"

    def spec(self, job_id: str) -> str:
        """String: the serialized GradientRequest (network by hash) a worker runs."""
        return f"{self.prefix}:job:{job_id}:spec"

    def events(self, job_id: str) -> str:
        """Stream: state changes, result chunks (id ``seq-0``) and the final event."""
        return f"{self.prefix}:job:{job_id}:events"

    def part(self, job_id: str, shard: int) -> str:
        """String: a loss-mode shard's summed partial result, kept until the shards are folded."""
        return f"{self.prefix}:job:{job_id}:part:{shard}"

    def upload(self, upload_id: str) -> str:
        """Hash: an upload's sizes and what was found checking it (see edgegrad.uploads)."""
        return f"{self.prefix}:upload:{upload_id}"

    def piece(self, upload_id: str, field: str, index: int) -> str:
        """String: rows of one piece of an upload's ``inputs`` or ``targets`` (raw bytes)."""
        return f"{self.prefix}:upload:{upload_id}:{field}:{index}"

    def request(self, request_id: str) -> str:
        """String: the job id claimed by a client request_id."""
        return f"{self.prefix}:req:{request_id}"

    def network(self, content_hash: str) -> str:
        """String: a serialized edgegrad.v1.Network."""
        return f"{self.prefix}:net:{content_hash}"

    def network_meta(self, content_hash: str) -> str:
        """String: JSON with the network's inputs, outputs and sizes (enough to validate a batch)."""
        return f"{self.prefix}:netmeta:{content_hash}"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}:*"

    @property
    def jobs(self) -> str:
        """Sorted set (all scores 0, members ordered by time-prefixed job id): the job index."""
        return f"{self.prefix}:jobs"

    def job_keys(self, job_id: str) -> list[str]:
        """All keys of one job."""
        return [self.job(job_id), self.spec(job_id), self.events(job_id)]
