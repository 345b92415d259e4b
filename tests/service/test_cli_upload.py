"""A batch larger than one message is uploaded in pieces, and the upload shows progress: the SDK tells
``upload_progress`` each piece, ``edgegrad batch`` draws it the way it draws compute progress."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from cli_helpers import XOR, XOR_PATH, assert_matches_in_process, load_result, xor_batch

from edgegrad.cli import main
from edgegrad.cli import progress as cli_progress
from edgegrad.client import Client
from edgegrad.server.cluster import Cluster

ROWS = 90_000  # 90,000 × 2 float64 = 1.4 MB: over the server's 1 MiB messages


@pytest.fixture(scope="module")
def small_messages(namespace):
    """A server that takes messages of at most 1 MiB, and one worker."""
    with Cluster(namespace("upload", max_message_bytes=1 << 20), workers=1, log=sys.stderr) as c:
        yield c


def test_the_sdk_tells_upload_progress_each_piece(small_messages, tmp_path) -> None:
    _, _, x, t = xor_batch(tmp_path, ROWS, seed=11)
    seen: list[tuple[int, int]] = []
    with Client(small_messages.address, timeout=120) as client:
        handle = client.submit(XOR, x, targets=t, loss="mse", upload_progress=lambda *step: seen.append(step))
        result = handle.result()
    assert len(seen) > 2 and seen[-1] == (2 * ROWS, 2 * ROWS), seen  # inputs' rows, then targets'
    assert all(a[0] < b[0] and a[1] == b[1] for a, b in zip(seen, seen[1:]))
    arrays = {"outputs": result.outputs, "edge_grads": result.edge_grads, "deltas": result.deltas, "loss": result.loss}
    assert_matches_in_process(arrays, XOR, x, labels=False, targets=t, loss="mse")


def test_batch_shows_upload_progress(small_messages, tmp_path, capsys, monkeypatch) -> None:
    xp, tp, x, t = xor_batch(tmp_path, ROWS, seed=12)
    monkeypatch.setattr(cli_progress, "LINE_INTERVAL", 0.0)  # every step a line (stderr is no terminal here)
    out = tmp_path / "r.npz"
    assert main(["batch", XOR_PATH, "--inputs", xp, "--out", str(out), "--server", small_messages.address]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("uploading: ")]
    assert len(lines) > 1 and lines[-1].startswith(f"uploading: {ROWS:,}/{ROWS:,} rows (100%)"), err
    assert err.index("uploading: ") < err.index("submitted jobs/")
    assert_matches_in_process(load_result(out), XOR, x)


def test_a_small_batch_shows_no_upload(small_messages, tmp_path, capsys, monkeypatch) -> None:
    xp, _, _, _ = xor_batch(tmp_path, 100, seed=13)
    monkeypatch.setattr(cli_progress, "LINE_INTERVAL", 0.0)
    assert main(["batch", XOR_PATH, "--inputs", xp, "--out", str(tmp_path / "r.npz"),
                 "--server", small_messages.address]) == 0
    assert "uploading" not in capsys.readouterr().err
    assert np.load(tmp_path / "r.npz")["outputs"].shape[0] == 100
