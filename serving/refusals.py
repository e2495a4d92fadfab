"""The audit of refused calls, off the request path, aggregated, in bounded memory.

A refusal is counted in memory (`record`, no I/O) under its group: client address, key name,
method, route, status and error. A background task writes the groups every `flush_seconds`
in one transaction, one row per group with its `count`, first and last time. A flood of
10,000 refused calls from one address therefore costs a few rows, and the count says how many
were refused. At most `max_pending` groups wait; refusals beyond that are folded into one
overflow group per status and error (method and route `*`), so every refusal is still counted.
When the database is down, the batch is dropped with one warning naming how many it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
import sqlalchemy as sa

from persistence.engine import session_scope
from persistence.errors import StoreError
from persistence.keys import record_refusals
from persistence.tables import AuditEvent, utcnow
from serving import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RefusalGroup:
    address: str | None
    client: str | None
    method: str
    endpoint: str
    status: int
    error: str


@dataclass(slots=True)
class Tally:
    first: datetime
    last: datetime
    count: int = 1
    detail: list[dict[str, Any]] | None = field(default=None)


class RefusalLog:
    def __init__(self, engine: sa.Engine, *, flush_seconds: float, max_pending: int) -> None:
        self.engine = engine
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: dict[RefusalGroup, Tally] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, group: RefusalGroup, detail: list[dict[str, Any]] | None = None) -> None:
        """Count one refusal; never blocks, never raises."""
        now = utcnow()
        if group not in self._pending and len(self._pending) >= self.max_pending:
            group = RefusalGroup(None, None, "*", "*", group.status, group.error)
        tally = self._pending.get(group)
        if tally is None:
            self._pending[group] = Tally(now, now, 1, detail)
        else:
            tally.count += 1
            tally.last = now
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:  # the audit task must outlive any one bad batch
                logger.exception("flushing refused calls failed")

    async def flush(self) -> None:
        """Write what is pending now (also at shutdown and in tests)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        await anyio.to_thread.run_sync(self._write, batch)

    def _write(self, batch: dict[RefusalGroup, Tally]) -> None:
        events = [
            AuditEvent(
                created_at=tally.first,
                last_seen_at=tally.last,
                count=tally.count,
                client_address=group.address,
                client=group.client,
                method=group.method[:8],
                endpoint=group.endpoint[:256],
                status=group.status,
                error=group.error,
                detail=tally.detail,
            )
            for group, tally in batch.items()
        ]
        try:
            with session_scope(self.engine) as session:
                record_refusals(session, events)
        except StoreError:
            lost = sum(t.count for t in batch.values())
            metrics.REFUSALS_UNRECORDED.inc(lost)
            logger.warning("could not record %d refused call(s): the database is unavailable", lost)

    async def close(self) -> None:
        """Stop the background task and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
