"""Drift and live performance of a served model over a window of stored predictions: the one
place that joins persistence's rows to this package's computations (used by the service's
`/drift` and `/performance`, and by `attrition drift` / `attrition monitor`).

Reads are bounded by the window: the latest prediction per employee (per cohort month for
performance) is selected by the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from monitoring.drift import drift_report
from monitoring.performance import performance_report
from persistence.monitoring import latest_inputs, latest_per_employee_month, outcome_facts


def live_drift(
    session: Session,
    metadata: Mapping[str, Any],
    *,
    model_tag: str | None,
    since: datetime | None,
    until: datetime | None,
    min_rows: int,
) -> dict[str, Any]:
    rows = latest_inputs(session, model_tag, since, until)
    return drift_report(
        metadata["reference"],
        [r.input for r in rows],
        [r.probability for r in rows],
        predictions=[r.prediction for r in rows],
        min_rows=min_rows,
    )


def live_performance(
    session: Session,
    metadata: Mapping[str, Any],
    *,
    model_tag: str | None,
    since: datetime | None,
    until: datetime | None,
    horizon_days: int,
    threshold: float,
) -> dict[str, Any]:
    rows = [dict(r._mapping) for r in latest_per_employee_month(session, model_tag, since, until)]
    facts = outcome_facts(session, [r["employee_id"] for r in rows])
    return performance_report(
        rows,
        facts,
        horizon_days=horizon_days,
        threshold=threshold,
        training=metadata.get("metrics"),
    )
