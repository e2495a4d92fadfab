"""The rows monitoring reads and writes: outcomes from the HR system, the latest prediction
per employee (per cohort month for performance; in a window for drift), the at-risk list.

"Latest" is the newest by `created_at`, then by id. On PostgreSQL the triggers of migration
0009 keep it per employee and model (`latest_predictions`) and per employee, model and month
(`latest_monthly_predictions`): a window that runs to now (no `until`) reads those ~10,000
rows, not the window's history (with 1M predictions over a year, the window function over the
last 30 days' 82,000 rows, plus their JSON, was the cost of `/drift` and `/performance`).
The latest row of a key that is in the window is the latest in the window, and a key whose
latest row is older has no row in it, so both ways give the same rows. SQLite, and a window
with an `until`, use one window function (`row_number() OVER (PARTITION BY employee_id ...
ORDER BY created_at DESC, id DESC)`) over the window's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import distinct_on
from sqlmodel import Session, col, select

from persistence.tables import (
    INPUT_COLUMNS,
    LATEST_PREDICTIONS,
    EmployeeRecord,
    LatestMonthlyPrediction,
    MonitoringSnapshot,
    Outcome,
    PredictionRecord,
    Review,
)

OutcomeStatus = Literal["left", "stayed"]
Band = Literal["low", "medium", "high"]
# The high band starts at max(threshold, HIGH_FROM): "more likely to leave than to stay".
HIGH_FROM = 0.5
# The features `latest_predictions` keeps as columns (a model using another reads history).
KEPT_FEATURES = frozenset({"departement", "poste", *INPUT_COLUMNS})
_SEPARATOR = "\x1f"  # the ASCII unit separator


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


def outcome_columns(session: Session) -> list[list[Any]]:
    """Every recorded fact as columns (employee_id, status, event_date; in no particular
    order; on PostgreSQL as text): one or two per employee, bounded by the workforce, not by
    the history (read whole rather than by a list of 10,000 ids, whose bound parameters cost
    more than the rows)."""
    if session.get_bind().dialect.name != "postgresql":
        statement = sa.select(
            col(Outcome.employee_id), col(Outcome.status), col(Outcome.event_date)
        ).order_by(col(Outcome.id))
        return _columns(session, statement)
    # Packed (6,000 facts: ~8 ms and a score of garbage collections as rows), the dates as
    # ISO text (numpy reads them ten times faster than date objects).
    days = sa.func.to_char(col(Outcome.event_date), "YYYY-MM-DD")
    rows = sa.select(col(Outcome.employee_id), col(Outcome.status), days).subquery()
    packed = _packed(session, rows)
    return packed if packed is not None else _columns(session, sa.select(rows))


def _columns(session: Session, statement: Any) -> list[list[Any]]:
    """The rows of a Core select as columns, on the session's connection: the ORM's result
    machinery cost ~50 ms for the ~24,000 rows (latest per month, outcomes) of a 30-day
    `/performance` at 1M predictions. (One row of `array_agg`s instead, parsed by the driver,
    measured no faster: 106-109 against 95-104 ms for a 30-day `/drift`'s rows.)"""
    rows = session.connection().execute(statement).all()
    return [list(c) for c in zip(*rows, strict=True)] or [[] for _ in statement.selected_columns]


def _packed(session: Session, rows: Any) -> list[list[str]] | None:
    """The columns of `rows` (a subquery) as text, a column's nulls left out, each read as one
    `string_agg` and split here: 10,000 rows of 29 values decoded one by one by the driver
    took ~33 ms, the 29 texts ~17 ms. Columns without nulls stay aligned row by row: one
    SELECT's aggregates advance together over the same input rows (and a test compares the
    answers with SQLite's, read as rows); one text per row instead, joined in SQL and split
    into a numpy array, measured slower (perf 99 against 76 ms p50). None when a value holds
    the separator (each column's count proves it; none of what is read so can: numbers, days,
    booleans and the contract's fixed categories), for the caller to read the rows instead."""
    texts = [sa.func.string_agg(sa.cast(c, sa.Text), _SEPARATOR) for c in rows.c]
    counts = [sa.func.count(c) for c in rows.c]
    found = session.connection().execute(sa.select(*texts, *counts)).one()
    columns = [text.split(_SEPARATOR) if text is not None else [] for text in found[: len(texts)]]
    if any(len(c) != count for c, count in zip(columns, found[len(texts) :], strict=True)):
        return None
    return columns


def _kept(session: Session, until: datetime | None) -> bool:
    """Whether the trigger-kept latest rows answer a window ending at `until`."""
    return until is None and session.get_bind().dialect.name == "postgresql"


def _newest_first(created: Any, identifier: Any) -> tuple[Any, Any]:
    return created.desc(), identifier.desc()


# A timestamp's UTC calendar day or month as text: PostgreSQL's `to_char` and SQLite's
# `strftime` patterns (SQLite stores UTC already).
_UTC_TEXT = {"day": ("YYYY-MM-DD", "%Y-%m-%d"), "month": ("YYYY-MM", "%Y-%m")}


def _utc(session: Session, created: Any, unit: Literal["day", "month"]) -> Any:
    postgresql_pattern, sqlite_pattern = _UTC_TEXT[unit]
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", created), postgresql_pattern)
    return sa.func.strftime(sqlite_pattern, created)


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
) -> list[list[Any]]:
    """For each employee and cohort month (UTC), the latest prediction in the window: columns
    employee_id, day (its UTC calendar day, ``YYYY-MM-DD``), probability, prediction,
    threshold; as text on PostgreSQL when read packed (`_packed`: ~18,500 rows for a 30-day
    window at 1M predictions, 26 ms as rows of timestamps)."""
    if _kept(session, until):
        kept = _kept_monthly(session, model_tag, since)
        return _packed(session, kept.subquery()) or _columns(session, kept)
    p = PredictionRecord
    month = _utc(session, col(p.created_at), "month")
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(col(p.employee_id), month),
            order_by=_newest_first(col(p.created_at), col(p.id)),
        )
        .label("rank")
    )
    inner = _window(
        sa.select(
            col(p.employee_id),
            _utc(session, col(p.created_at), "day").label("day"),
            col(p.probability),
            col(p.prediction),
            col(p.threshold),
            rank,
        ).where(col(p.employee_id).is_not(None)),
        model_tag,
        since,
        until,
    ).subquery()
    statement = sa.select(*(c for c in inner.c if c.name != "rank")).where(inner.c.rank == 1)
    return _columns(session, statement)


def _kept_monthly(session: Session, model_tag: str | None, since: datetime | None) -> Any:
    m = LatestMonthlyPrediction
    statement = sa.select(
        col(m.employee_id),
        _utc(session, col(m.created_at), "day").label("day"),
        col(m.probability),
        col(m.prediction),
        col(m.threshold),
    )
    if model_tag is not None:
        statement = statement.where(col(m.model_tag) == model_tag)
    else:  # the newest over every model's newest
        statement = statement.ext(distinct_on(col(m.employee_id), col(m.month))).order_by(
            col(m.employee_id),
            col(m.month),
            *_newest_first(col(m.created_at), col(m.prediction_id)),
        )
    if since is not None:
        statement = statement.where(col(m.created_at) >= since)
    return statement


def _kept_latest(model_tag: str | None, *columns: str) -> Any:
    """The newest row per employee of `model_tag`, or over every model (a subquery), with
    `columns` and the keys (only what the caller reads: the 27 feature columns carried through
    the sort of every model's rows cost the at-risk list ~13 ms)."""
    latest = LATEST_PREDICTIONS
    keys = ("employee_id", "model_tag", "prediction_id", "created_at")
    statement = sa.select(*(latest.c[name] for name in dict.fromkeys((*keys, *columns))))
    if model_tag is not None:
        return statement.where(latest.c.model_tag == model_tag).subquery()
    return (
        statement.ext(distinct_on(latest.c.employee_id))
        .order_by(latest.c.employee_id, *_newest_first(latest.c.created_at, latest.c.prediction_id))
        .subquery()
    )


def latest_inputs(
    session: Session,
    model_tag: str | None,
    since: datetime | None,
    until: datetime | None,
    features: Sequence[str],
) -> list[list[Any]]:
    """The latest prediction of each employee in the window, plus every row that names no
    employee (each counts once): columns probability, prediction, *features, each feature
    as the text of the stored input's value (SQLite: its JSON value), a missing value None
    or, on PostgreSQL, left out (a feature's column then has fewer values than there are
    rows). On PostgreSQL the latest rows' features are columns of `latest_predictions`
    (migration 0010: ~10 ms of SQL for 10,000 employees where one `jsonb_to_record` per input
    took ~40 ms), read packed (`_packed`); the few rows that name no employee are read
    from their JSON (one `jsonb_to_record` each: a `->>` per feature decompressed it 27
    times, 130 ms for 10,000 rows).
    """
    p = PredictionRecord
    if _kept(session, until) and set(features) <= KEPT_FEATURES:
        latest = _kept_latest(model_tag, "probability", "prediction", *features)
        named = sa.select(
            latest.c.probability, latest.c.prediction, *(latest.c[name] for name in features)
        )
        if since is not None:
            named = named.where(latest.c.created_at >= since)
        anonymous = _window(
            _with_features(
                sa.select(col(p.probability), col(p.prediction)), p, col(p.input), features
            ).where(col(p.employee_id).is_(None)),
            model_tag,
            since,
            None,
        )
        rows = sa.union_all(named, anonymous)
        packed = _packed(session, rows.subquery())
        if packed is None:
            return _columns(session, rows)
        probability, prediction, *texts = packed
        return [[float(v) for v in probability], [int(v) for v in prediction], *texts]
    rank = (
        sa.func.row_number()
        .over(
            partition_by=col(p.employee_id),
            order_by=_newest_first(col(p.created_at), col(p.id)),
        )
        .label("rank")
    )
    values = [p.input[name].as_string().label(f"f{i}") for i, name in enumerate(features)]
    inner = _window(
        sa.select(col(p.employee_id), col(p.probability), col(p.prediction), *values, rank),
        model_tag,
        since,
        until,
    ).subquery()
    statement = sa.select(
        inner.c.probability, inner.c.prediction, *(inner.c[f"f{i}"] for i in range(len(features)))
    ).where(sa.or_(inner.c.rank == 1, inner.c.employee_id.is_(None)))
    return _columns(session, statement)


def _with_features(statement: Any, source: Any, input: Any, features: Sequence[str]) -> Any:
    """`statement` on `source`, plus one text column per feature of `source`'s JSONB `input`
    (PostgreSQL; a function in FROM sees the items before it)."""
    record = (
        sa.func.jsonb_to_record(input)
        .table_valued(*(sa.column(name, sa.Text) for name in features))
        .render_derived(with_types=True)
    )
    return (
        statement.add_columns(*(record.c[name] for name in features))
        .select_from(source)
        .join(record, sa.true())
    )


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

    Bands are computed from each row's own threshold, as the service answered them. On
    PostgreSQL from `latest_predictions` (10,000 rows for 10,000 employees, the page's
    top factors fetched by id), elsewhere with a window function over the history.
    """
    latest = _at_risk_kept(filters) if _kept(session, None) else _at_risk_history(filters)
    statement = sa.select(latest)
    for name in ("departement", "poste", "band"):
        value = getattr(filters, name)
        if value is not None:
            statement = statement.where(latest.c[name] == value)
    total = int(
        session.execute(select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    )
    page = (
        statement.order_by(latest.c.probability.desc(), latest.c.employee_id)
        .offset(offset)
        .limit(limit)
        .subquery()
    )
    p = PredictionRecord
    rows = [
        dict(row._mapping)
        for row in session.execute(
            sa.select(page, col(p.top_factors))
            .join(p, col(p.id) == page.c.prediction_id)
            .order_by(page.c.probability.desc(), page.c.employee_id)
        )
    ]
    reviews = _latest_reviews(session, [r["prediction_id"] for r in rows])
    for row in rows:
        row["latest_review"] = reviews.get(row["prediction_id"])
    return total, rows


def _at_risk_kept(filters: AtRiskFilter) -> Any:
    latest = _kept_latest(
        filters.model_tag, "probability", "threshold", "departement", "poste", "band"
    )
    return sa.select(
        latest.c.prediction_id,
        latest.c.employee_id,
        latest.c.probability,
        latest.c.threshold,
        latest.c.created_at.label("scored_at"),
        latest.c.model_tag,
        latest.c.departement,
        latest.c.poste,
        latest.c.band,
    ).subquery()


def _at_risk_history(filters: AtRiskFilter) -> Any:
    p = PredictionRecord
    rank = (
        sa.func.row_number()
        .over(partition_by=col(p.employee_id), order_by=_newest_first(col(p.created_at), col(p.id)))
        .label("rank")
    )
    inner = sa.select(
        col(p.id).label("prediction_id"),
        col(p.employee_id),
        col(p.probability),
        col(p.threshold),
        col(p.created_at).label("scored_at"),
        col(p.model_tag),
        p.input["departement"].as_string().label("departement"),
        p.input["poste"].as_string().label("poste"),
        _band(col(p.probability), col(p.threshold)).label("band"),
        rank,
    ).where(col(p.employee_id).is_not(None))
    if filters.model_tag is not None:
        inner = inner.where(col(p.model_tag) == filters.model_tag)
    ranked = inner.subquery()
    return (
        sa.select(*(c for c in ranked.c if c.name != "rank")).where(ranked.c.rank == 1).subquery()
    )


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
