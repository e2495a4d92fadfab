"""The adaptive batcher (serving/batcher.py) in process, with asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from serving.batcher import AdaptiveBatcher
from serving.errors import Overloaded


class Handler:
    """Doubles each item; records every batch; waits for `release` when told to."""

    def __init__(self, *, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.started = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.release.wait()
        if any(item < 0 for item in items):
            raise ValueError(f"negative item in {list(items)}")
        return [item * 2 for item in items]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def test_a_lone_call_is_handled_alone_without_waiting():
    async def scenario():
        handler = Handler()
        batcher = AdaptiveBatcher(handler, max_batch_size=64, max_latency_ms=5000)
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await batcher(21)
        return result, loop.time() - began, handler.batches

    result, elapsed, batches = run(scenario())
    assert result == 42
    assert batches == [[21]]
    assert elapsed < 1  # dispatched at once: no timer, no wait for company


def test_calls_arriving_while_batches_run_are_grouped_in_the_next_batch():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=8, max_latency_ms=5000, concurrency=1)
        first = asyncio.ensure_future(batcher(0))
        await handler.started.wait()  # batch [0] is running
        rest = [asyncio.ensure_future(batcher(i)) for i in range(1, 21)]
        await asyncio.sleep(0.01)
        assert handler.batches == [[0]], "nothing else starts while the one slot is busy"
        handler.release.set()
        results = await asyncio.gather(first, *rest)
        return results, handler.batches

    results, batches = run(scenario())
    assert results == [2 * i for i in range(21)]  # every caller gets its own item's result
    assert batches == [[0], list(range(1, 9)), list(range(9, 17)), list(range(17, 21))]
    assert all(len(batch) <= 8 for batch in batches)


def test_with_two_slots_the_second_batch_starts_while_the_first_runs():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=4, max_latency_ms=5000, concurrency=2)
        calls = [asyncio.ensure_future(batcher(i)) for i in range(10)]
        await asyncio.sleep(0.01)
        running = [list(batch) for batch in handler.batches]
        handler.release.set()
        return running, await asyncio.gather(*calls), handler.batches

    running, results, batches = run(scenario())
    # Each of the first two calls finds a free slot and runs alone at once; the calls that
    # arrive while both slots are busy are then taken 4 at a time.
    assert running == [[0], [1]]
    assert results == [2 * i for i in range(10)]
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert max(len(batch) for batch in batches) <= 4


def test_results_map_to_the_right_callers_under_concurrency():
    async def scenario():
        async def handle(items: Sequence[int]) -> list[int]:
            await asyncio.sleep(0.001 * (len(items) % 3))
            return [item * item for item in items]

        batcher = AdaptiveBatcher(handle, max_batch_size=16, max_latency_ms=5000)

        async def caller(i: int) -> tuple[int, int]:
            await asyncio.sleep(0.0001 * (i % 7))
            return i, await batcher(i)

        return await asyncio.gather(*(caller(i) for i in range(500)))

    for item, result in run(scenario()):
        assert result == item * item


def test_an_error_in_the_handler_reaches_every_caller_of_that_batch_only():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=3, max_latency_ms=5000, concurrency=1)
        first = asyncio.ensure_future(batcher(1))
        await handler.started.wait()
        # Next batch: [2, -1, 3] fails as a whole; the one after, [4], succeeds.
        rest = [asyncio.ensure_future(batcher(i)) for i in (2, -1, 3, 4)]
        await asyncio.sleep(0)
        handler.release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True), handler.batches

    results, batches = run(scenario())
    assert batches == [[1], [2, -1, 3], [4]]
    assert results[0] == 2 and results[4] == 8
    for failed in results[1:4]:
        assert isinstance(failed, ValueError)
        assert "negative item" in str(failed)


def test_a_call_that_waited_longer_than_max_latency_is_refused_as_overloaded():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=8, max_latency_ms=50, concurrency=1)
        first = asyncio.ensure_future(batcher(1))
        await handler.started.wait()
        waiting = asyncio.ensure_future(batcher(2))
        await asyncio.sleep(0.12)  # the slot stays busy past max_latency_ms
        fresh = asyncio.ensure_future(batcher(3))
        await asyncio.sleep(0)
        handler.release.set()
        return await asyncio.gather(first, waiting, fresh, return_exceptions=True), handler.batches

    (first, waiting, fresh), batches = run(scenario())
    assert first == 2 and fresh == 6
    assert isinstance(waiting, Overloaded)
    assert waiting.status == 503 and waiting.code == "overloaded"
    assert "max_latency_ms" in waiting.message
    assert batches == [[1], [3]]  # the stale call was never handled


def test_the_queue_cap_refuses_with_overloaded():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(
            handler, max_batch_size=2, max_latency_ms=5000, concurrency=1, max_queue=5
        )
        first = asyncio.ensure_future(batcher(0))
        await handler.started.wait()
        queued = [asyncio.ensure_future(batcher(i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="too many calls"):
            await batcher(99)
        handler.release.set()
        return await asyncio.gather(first, *queued), handler.batches

    results, batches = run(scenario())
    assert results == [0, 2, 4, 6, 8, 10]
    assert 99 not in [i for batch in batches for i in batch]


def test_a_cancelled_caller_is_skipped():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=8, max_latency_ms=5000, concurrency=1)
        first = asyncio.ensure_future(batcher(1))
        await handler.started.wait()
        gone = asyncio.ensure_future(batcher(2))
        kept = asyncio.ensure_future(batcher(3))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        handler.release.set()
        results = await asyncio.gather(first, kept)
        return results, gone.cancelled(), handler.batches

    results, cancelled, batches = run(scenario())
    assert results == [2, 6]
    assert cancelled
    assert batches == [[1], [3]]


def test_a_caller_cancelled_while_its_batch_runs_does_not_break_the_others():
    async def scenario():
        handler = Handler(hold=True)
        batcher = AdaptiveBatcher(handler, max_batch_size=8, max_latency_ms=5000, concurrency=1)
        calls = [asyncio.ensure_future(batcher(i)) for i in range(3)]
        await handler.started.wait()
        calls[0].cancel()
        await asyncio.sleep(0)
        handler.release.set()
        return await asyncio.gather(*calls[1:]), handler.batches

    results, batches = run(scenario())
    assert results == [2, 4]
    assert batches == [[0], [1, 2]]


def test_a_handler_answering_the_wrong_number_of_results_fails_every_caller():
    """A broken handler must fail its batch's callers, never leave one waiting forever."""

    async def scenario():
        async def short(items: Sequence[int]) -> list[int]:
            return [item * 2 for item in items][:-1]  # one result missing

        batcher = AdaptiveBatcher(short, max_batch_size=8, max_latency_ms=5000, concurrency=1)
        first = asyncio.ensure_future(batcher(0))  # alone: gets no result at all
        rest = [asyncio.ensure_future(batcher(i)) for i in (1, 2, 3)]
        done, pending = await asyncio.wait([first, *rest], timeout=2)
        for task in pending:
            task.cancel()
        return [t.exception() if t in done else "still waiting" for t in (first, *rest)]

    outcomes = asyncio.run(scenario())
    assert "still waiting" not in outcomes, outcomes
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes
