"""Stored rows built directly (no scoring), for tests of persistence, purge and monitoring."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from persistence.predictions import PredictionRow
from persistence.tables import utcnow


def prediction_row(
    *,
    created_at: datetime | None = None,
    employee_id: int | None = None,
    input: dict[str, Any] | None = None,
    probability: float = 0.25,
    prediction: int = 0,
    threshold: float = 0.5,
    model_tag: str = "m:1",
) -> PredictionRow:
    """One prediction row as the predictor would write it, with the given values."""
    return PredictionRow(
        id=uuid.uuid4(),
        created_at=created_at or utcnow(),
        employee_id=employee_id,
        input=input
        if input is not None
        else {"departement": "Consulting", "poste": "Consultant", "annees_dans_l_entreprise": 3},
        probability=probability,
        prediction=prediction,
        threshold=threshold,
        model_tag=model_tag,
        top_factors=[],
        latency_ms=1.0,
        request_id="r",
        batch_id=uuid.uuid4(),
        client="tests",
        endpoint="/predict",
    )
