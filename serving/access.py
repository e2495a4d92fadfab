"""The log of person-level reads (who looked at whose scores), off the request path.

A read route calls `record(...)` after it has its answer: no I/O on the request path. Events
are written in batches by `serving.background.BatchedWriter`; at most `max_pending` wait, and
events past that are counted as unrecorded rather than held (bounded memory under a flood).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from persistence.audit import access_event, record_access
from persistence.tables import AccessEvent
from serving import metrics
from serving.background import BatchedWriter


class AccessLog(BatchedWriter[list[AccessEvent]]):
    what = "person-level reads"

    def __init__(self, engine: sa.Engine, *, flush_seconds: float, max_pending: int) -> None:
        super().__init__(engine, flush_seconds=flush_seconds, unrecorded=metrics.ACCESS_UNRECORDED)
        self.max_pending = max_pending
        self._pending: list[AccessEvent] = []
        # Sync read routes run in worker threads: queueing and taking must not interleave.
        self._lock = threading.Lock()

    def record(
        self,
        client: str | None,
        route: str,
        query: dict[str, Any] | None,
        employee_ids: Sequence[int | None],
    ) -> None:
        """Log one successful read that returned `employee_ids` (None: a row with no employee)."""
        event = access_event(client, route, query, employee_ids)
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.unrecorded.inc()
                return
            self._pending.append(event)
        self._started()

    def _take(self) -> list[AccessEvent] | None:
        with self._lock:
            if not self._pending:
                return None
            batch, self._pending = self._pending, []
        return batch

    def _size(self, batch: list[AccessEvent]) -> int:
        return len(batch)

    def _store(self, session: Session, batch: list[AccessEvent]) -> None:
        record_access(session, batch)
