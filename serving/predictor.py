"""Score a batch and commit its rows, then (only then) build the answers.

Knows nothing of HTTP nor of the database's shape: the service hands it requests, it hands
back answers, or raises an `ApiError` (503 when the rows could not be committed, 422 when the
database refused a value), in which case no answer of the batch exists.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from persistence.engine import session_scope
from persistence.errors import StoreError
from persistence.predictions import PredictionRow, write_predictions
from persistence.tables import utcnow
from scoring.scorer import Scorer
from serving import metrics
from serving.errors import from_store
from serving.responses import Prediction
from training.contract import Employee, employee_columns

LABELS = ("Non", "Oui")
NOT_STORED = "the prediction could not be stored, so it is not returned; retry later"


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    """One employee to score, and who asked through which route (stored on its row)."""

    employee: Employee
    request_id: str
    client: str | None
    endpoint: str
    employee_id: int | None = None
    received: float = field(default_factory=time.perf_counter)


class Predictor:
    def __init__(self, scorer: Scorer, model_tag: str, engine: sa.Engine) -> None:
        self.scorer = scorer
        self.model_tag = model_tag
        self.engine = engine

    def score_and_store(
        self, requests: Sequence[ScoringRequest], endpoint: str
    ) -> list[Prediction]:
        scores = self.scorer.score(employee_columns([r.employee for r in requests]))
        metrics.BATCH_SIZE.labels(endpoint=endpoint).observe(len(requests))
        batch_id = uuid.uuid4()
        now = utcnow()
        scored_at = time.perf_counter()
        threshold = self.scorer.threshold
        rows = [
            PredictionRow(
                id=uuid.uuid4(),
                created_at=now,
                employee_id=r.employee_id or r.employee.id_employee,
                input=r.employee.model_dump(mode="json", exclude_none=True),
                probability=s.probability,
                prediction=s.prediction,
                threshold=threshold,
                model_tag=self.model_tag,
                top_factors=s.top_factors,
                latency_ms=round((scored_at - r.received) * 1000, 3),
                request_id=r.request_id,
                batch_id=batch_id,
                client=r.client,
                endpoint=r.endpoint,
            )
            for r, s in zip(requests, scores, strict=True)
        ]
        self._commit(rows)
        done = time.perf_counter()
        answers = [
            Prediction(
                prediction_id=row.id,
                probability=s.probability,
                prediction=s.prediction,
                label=LABELS[s.prediction],
                threshold=threshold,
                risk_band=s.risk_band,
                model_tag=self.model_tag,
                top_factors=s.top_factors,
                latency_ms=round((done - r.received) * 1000, 3),
            )
            for r, row, s in zip(requests, rows, scores, strict=True)
        ]
        # Per batch, not per answer: `labels()` costs ~50 µs in multiprocess mode.
        for label, count in Counter(a.label for a in answers).items():
            metrics.PREDICTIONS.labels(label=label).inc(count)
        return answers

    def _commit(self, rows: list[PredictionRow]) -> None:
        """One transaction: the batch's rows exist, or none of its answers do."""
        started = time.perf_counter()
        try:
            with session_scope(self.engine) as session:
                write_predictions(session, rows)
        except StoreError as exc:
            metrics.DB_ERRORS.inc()
            raise from_store(exc, NOT_STORED) from exc
        metrics.DB_WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.ROWS_WRITTEN.inc(len(rows))
