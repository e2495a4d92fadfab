"""Work off the request path, on the worker's event loop.

`Periodic`: a task that ticks every `interval` seconds until closed. `BatchedWriter`: rows held
in memory (bounded) and written in one transaction per tick; the refusal log and the access
log are two kinds. A database outage never fails or slows the request that produced a row: the
batch is dropped, counted in the kind's `unrecorded` metric, and logged once per failed flush
with how many rows it held. Pending rows are written at shutdown (`close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

import anyio
import sqlalchemy as sa
from prometheus_client import Counter
from sqlmodel import Session

from persistence.engine import session_scope
from persistence.errors import StoreError

logger = logging.getLogger(__name__)
Batch = TypeVar("Batch")


class Periodic(ABC):
    """A background task: `tick()` every `interval` seconds until `close()`; a failing tick is
    logged, and the next one runs."""

    what: str  # for the log lines

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    async def tick(self) -> None: ...

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # the task must outlive any one bad tick
                logger.exception("%s failed", self.what)

    def _started(self) -> None:
        """Start the task on first use. From a worker thread (a sync route) there is no loop to
        start it on: `start()`, run at the service's start-up, has started it already."""
        if self._task is None:
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._loop())

    async def start(self) -> None:
        """Start the task on the running loop (the worker's, at start-up)."""
        self._started()

    async def close(self) -> None:
        """Stop the task, then tick once more (nothing pending is left behind)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.tick()


class BatchedWriter(Periodic, Generic[Batch]):
    def __init__(self, engine: sa.Engine, *, flush_seconds: float, unrecorded: Counter) -> None:
        super().__init__(flush_seconds)
        self.engine = engine
        self.unrecorded = unrecorded

    @abstractmethod
    def _take(self) -> Batch | None:
        """What is pending now (and forget it), or None when nothing is."""

    @abstractmethod
    def _store(self, session: Session, batch: Batch) -> None: ...

    @abstractmethod
    def _size(self, batch: Batch) -> int:
        """How many events the batch stands for (for the unrecorded count)."""

    async def tick(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Write what is pending now (also at shutdown and in tests)."""
        batch = self._take()
        if batch is not None:
            await anyio.to_thread.run_sync(self._write, batch)

    def _write(self, batch: Batch) -> None:
        try:
            with session_scope(self.engine) as session:
                self._store(session, batch)
        except StoreError:
            lost = self._size(batch)
            self.unrecorded.inc(lost)
            logger.warning("could not record %d %s: the database is unavailable", lost, self.what)
