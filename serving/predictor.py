"""Score a batch and commit its audit rows, then (only then) build the answers.

Knows nothing of HTTP: the service hands it requests, it hands back answers or raises
`DatabaseUnavailable`, in which case no answer of the batch exists.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from persistence.engine import session_scope
from persistence.queries import known_employee_ids, write_predictions
from persistence.tables import utcnow
from scoring.scorer import Scorer
from serving import metrics
from serving.errors import database_error
from serving.responses import Prediction
from training.contract import Employee, employees_frame

LABELS = ("Non", "Oui")


@dataclass(frozen=True)
class ScoringRequest:
    employee: Employee
    request_id: str
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
        frame = employees_frame([r.employee for r in requests])
        scores = self.scorer.score(frame)
        metrics.BATCH_SIZE.labels(endpoint=endpoint).observe(len(requests))
        batch_id = uuid.uuid4()
        now = utcnow()
        scored_at = time.perf_counter()
        rows = [
            {
                "id": uuid.uuid4(),
                "created_at": now,
                "employee_id": r.employee_id or r.employee.id_employee,
                "input": r.employee.model_dump(mode="json", exclude_none=True),
                "probability": s.probability,
                "prediction": s.prediction,
                "threshold": self.scorer.threshold,
                "model_tag": self.model_tag,
                "top_factors": s.top_factors,
                "latency_ms": round((scored_at - r.received) * 1000, 3),
                "request_id": r.request_id,
                "batch_id": batch_id,
            }
            for r, s in zip(requests, scores, strict=True)
        ]
        self._commit(rows)
        done = time.perf_counter()
        answers = []
        for r, row, s in zip(requests, rows, scores, strict=True):
            label = LABELS[s.prediction]
            answers.append(
                Prediction(
                    prediction_id=row["id"],
                    probability=s.probability,
                    prediction=s.prediction,
                    label=label,
                    threshold=self.scorer.threshold,
                    risk_band=s.risk_band,
                    model_tag=self.model_tag,
                    top_factors=s.top_factors,
                    latency_ms=round((done - r.received) * 1000, 3),
                )
            )
        # Per batch, not per answer: `labels()` costs ~50 µs in multiprocess mode.
        for label, count in Counter(a.label for a in answers).items():
            metrics.PREDICTIONS.labels(label=label).inc(count)
        return answers

    def _commit(self, rows: list[dict[str, object]]) -> None:
        """One transaction: the batch's rows exist, or none of its answers do."""
        started = time.perf_counter()
        try:
            with session_scope(self.engine) as session:
                referenced = {int(r["employee_id"]) for r in rows if r["employee_id"]}  # type: ignore[call-overload]
                known = known_employee_ids(session, referenced)
                for row in rows:
                    if row["employee_id"] not in known:
                        row["employee_id"] = None
                write_predictions(session, rows)
        except SQLAlchemyError as exc:
            metrics.DB_ERRORS.inc()
            raise database_error(
                exc, "the prediction could not be stored, so it is not returned; retry later"
            ) from exc
        metrics.DB_WRITE_SECONDS.observe(time.perf_counter() - started)
        metrics.ROWS_WRITTEN.inc(len(rows))
