"""Adaptive batching of single calls, with BentoML's own CORK dispatcher.

A batchable `@bentoml.api` only batches requests whose body is a list. `/predict` takes one
raw object, so it hands each employee to the same dispatcher class BentoML puts in front of
batchable APIs, in process: no second HTTP hop through the service's own client. The
dispatcher learns the batch cost online and holds calls only while that pays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, NoReturn, TypeVar

from bentoml._internal.marshal.dispatcher import CorkDispatcher

from serving.errors import Overloaded

Item = TypeVar("Item")
Result = TypeVar("Result")


def _overloaded() -> NoReturn:
    raise Overloaded("the service is overloaded: the wait would exceed max_latency_ms; retry")


class AdaptiveBatcher(Generic[Item, Result]):
    """`await batcher(item)`: the item is scored with whichever others arrive meanwhile."""

    def __init__(
        self,
        handle: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch_size: int,
        max_latency_ms: int,
    ) -> None:
        self._dispatcher: CorkDispatcher[Item, Result] = CorkDispatcher(
            max_latency_in_ms=max_latency_ms,
            max_batch_size=max_batch_size,
            fallback=_overloaded,
            get_batch_size=lambda _item: 1,
        )
        self._call = self._dispatcher(handle)

    async def __call__(self, item: Item) -> Result:
        result = await self._call(item)
        return result  # type: ignore[return-value]
