"""Numbers too large (or too small) for their wire fields are bad input naming the place, never a protobuf
ValueError: in the SDK (checked before anything is sent) and on the command line (exit 2, one line)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import edgegrad
from edgegrad.cli import main
from edgegrad.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
XOR = str(ROOT / "examples" / "xor.json")
XOR_X = str(ROOT / "examples" / "xor-inputs.json")
NOWHERE = "127.0.0.1:9"  # nothing is sent: every check comes first
HUGE = 10 ** 22


@pytest.mark.parametrize("shard_rows", [HUGE, 2 ** 64, -1, 0])
def test_the_sdk_refuses_a_shard_rows_the_wire_cannot_carry(shard_rows: int) -> None:
    net = edgegrad.Network.load(XOR)
    with edgegrad.Client(NOWHERE) as client:
        with pytest.raises(InvalidInput, match=r"^shard_rows: expected a positive number of rows"):
            client.submit(net, np.zeros((2, 2)), shard_rows=shard_rows)
        [answer] = client.submit_many([dict(net=net, inputs=np.zeros((2, 2)), shard_rows=shard_rows)])
        assert isinstance(answer, InvalidInput) and "shard_rows" in answer.message


@pytest.mark.parametrize("page_size", [2 ** 32, -1, 1.5])
def test_the_sdk_refuses_a_page_size_the_wire_cannot_carry(page_size: object) -> None:
    with edgegrad.Client(NOWHERE) as client:
        with pytest.raises(InvalidInput, match=r"^page_size: expected"):
            next(iter(client.list_jobs(page_size=page_size)))  # type: ignore[arg-type]

    async def listing() -> None:
        async with edgegrad.AsyncClient(NOWHERE) as client:
            async for _ in client.list_jobs(page_size=page_size):  # type: ignore[arg-type]
                pass

    with pytest.raises(InvalidInput, match=r"^page_size: expected"):
        asyncio.run(listing())


@pytest.mark.parametrize("value", [str(HUGE), str(2 ** 64), "0", "-3"])
def test_batch_refuses_a_shard_rows_out_of_range(value: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = main(["batch", XOR, "--inputs", XOR_X, "--shard-rows", value, "--out", str(tmp_path / "r.npz"),
                   "--server", NOWHERE])
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --shard-rows: must be between 1 and {2 ** 64 - 1}, got {value}")


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1.0, "5", True])
def test_the_sdk_refuses_a_timeout_that_is_no_number_of_seconds(timeout: object) -> None:
    with pytest.raises(InvalidInput, match=r"^timeout: expected a finite number of seconds"):
        edgegrad.Client(NOWHERE, timeout=timeout)  # type: ignore[arg-type]
    with edgegrad.Client(NOWHERE) as client:
        with pytest.raises(InvalidInput, match=r"^timeout: expected a finite number of seconds"):
            client.get_job("jobs/abc", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"^timeout: expected"):
        edgegrad.wait_all([], timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("after_seq", [-1, 2 ** 64])
def test_the_sdk_refuses_an_after_seq_the_wire_cannot_carry(after_seq: int) -> None:
    with edgegrad.Client(NOWHERE) as client:
        with pytest.raises(InvalidInput, match=r"^after_seq: expected the seq of a chunk already held"):
            client.job("jobs/abc", after_seq=after_seq)
