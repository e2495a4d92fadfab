"""Adaptive batching of single calls, owned here (MLServer-style), tested in process.

`await batcher(item)` queues the item. While fewer than `concurrency` batches are running, the
queue is dispatched at once, whole (up to `max_batch_size` items): at low load a call is scored
alone with no added wait; under load, calls that arrive while batches run are scored together
in the next one, so the batch size follows the load without a timer or a cost model. A call
that waited more than `max_latency_ms` for a batch is refused with `Overloaded` (503) instead of
growing the queue without bound; so is a call arriving when `max_queue` items already wait.

It replaced BentoML's `CorkDispatcher` (an internal class) at the same throughput: see the
closing note of the structure issue for the measurement.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from serving.errors import Overloaded

Item = TypeVar("Item")
Result = TypeVar("Result")


class AdaptiveBatcher(Generic[Item, Result]):
    def __init__(
        self,
        handle: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch_size: int,
        max_latency_ms: float,
        concurrency: int = 2,
        max_queue: int = 10_000,
    ) -> None:
        self._handle = handle
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._queue: deque[tuple[Item, asyncio.Future[Result], float]] = deque()
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: Item) -> Result:
        if len(self._queue) >= self.max_queue:
            raise Overloaded("the service is overloaded: too many calls are waiting; retry")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future, time.monotonic()))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self.concurrency:
            batch = self._take()
            if batch:
                task = asyncio.get_running_loop().create_task(self._run(batch))
                self._running.add(task)
                task.add_done_callback(self._finished)

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """Up to `max_batch_size` live items; the ones that waited too long are refused."""
        too_old = time.monotonic() - self.max_latency
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        while self._queue and len(batch) < self.max_batch_size:
            item, future, queued = self._queue.popleft()
            if future.done():  # the caller was cancelled (client gone, deadline)
                continue
            if queued < too_old:
                future.set_exception(
                    Overloaded("the service is overloaded: the wait exceeded max_latency_ms")
                )
                continue
            batch.append((item, future))
        return batch

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._handle([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._dispatch()
