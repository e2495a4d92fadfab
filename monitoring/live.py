"""Drift and live performance of a served model over a window of stored predictions: the one
place that joins persistence's rows to this package's computations (used by the service's
`/drift` and `/performance`, and by `attrition drift` / `attrition monitor`).

Reads are bounded by the window: the latest prediction per employee (per cohort month for
performance) is selected by the database, with only the values the reports use (each input
feature extracted by the database, never the whole JSON input), handed over as columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from monitoring.drift import column_drift_report
from monitoring.performance import column_performance_report
from persistence.monitoring import latest_inputs, latest_per_employee_month, outcome_columns

# The drift window of the daily snapshot (`attrition monitor --record`) and of the HR page.
DRIFT_DAYS = 30


def live_drift(
    session: Session,
    metadata: Mapping[str, Any],
    *,
    model_tag: str | None,
    since: datetime | None,
    until: datetime | None,
    min_rows: int,
) -> dict[str, Any]:
    reference = metadata["reference"]
    features = list(reference["features"])
    columns = latest_inputs(session, model_tag, since, until, features)
    return column_drift_report(
        reference,
        dict(zip(features, columns[2:], strict=True)),
        columns[0],
        predictions=columns[1],
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
    monthly = latest_per_employee_month(session, model_tag, since, until)
    employee_id, day, probability, prediction, row_threshold = monthly
    fact_employee_id, status, event_date = outcome_columns(session)
    return column_performance_report(
        employee_ids=np.array(employee_id, dtype=np.int64),
        days=np.array(day, dtype="datetime64[D]"),
        probability=np.array(probability, dtype=float),
        prediction=np.array(prediction, dtype=float),
        row_threshold=np.array(row_threshold, dtype=float),
        fact_employee_ids=np.array(fact_employee_id, dtype=np.int64),
        fact_left=np.array(status, dtype=object) == "left",
        fact_days=np.array(event_date, dtype="datetime64[D]"),
        horizon_days=horizon_days,
        threshold=threshold,
        training=metadata.get("metrics"),
    )
