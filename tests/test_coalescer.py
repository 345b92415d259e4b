"""The server's coalescer of submissions: what is added before the event loop turns goes in one call."""

from __future__ import annotations

import asyncio

import pytest

from edgegrad.jobs.creating import Coalescer


def test_items_added_together_go_in_one_call_split_at_the_bound_each_answered_in_order() -> None:
    calls: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0)
        return [10 * i for i in items]

    async def run() -> tuple[list[int], list[int]]:
        together = Coalescer(send, most=4)
        first = await asyncio.gather(*(together.add(i) for i in range(10)))
        later = [await together.add(i) for i in (20, 21)]  # one at a time: a call each, none waits for more
        return first, later

    first, later = asyncio.run(run())
    assert first == [10 * i for i in range(10)] and later == [200, 210]
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [20], [21]]


def test_an_error_of_a_call_reaches_each_of_its_items_and_no_other() -> None:
    async def send(items: list[int]) -> list[int]:
        if 3 in items:
            raise ConnectionError("gone")
        return items

    async def run() -> list[object]:
        together = Coalescer(send, most=2)
        return await asyncio.gather(*(together.add(i) for i in range(4)), return_exceptions=True)

    got = asyncio.run(run())
    assert got[:2] == [0, 1] and all(isinstance(e, ConnectionError) for e in got[2:])


def test_a_cancelled_caller_leaves_the_call_and_the_others_alone() -> None:
    async def send(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    async def run() -> list[object]:
        together = Coalescer(send)
        tasks = [asyncio.ensure_future(together.add(i)) for i in range(3)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(run())
    assert got[0] == 0 and got[2] == 2 and isinstance(got[1], asyncio.CancelledError)


@pytest.mark.parametrize("most", [0, 1])
def test_a_bound_below_one_is_one(most: int) -> None:
    calls: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        calls.append(items)
        return items

    async def run() -> None:
        together = Coalescer(send, most=most)
        await asyncio.gather(*(together.add(i) for i in range(3)))

    asyncio.run(run())
    assert calls == [[0], [1], [2]]
