"""The stop switch (AI Act Art. 14): is scoring suspended? Read by every worker.

`attrition scoring suspend --reason ...` appends a row to `scoring_switches`; each worker
re-reads the latest row at most every `ttl` seconds (default 5), so within that time every
worker of every replica refuses the predict routes with 503 `scoring_suspended` and the
operator's reason, while read routes and `/readyz` are untouched. A failed re-read keeps the
last known state (the predict call itself then meets the same database).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime

import anyio
import sqlalchemy as sa

from persistence.audit import current_switch
from persistence.engine import session_scope
from persistence.errors import StoreError
from serving.errors import ApiError


class ScoringSuspended(ApiError):
    status = 503
    code = "scoring_suspended"


@dataclass(frozen=True, slots=True)
class SwitchState:
    suspended: bool
    reason: str
    since: datetime | None
    by: str | None


NEVER_SUSPENDED = SwitchState(False, "", None, None)


class ScoringSwitchReader:
    def __init__(self, engine: sa.Engine, *, ttl: float) -> None:
        self.engine = engine
        self.ttl = ttl
        self._state = NEVER_SUSPENDED
        self._read_at = float("-inf")
        self._lock = anyio.Lock()

    def _fetch(self) -> SwitchState:
        with session_scope(self.engine) as session:
            switch = current_switch(session)
        if switch is None:
            return NEVER_SUSPENDED
        return SwitchState(switch.suspended, switch.reason, switch.created_at, switch.actor)

    async def state(self) -> SwitchState:
        """The switch as of at most `ttl` seconds ago (one database read per worker per ttl)."""
        if time.monotonic() - self._read_at < self.ttl:
            return self._state
        async with self._lock:
            if time.monotonic() - self._read_at >= self.ttl:
                with contextlib.suppress(StoreError):
                    self._state = await anyio.to_thread.run_sync(self._fetch)
                self._read_at = time.monotonic()
        return self._state

    async def ensure_scoring(self) -> None:
        """Raise `ScoringSuspended` (503) while scoring is suspended."""
        state = await self.state()
        if state.suspended:
            raise ScoringSuspended(state.reason or "scoring is suspended by an operator")
