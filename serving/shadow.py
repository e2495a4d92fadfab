"""The shadow challenger: a second model scores every batch the champion answered, after the
champion's rows are committed and its answers released, and never on the answer path.

`after(requests, answers)` only schedules the work: one task per batch, run in a thread one
batch at a time (`CapacityLimiter(1)`: the shadow never takes more than one thread from the
champion), at most `max_pending` batches waiting; past that a batch is dropped and counted.
A failure (scoring or writing) is counted in `attrition_shadow_failures_total` and logged at
most once a minute, never raised: a broken challenger cannot fail or delay a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import anyio
import sqlalchemy as sa

from persistence.engine import session_scope
from persistence.shadow import write_shadow
from persistence.tables import ShadowPrediction, utcnow
from scoring.scorer import Scorer
from serving import metrics
from serving.predictor import ScoringRequest
from serving.responses import Prediction
from training.contract import employees_frame

logger = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 60.0


class ShadowScorer:
    def __init__(
        self, scorer: Scorer, model_tag: str, engine: sa.Engine, *, max_pending: int = 64
    ) -> None:
        self.scorer = scorer
        self.model_tag = model_tag
        self.engine = engine
        self.max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self._limiter = anyio.CapacityLimiter(1)
        self._last_logged = float("-inf")

    def after(self, requests: Sequence[ScoringRequest], answers: Sequence[Prediction]) -> None:
        """Schedule the challenger on a batch the champion has answered (returns at once)."""
        if len(self._tasks) >= self.max_pending:
            self._failed("the shadow queue is full: a batch was dropped", len(answers))
            return
        task = asyncio.get_running_loop().create_task(self._run(requests, answers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, requests: Sequence[ScoringRequest], answers: Sequence[Prediction]) -> None:
        try:
            await anyio.to_thread.run_sync(self._score, requests, answers, limiter=self._limiter)
        except Exception as exc:  # never raised: counted and logged at most once a minute
            self._failed(f"the shadow model failed: {exc!r}", len(answers))

    def _score(self, requests: Sequence[ScoringRequest], answers: Sequence[Prediction]) -> None:
        scores = self.scorer.score(employees_frame([r.employee for r in requests]))
        now = utcnow()
        rows = [
            ShadowPrediction(
                prediction_id=answer.prediction_id,
                model_tag=self.model_tag,
                probability=score.probability,
                prediction=score.prediction,
                threshold=self.scorer.threshold,
                created_at=now,
            )
            for answer, score in zip(answers, scores, strict=True)
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
        """Wait for the scheduled batches (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
