"""Every table of the application, in one place. Alembic migrations follow these.

JSON columns are JSONB on PostgreSQL and JSON text elsewhere (SQLite).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), **kwargs)


class EmployeeRecord(SQLModel, table=True):
    """An employee's latest known features, scored by `/predict_by_id`."""

    __tablename__ = "employees"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    features: dict[str, Any] = Field(sa_type=JSONType)
    updated_at: datetime = _timestamp()


class PredictionRecord(SQLModel, table=True):
    """One scored employee: written, with its batch, before the answer leaves."""

    __tablename__ = "predictions"
    __table_args__ = (
        sa.Index("ix_predictions_employee_created", "employee_id", "created_at"),
        sa.Index("ix_predictions_model_created", "model_tag", "created_at"),
        sa.Index("ix_predictions_prediction_created", "prediction", "created_at"),
    )

    id: uuid.UUID = Field(primary_key=True)
    created_at: datetime = _timestamp(index=True)
    employee_id: int | None = Field(default=None, foreign_key="employees.id")
    input: dict[str, Any] = Field(sa_type=JSONType)
    probability: float
    prediction: int = Field(sa_type=sa.SmallInteger)
    threshold: float
    model_tag: str = Field(max_length=128)
    top_factors: list[dict[str, Any]] = Field(sa_type=JSONType)
    latency_ms: float
    request_id: str = Field(max_length=64)
    batch_id: uuid.UUID = Field(index=True)
