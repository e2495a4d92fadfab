"""The rows monitoring reads and writes: outcomes from the HR system, the latest prediction
per employee (per cohort month for performance; in a window for drift), the at-risk list.

"Latest per employee" is one window function (`row_number() OVER (PARTITION BY employee_id
... ORDER BY created_at DESC)`) on the `(employee_id, created_at)` index, on both backends:
the cost is bounded by the window's rows, never by the whole history.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from persistence.tables import (
    EmployeeRecord,
    MonitoringSnapshot,
    Outcome,
    PredictionRecord,
    Review,
)

OutcomeStatus = Literal["left", "stayed"]
Band = Literal["low", "medium", "high"]
# The high band starts at max(threshold, HIGH_FROM): "more likely to leave than to stay".
HIGH_FROM = 0.5


@dataclass(frozen=True)
class OutcomeFact:
    employee_id: int
    status: OutcomeStatus
    event_date: date  # left on, or stayed as of


def unknown_employees(session: Session, ids: Sequence[int]) -> set[int]:
    wanted = set(ids)
    if not wanted:
        return set()
    found = session.exec(select(EmployeeRecord.id).where(col(EmployeeRecord.id).in_(wanted)))
    return wanted - set(found)


def record_outcomes(
    session: Session, facts: Sequence[OutcomeFact], *, source: str, client: str | None
) -> int:
    """Insert the facts not yet known; returns how many were new (re-posting is a no-op)."""
    if not facts:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    unique = list(dict.fromkeys(facts))
    statement = (
        insert(Outcome)
        .values(
            [
                {
                    "employee_id": f.employee_id,
                    "status": f.status,
                    "event_date": f.event_date,
                    "source": source[:64],
                    "client": client,
                }
                for f in unique
            ]
        )
        .on_conflict_do_nothing(index_elements=["employee_id", "status", "event_date"])
    )
    result = session.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def outcome_facts(session: Session, employee_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Every recorded fact about these employees, as `monitoring.performance` takes them:
    `{"employee_id", "status": "left", "left_on"}` or `{..., "status": "stayed", "as_of"}`."""
    if not employee_ids:
        return []
    statement = select(Outcome).where(col(Outcome.employee_id).in_(set(employee_ids)))
    return [
        {
            "employee_id": o.employee_id,
            "status": o.status,
            "left_on" if o.status == "left" else "as_of": o.event_date,
        }
        for o in session.exec(statement)
    ]


def _month(session: Session) -> Any:
    created = col(PredictionRecord.created_at)
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", created), "YYYY-MM")
    return sa.func.strftime("%Y-%m", created)


def _window(
    statement: Any, model_tag: str | None, since: datetime | None, until: datetime | None
) -> Any:
    created = col(PredictionRecord.created_at)
    if model_tag is not None:
        statement = statement.where(col(PredictionRecord.model_tag) == model_tag)
    if since is not None:
        statement = statement.where(created >= since)
    if until is not None:
        statement = statement.where(created < until)
    return statement


def latest_per_employee_month(
    session: Session, model_tag: str | None, since: datetime | None, until: datetime | None
) -> list[Any]:
    """For each employee and cohort month (YYYY-MM, UTC), the latest prediction in the window:
    rows of (employee_id, created_at, month, probability, prediction, threshold)."""
    month = _month(session).label("month")
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(col(PredictionRecord.employee_id), month),
            order_by=col(PredictionRecord.created_at).desc(),
        )
        .label("rank")
    )
    inner = _window(
        sa.select(
            col(PredictionRecord.employee_id),
            col(PredictionRecord.created_at),
            month,
            col(PredictionRecord.probability),
            col(PredictionRecord.prediction),
            col(PredictionRecord.threshold),
            rank,
        ).where(col(PredictionRecord.employee_id).is_not(None)),
        model_tag,
        since,
        until,
    ).subquery()
    statement = sa.select(
        inner.c.employee_id,
        inner.c.created_at,
        inner.c.month,
        inner.c.probability,
        inner.c.prediction,
        inner.c.threshold,
    ).where(inner.c.rank == 1)
    return list(session.execute(statement))


def latest_inputs(
    session: Session, model_tag: str | None, since: datetime | None, until: datetime | None
) -> list[Any]:
    """The latest prediction of each employee in the window, plus every row that names no
    employee (each counts once): rows of (input, probability, prediction)."""
    rank = (
        sa.func.row_number()
        .over(
            partition_by=col(PredictionRecord.employee_id),
            order_by=col(PredictionRecord.created_at).desc(),
        )
        .label("rank")
    )
    inner = _window(
        sa.select(
            col(PredictionRecord.employee_id),
            col(PredictionRecord.input),
            col(PredictionRecord.probability),
            col(PredictionRecord.prediction),
            rank,
        ),
        model_tag,
        since,
        until,
    ).subquery()
    statement = sa.select(inner.c.input, inner.c.probability, inner.c.prediction).where(
        sa.or_(inner.c.rank == 1, inner.c.employee_id.is_(None))
    )
    return list(session.execute(statement))


@dataclass(frozen=True)
class AtRiskFilter:
    departement: str | None = None
    poste: str | None = None
    band: Band | None = None
    model_tag: str | None = None


def _band(probability: Any, threshold: Any) -> Any:
    high_from = sa.case((threshold > HIGH_FROM, threshold), else_=HIGH_FROM)
    return sa.case(
        (probability >= high_from, "high"), (probability >= threshold, "medium"), else_="low"
    )


def at_risk(
    session: Session, filters: AtRiskFilter, *, offset: int, limit: int
) -> tuple[int, list[dict[str, Any]]]:
    """The latest prediction per employee, highest probability first, with its latest review.

    Bands are computed from each row's own threshold, as the service answered them.
    """
    p = PredictionRecord
    rank = (
        sa.func.row_number()
        .over(partition_by=col(p.employee_id), order_by=col(p.created_at).desc())
        .label("rank")
    )
    band = _band(col(p.probability), col(p.threshold)).label("band")
    inner = sa.select(
        col(p.id).label("prediction_id"),
        col(p.employee_id),
        col(p.probability),
        col(p.threshold),
        col(p.created_at).label("scored_at"),
        col(p.top_factors),
        col(p.model_tag),
        p.input["departement"].as_string().label("departement"),
        p.input["poste"].as_string().label("poste"),
        band,
        rank,
    ).where(col(p.employee_id).is_not(None))
    if filters.model_tag is not None:
        inner = inner.where(col(p.model_tag) == filters.model_tag)
    latest = inner.subquery()
    statement = sa.select(latest).where(latest.c.rank == 1)
    for name in ("departement", "poste", "band"):
        value = getattr(filters, name)
        if value is not None:
            statement = statement.where(latest.c[name] == value)
    total = int(
        session.execute(select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    )
    rows = [
        dict(row._mapping)
        for row in session.execute(
            statement.order_by(latest.c.probability.desc(), latest.c.employee_id)
            .offset(offset)
            .limit(limit)
        )
    ]
    reviews = _latest_reviews(session, [r["prediction_id"] for r in rows])
    for row in rows:
        row["latest_review"] = reviews.get(row["prediction_id"])
    return total, rows


def _latest_reviews(
    session: Session, prediction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Review]:
    latest: dict[uuid.UUID, Review] = {}
    if not prediction_ids:
        return latest
    statement = (
        select(Review)
        .where(col(Review.prediction_id).in_(set(prediction_ids)))
        .order_by(col(Review.created_at), col(Review.id))
    )
    for review in session.exec(statement):
        latest[review.prediction_id] = review
    return latest


def record_snapshot(
    session: Session, model_tag: str, drift: dict[str, Any], performance: dict[str, Any]
) -> MonitoringSnapshot:
    snapshot = MonitoringSnapshot(model_tag=model_tag, drift=drift, performance=performance)
    session.add(snapshot)
    session.flush()
    return snapshot


def latest_snapshot(session: Session, model_tag: str) -> MonitoringSnapshot | None:
    statement = (
        select(MonitoringSnapshot)
        .where(col(MonitoringSnapshot.model_tag) == model_tag)
        .order_by(col(MonitoringSnapshot.created_at).desc(), col(MonitoringSnapshot.id).desc())
    )
    return session.exec(statement).first()
