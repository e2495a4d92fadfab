"""The challenger's rows: written in batches beside the champion's, read back in pairs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.tables import PredictionRecord, ShadowPrediction


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """One challenger score, as `shadow_predictions` stores it."""

    prediction_id: uuid.UUID
    model_tag: str
    probability: float
    prediction: int
    threshold: float
    created_at: datetime


def write_shadow(session: Session, rows: Sequence[ShadowRow]) -> None:
    """One multi-row INSERT (SQLAlchemy's insertmanyvalues), not one ORM object per row: the
    shadow writes everything queued since its last commit at once (serving/shadow.py)."""
    if rows:
        session.execute(sa.insert(ShadowPrediction), [asdict(row) for row in rows])


def shadow_of(session: Session, prediction_id: uuid.UUID) -> list[ShadowPrediction]:
    statement = select(ShadowPrediction).where(col(ShadowPrediction.prediction_id) == prediction_id)
    return list(session.exec(statement.order_by(col(ShadowPrediction.created_at))))


def shadow_pairs(
    session: Session, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """Every call both models scored in the window (the champion's time):
    `{"employee_id", "created_at", "champion": {...}, "challenger": {...}}` where each side is
    `{"model_tag", "probability", "prediction", "threshold"}`."""
    p, s = PredictionRecord, ShadowPrediction
    statement: Any = sa.select(
        col(p.employee_id),
        col(p.created_at),
        col(p.model_tag),
        col(p.probability),
        col(p.prediction),
        col(p.threshold),
        col(s.model_tag).label("s_tag"),
        col(s.probability).label("s_probability"),
        col(s.prediction).label("s_prediction"),
        col(s.threshold).label("s_threshold"),
    ).join(s, col(s.prediction_id) == col(p.id))
    if since is not None:
        statement = statement.where(col(p.created_at) >= since)
    if until is not None:
        statement = statement.where(col(p.created_at) < until)
    statement = statement.order_by(col(p.created_at), col(s.id))
    return [
        {
            "employee_id": r.employee_id,
            "created_at": r.created_at,
            "champion": {
                "model_tag": r.model_tag,
                "probability": r.probability,
                "prediction": r.prediction,
                "threshold": r.threshold,
            },
            "challenger": {
                "model_tag": r.s_tag,
                "probability": r.s_probability,
                "prediction": r.s_prediction,
                "threshold": r.s_threshold,
            },
        }
        for r in session.execute(statement)
    ]
