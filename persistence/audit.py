"""The audit trail's rows: refusals, person-level reads, human reviews, the scoring switch,
and retention (purge). Plain functions taking a session; none of them commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.tables import (
    AccessEvent,
    AuditEvent,
    PredictionRecord,
    Review,
    ScoringSwitch,
    ShadowPrediction,
    UiSession,
    utcnow,
)

Decision = Literal["agree", "disagree", "no_action"]
DECISIONS: tuple[Decision, ...] = ("agree", "disagree", "no_action")
# An access event names at most this many employees; `employee_count` says how many there were.
MAX_LOGGED_IDS = 100
# Rows deleted per transaction by `purge`: short transactions, short locks.
PURGE_BATCH = 5000


def record_refusals(session: Session, events: Sequence[AuditEvent]) -> None:
    """Store a batch of (aggregated) refusals."""
    session.add_all(events)


def access_event(
    client: str | None,
    route: str,
    query: dict[str, Any] | None,
    employee_ids: Sequence[int | None],
) -> AccessEvent:
    """One person-level read: `employee_ids` has one entry per person-level item the answer
    held (None for a score of no known employee). Stored: the distinct ids, capped, and the
    number of items."""
    unique = list(dict.fromkeys(i for i in employee_ids if i is not None))
    return AccessEvent(
        client=client,
        route=route[:64],
        query=query or None,
        employee_ids=unique[:MAX_LOGGED_IDS],
        employee_count=len(employee_ids),
    )


def record_access(session: Session, events: Sequence[AccessEvent]) -> None:
    session.add_all(events)


@dataclass(frozen=True)
class AuditFilter:
    client: str | None = None
    route: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    employee_id: int | None = None


def _page(
    session: Session, statement: Any, created: Any, offset: int, limit: int
) -> tuple[int, list[Any]]:
    total = session.exec(select(sa.func.count()).select_from(statement.subquery())).one()
    order = (created.desc(), statement.selected_columns.id.desc())  # ties: newest id first
    rows = session.exec(statement.order_by(*order).offset(offset).limit(limit))
    return int(total), list(rows)


def _window(statement: Any, created: Any, filters: AuditFilter) -> Any:
    if filters.since is not None:
        statement = statement.where(created >= filters.since)
    if filters.until is not None:
        statement = statement.where(created < filters.until)
    return statement


def access_events(
    session: Session, filters: AuditFilter, *, offset: int, limit: int
) -> tuple[int, list[AccessEvent]]:
    """Person-level reads, newest first; `employee_id` matches events that named that person."""
    statement = _window(select(AccessEvent), col(AccessEvent.created_at), filters)
    if filters.client is not None:
        statement = statement.where(col(AccessEvent.client) == filters.client)
    if filters.route is not None:
        statement = statement.where(col(AccessEvent.route) == filters.route)
    if filters.employee_id is not None:
        statement = statement.where(_names_employee(session, filters.employee_id))
    return _page(session, statement, col(AccessEvent.created_at), offset, limit)


def _names_employee(session: Session, employee_id: int) -> Any:
    ids = AccessEvent.employee_ids
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(ids, sa.dialects.postgresql.JSONB).contains([employee_id])
    listed = sa.func.json_each(ids).table_valued("value")
    return sa.exists(sa.select(listed.c.value).where(listed.c.value == employee_id))


def refusal_events(
    session: Session, filters: AuditFilter, *, offset: int, limit: int
) -> tuple[int, list[AuditEvent]]:
    """Refused calls (aggregated), newest first."""
    statement = _window(select(AuditEvent), col(AuditEvent.created_at), filters)
    if filters.client is not None:
        statement = statement.where(col(AuditEvent.client) == filters.client)
    if filters.route is not None:
        statement = statement.where(col(AuditEvent.endpoint) == filters.route)
    return _page(session, statement, col(AuditEvent.created_at), offset, limit)


def sign_in_events(
    session: Session, filters: AuditFilter, *, offset: int, limit: int
) -> tuple[int, list[UiSession]]:
    """Sign-ins to the HR page (its sessions), newest first."""
    statement = _window(select(UiSession), col(UiSession.created_at), filters)
    if filters.client is not None:
        statement = statement.where(col(UiSession.client) == filters.client)
    return _page(session, statement, col(UiSession.created_at), offset, limit)


def add_review(
    session: Session, prediction_id: uuid.UUID, decision: Decision, note: str, reviewer: str
) -> Review | None:
    """Store a review; None when the prediction does not exist."""
    if session.get(PredictionRecord, prediction_id) is None:
        return None
    review = Review(prediction_id=prediction_id, decision=decision, note=note, reviewer=reviewer)
    session.add(review)
    session.flush()
    return review


def reviews_of(
    session: Session, prediction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Review]]:
    """Reviews per prediction, oldest first."""
    found: dict[uuid.UUID, list[Review]] = {}
    if not prediction_ids:
        return found
    statement = (
        select(Review)
        .where(col(Review.prediction_id).in_(set(prediction_ids)))
        .order_by(col(Review.created_at), col(Review.id))
    )
    for review in session.exec(statement):
        found.setdefault(review.prediction_id, []).append(review)
    return found


def current_switch(session: Session) -> ScoringSwitch | None:
    """The latest suspend / resume, or None when scoring was never suspended."""
    statement = select(ScoringSwitch).order_by(
        col(ScoringSwitch.created_at).desc(), col(ScoringSwitch.id).desc()
    )
    return session.exec(statement).first()


def set_switch(session: Session, *, suspended: bool, reason: str, actor: str) -> ScoringSwitch:
    """Append a suspend or resume: the table is both the state and its audit log."""
    switch = ScoringSwitch(suspended=suspended, reason=reason[:500], actor=actor[:64])
    session.add(switch)
    session.flush()
    return switch


def purge_counts(session: Session, cutoff: datetime) -> dict[str, int]:
    """How many rows `purge` would delete, per table."""
    old_predictions = select(PredictionRecord.id).where(col(PredictionRecord.created_at) < cutoff)
    counts = {
        "reviews": select(sa.func.count())
        .select_from(Review)
        .where(col(Review.prediction_id).in_(old_predictions)),
        "shadow_predictions": select(sa.func.count())
        .select_from(ShadowPrediction)
        .where(col(ShadowPrediction.prediction_id).in_(old_predictions)),
        "predictions": select(sa.func.count()).select_from(old_predictions.subquery()),
        "access_events": select(sa.func.count())
        .select_from(AccessEvent)
        .where(col(AccessEvent.created_at) < cutoff),
        "audit_events": select(sa.func.count())
        .select_from(AuditEvent)
        .where(col(AuditEvent.created_at) < cutoff),
        "ui_sessions": select(sa.func.count())
        .select_from(UiSession)
        .where(col(UiSession.created_at) < cutoff),
    }
    return {table: int(session.exec(count).one()) for table, count in counts.items()}


def purge_batch(session: Session, cutoff: datetime) -> dict[str, int]:
    """Delete one batch (at most `PURGE_BATCH` rows of each table) older than `cutoff`.

    A prediction leaves with its reviews and its shadow scores (first: they reference it).
    Call again, in a new transaction, until every count is 0.
    """
    deleted: dict[str, int] = {}
    predictions = list(
        session.exec(
            select(PredictionRecord.id)
            .where(col(PredictionRecord.created_at) < cutoff)
            .limit(PURGE_BATCH)
        )
    )
    deleted["reviews"] = _delete(session, Review, col(Review.prediction_id).in_(predictions))
    deleted["shadow_predictions"] = _delete(
        session, ShadowPrediction, col(ShadowPrediction.prediction_id).in_(predictions)
    )
    deleted["predictions"] = _delete(
        session, PredictionRecord, col(PredictionRecord.id).in_(predictions)
    )
    for table, model in (
        ("access_events", AccessEvent),
        ("audit_events", AuditEvent),
        ("ui_sessions", UiSession),
    ):
        key = col(model.id)
        ids = list(
            session.exec(select(key).where(col(model.created_at) < cutoff).limit(PURGE_BATCH))
        )
        deleted[table] = _delete(session, model, key.in_(ids))
    return deleted


def _delete(session: Session, model: Any, condition: Any) -> int:
    result = session.execute(sa.delete(model).where(condition))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def cutoff_for(days: int) -> datetime:
    return utcnow() - timedelta(days=days)
