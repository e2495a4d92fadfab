"""The shadow challenger: a second model scores every call the champion answered, after the
champion's rows are committed and its answers released, and never on the answer path.

`after(requests, answers)` only queues the batch and returns. One consumer task per worker
takes everything queued so far, scores it in one call (probabilities only: the challenger's
explanations are never stored) and writes it in one multi-row INSERT and one commit, in a
thread (`CapacityLimiter(1)`: the shadow never takes more than one thread from the champion).
Coalescing is what lets it keep up: the first version scored and committed each champion batch
on its own (~10 rows at 64 connections) and, at ~1,200 req/s on 2 cores, dropped a fifth of
the batches (bench/shadow.py). At most `max_pending_rows` rows wait; past that a batch is
dropped and counted. A failure (scoring or writing) is counted in
`attrition_shadow_failures_total` and logged at most once a minute, never raised: a broken
challenger cannot fail or delay a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import anyio
import sqlalchemy as sa

from persistence.engine import session_scope
from persistence.shadow import ShadowRow, write_shadow
from persistence.tables import utcnow
from scoring.scorer import Scorer
from serving import metrics
from serving.predictor import ScoringRequest
from serving.responses import Prediction
from training.contract import employee_columns

logger = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 60.0
Batch = tuple[Sequence[ScoringRequest], Sequence[Prediction]]


class ShadowScorer:
    def __init__(
        self, scorer: Scorer, model_tag: str, engine: sa.Engine, *, max_pending_rows: int = 20_000
    ) -> None:
        self.scorer = scorer
        self.model_tag = model_tag
        self.engine = engine
        self.max_pending_rows = max_pending_rows
        self._queued: list[Batch] = []
        self._queued_rows = 0
        self._consumer: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._last_logged = float("-inf")

    def after(self, requests: Sequence[ScoringRequest], answers: Sequence[Prediction]) -> None:
        """Queue a batch the champion has answered for the challenger (returns at once)."""
        if self._queued_rows + len(answers) > self.max_pending_rows:
            self._failed("the shadow queue is full: a batch was dropped", len(answers))
            return
        self._queued.append((requests, answers))
        self._queued_rows += len(answers)
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        while self._queued:
            batches, rows = self._queued, self._queued_rows
            self._queued, self._queued_rows = [], 0
            try:
                await anyio.to_thread.run_sync(self._score, batches, limiter=self._limiter)
            except Exception as exc:  # never raised: counted and logged at most once a minute
                self._failed(f"the shadow model failed: {exc!r}", rows)

    def _score(self, batches: Sequence[Batch]) -> None:
        requests = [request for batch, _ in batches for request in batch]
        answers = [answer for _, batch in batches for answer in batch]
        probabilities = self.scorer.probabilities(employee_columns([r.employee for r in requests]))
        threshold, now = self.scorer.threshold, utcnow()
        rows = [
            ShadowRow(
                prediction_id=answer.prediction_id,
                model_tag=self.model_tag,
                probability=probability,
                prediction=int(probability >= threshold),
                threshold=threshold,
                created_at=now,
            )
            for answer, probability in zip(answers, probabilities.tolist(), strict=True)
        ]
        with session_scope(self.engine) as session:
            write_shadow(session, rows)
        metrics.SHADOW_ROWS.inc(len(rows))

    def _failed(self, message: str, rows: int) -> None:
        metrics.SHADOW_FAILURES.inc(rows)
        if time.monotonic() - self._last_logged >= LOG_EVERY_SECONDS:
            self._last_logged = time.monotonic()
            logger.warning(
                "%s (%s; counted in attrition_shadow_failures_total)", message, self.model_tag
            )

    async def drain(self) -> None:
        """Wait until everything queued is scored and written (shutdown, tests)."""
        while self._consumer is not None and not self._consumer.done():
            await asyncio.shield(self._consumer)
