"""benchmarks/small_jobs.py: its histogram counts batches by size class, and a tiny run of the batching mode
(its own redis-server, a cluster of 2 workers, bare rq) takes every job once, with results that equal the
population engine's in-process ones."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import small_jobs  # noqa: E402


def test_histogram_classes_sizes_by_powers_of_two() -> None:
    text = small_jobs.histogram([1, 1, 2, 3, 4, 9, 15])
    assert text.startswith("1: 2, 2-3: 2, 4-7: 1, 8-15: 2; 7 batches of 35 jobs, mean 5.0 jobs/batch, largest 15")
    assert small_jobs.histogram([]) == "no batches"


def test_the_tiny_network_is_the_issues_and_its_variants_differ() -> None:
    net = small_jobs.tiny_net(0)
    assert (net.n_inputs, net.n_nodes, net.n_outputs, net.n_edges) == (3, 7, 1, 3 * 6 + 6)
    assert net.activations == ("tanh",) * 6 + ("sigmoid",)
    assert len({small_jobs.tiny_net(s).content_hash for s in range(20)}) == 20


@pytest.mark.service
def test_a_tiny_run_takes_every_job_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert small_jobs.main(["--jobs", "12", "--networks", "15", "--samples", "3", "--runs", "1", "--warmup", "3",
                            "--modes", "on"]) == 0
    out = capsys.readouterr().out.split("load average after")[1]
    assert "submit() loop then wait() on each, 12 jobs" in out and "sequential gradients() p50" in out
    assert re.search(r"batch sizes under loop 1 .* batches of 12 jobs", out)
    assert len(re.findall(r"batch sizes under load 2, (not )?registered .* batches of 15 jobs", out)) == 2
    assert len(re.findall(r"bit-identical to in-process gradients_many\(\[net\]\) 15/15", out)) == 2
    assert re.search(r"Redis per tiny job under loop 1, service +\d+\.\d commands", out)
