"""The audit of refused calls, off the request path, aggregated, in bounded memory.

A refusal is counted in memory (`record`, no I/O) under its group: client address, key name,
method, route, status and error. A background task writes the groups every `flush_seconds`
in one transaction, one row per group with its `count`, first and last time. A flood of
10,000 refused calls from one address therefore costs a few rows, and the count says how many
were refused. At most `max_pending` groups wait; refusals beyond that are folded into one
overflow group per status and error (method and route `*`), so every refusal is still counted.
Writing, failures and shutdown: `serving.background.BatchedWriter`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from persistence.audit import record_refusals
from persistence.tables import AuditEvent, utcnow
from serving import metrics
from serving.background import BatchedWriter


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


class RefusalLog(BatchedWriter[dict[RefusalGroup, Tally]]):
    what = "refused calls"

    def __init__(self, engine: sa.Engine, *, flush_seconds: float, max_pending: int) -> None:
        super().__init__(
            engine, flush_seconds=flush_seconds, unrecorded=metrics.REFUSALS_UNRECORDED
        )
        self.max_pending = max_pending
        self._pending: dict[RefusalGroup, Tally] = {}

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
        self._started()

    def _take(self) -> dict[RefusalGroup, Tally] | None:
        if not self._pending:
            return None
        batch, self._pending = self._pending, {}
        return batch

    def _size(self, batch: dict[RefusalGroup, Tally]) -> int:
        return sum(t.count for t in batch.values())

    def _store(self, session: Session, batch: dict[RefusalGroup, Tally]) -> None:
        record_refusals(
            session,
            [
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
            ],
        )
