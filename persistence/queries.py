"""The queries the service and the CLI run: plain functions taking a session."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from persistence.tables import EmployeeRecord, PredictionRecord, Review, utcnow

StatsDimension = Literal["departement", "poste", "day", "genre", "statut_marital", "age_band"]
# Statistics by these describe protected groups: only `audit` keys may ask (serving checks).
PROTECTED_DIMENSIONS = frozenset({"genre", "statut_marital", "age_band"})


def get_employee(session: Session, employee_id: int) -> EmployeeRecord | None:
    return session.get(EmployeeRecord, employee_id)


def upsert_employees(session: Session, features_by_id: dict[int, dict[str, Any]]) -> int:
    """Insert or refresh employees; predictions are never touched."""
    if not features_by_id:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    statement = insert(EmployeeRecord).values(
        [{"id": k, "features": v, "updated_at": now} for k, v in features_by_id.items()]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={"features": statement.excluded.features, "updated_at": statement.excluded.updated_at},
    )
    session.execute(statement)
    return len(features_by_id)


def get_prediction(session: Session, prediction_id: uuid.UUID) -> PredictionRecord | None:
    return session.get(PredictionRecord, prediction_id)


@dataclass(frozen=True)
class HistoryFilter:
    employee_id: int | None = None
    model_tag: str | None = None
    prediction: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    client: str | None = None
    reviewed: bool | None = None

    def apply(self, statement: Any) -> Any:
        p = PredictionRecord
        has_review = sa.exists().where(col(Review.prediction_id) == col(p.id))
        checks: list[tuple[Any, Callable[[Any], Any]]] = [
            (self.employee_id, lambda v: col(p.employee_id) == v),
            (self.model_tag, lambda v: col(p.model_tag) == v),
            (self.prediction, lambda v: col(p.prediction) == v),
            (self.since, lambda v: col(p.created_at) >= v),
            (self.until, lambda v: col(p.created_at) < v),
            (self.client, lambda v: col(p.client) == v),
            (self.reviewed, lambda v: has_review if v else ~has_review),
        ]
        conditions = [check(value) for value, check in checks if value is not None]
        return statement.where(*conditions)


def prediction_history(
    session: Session, filters: HistoryFilter, *, offset: int, limit: int
) -> tuple[int, list[PredictionRecord]]:
    """Newest first, paged; the total is for the same filters."""
    total = session.exec(filters.apply(select(sa.func.count()).select_from(PredictionRecord)))
    page = session.exec(
        filters.apply(select(PredictionRecord))
        .order_by(col(PredictionRecord.created_at).desc(), col(PredictionRecord.id))
        .offset(offset)
        .limit(limit)
    )
    return int(total.one()), list(page)


def prediction_stats(
    session: Session, by: StatsDimension, filters: HistoryFilter
) -> list[dict[str, Any]]:
    """Count, positive rate and mean probability per group, computed by the database."""
    group: sa.ColumnElement[Any]
    if by == "day":
        group = sa.func.date(PredictionRecord.created_at)
    elif by == "age_band":
        age = sa.cast(PredictionRecord.input["age"].as_string(), sa.Integer)
        group = sa.case((age < 30, "<30"), (age < 45, "30-44"), else_=">=45")
    else:
        group = PredictionRecord.input[by].as_string()
    key = sa.cast(group, sa.String).label("group")
    statement = (
        select(
            key,
            sa.func.count().label("count"),
            sa.func.avg(sa.cast(PredictionRecord.prediction, sa.Float)).label("positive_rate"),
            sa.func.avg(PredictionRecord.probability).label("mean_probability"),
        )
        .group_by(key)
        .order_by(key)
    )
    return [
        {
            "group": row.group,
            "count": int(row.count),
            "positive_rate": float(row.positive_rate),
            "mean_probability": float(row.mean_probability),
        }
        for row in session.exec(filters.apply(statement))
    ]
