"""Reads that stay fast as history grows (issue 14, item 5): keyset paging of `/history` with a
capped total; the roll-ups and latest-prediction tables PostgreSQL's triggers keep, equal to the
history after writes and after a purge; the same answers from them as from the history (SQLite
reads the history, so both backends are given the same rows and compared)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session

import db
from monitoring.live import live_drift, live_performance
from persistence.audit import purge_batch
from persistence.engine import build_engine, session_scope
from persistence.monitoring import (
    AtRiskFilter,
    OutcomeFact,
    at_risk,
    latest_inputs,
    record_outcomes,
)
from persistence.predictions import PredictionRow, write_predictions
from persistence.queries import (
    HistoryFilter,
    StatsDimension,
    history_page,
    prediction_stats,
    upsert_employees,
)
from persistence.tables import INPUT_COLUMNS
from tests.support.rows import prediction_row
from training.contract import FEATURES

NOW = datetime.now(UTC).replace(microsecond=0)
EMPLOYEES = range(1, 13)
DIMENSIONS: tuple[StatsDimension, ...] = (
    "departement",
    "poste",
    "day",
    "genre",
    "statut_marital",
    "age_band",
)
# A small drift reference over two features (training.reference's layout).
REFERENCE = {
    "positive_rate": 0.2,
    "features": {
        "age": {"type": "numeric", "edges": [30.0, 45.0], "proportions": [0.3, 0.4, 0.3]},
        "departement": {
            "type": "categorical",
            "categories": ["Commercial", "Consulting"],
            "proportions": [0.5, 0.5],
        },
    },
    "score_histogram": {"edges": [i / 10 for i in range(11)], "proportions": [0.1] * 10},
}


def _rows(count: int, seed: int) -> list[PredictionRow]:
    """Rows over 90 days, two models, some without an employee or a grouped field, and
    batches of three sharing one timestamp (ties broken by id)."""
    rng = random.Random(seed)
    rows = []
    moment = NOW
    for i in range(count):
        if i % 3 == 0:
            moment = NOW - timedelta(days=rng.uniform(0, 90))
        features = {
            "departement": rng.choice(["Commercial", "Consulting", "R&D"]),
            "poste": rng.choice(["Manager", "Consultant"]),
            "genre": rng.choice(["F", "M"]),
            "age": rng.randint(20, 60),
        }
        if i % 7 == 0:
            del features[rng.choice(list(features))]
        probability = round(rng.random(), 4)
        rows.append(
            prediction_row(
                created_at=moment,
                employee_id=None if i % 11 == 0 else rng.choice(EMPLOYEES),
                input=features,
                probability=probability,
                prediction=int(probability >= 0.3),
                threshold=0.3,
                model_tag=rng.choice(["m:1", "m:2"]),
            )
        )
    return rows


def _engine_with(url: str, rows: list[PredictionRow]) -> sa.Engine:
    engine = build_engine(url)
    with session_scope(engine) as session:
        upsert_employees(session, {e: {"age": 30} for e in EMPLOYEES})
    for start in range(0, len(rows), 40):  # several statements, as batches arrive
        with session_scope(engine) as session:
            write_predictions(session, [replace(r) for r in rows[start : start + 40]])
    return engine


@pytest.fixture
def engine(migrated_database: str) -> Iterator[sa.Engine]:
    engine = _engine_with(migrated_database, _rows(150, seed=1))
    yield engine
    engine.dispose()


def _newest_first(session: Session, filters: HistoryFilter) -> list[uuid.UUID]:
    return [r.id for r in history_page(session, filters, limit=500).rows]


@pytest.mark.parametrize("filters", [HistoryFilter(), HistoryFilter(employee_id=3)])
def test_after_pages_return_every_row_once_in_order(engine, filters):
    with Session(engine) as session:
        everything = _newest_first(session, filters)
        paged: list[uuid.UUID] = []
        after = None
        while True:
            page = history_page(session, filters, limit=7, after=after)
            paged += [r.id for r in page.rows]
            if page.next_after is None:
                break
            after = page.next_after
    assert paged == everything and len(set(paged)) == len(paged) > 7


def test_the_total_is_exact_up_to_the_cap_then_an_estimate(engine):
    with Session(engine) as session:
        exact = history_page(session, HistoryFilter(), limit=5)
        capped = history_page(session, HistoryFilter(), limit=5, exact_total_up_to=20)
    assert (exact.total, exact.total_is_estimate) == (150, False)
    if engine.dialect.name == "postgresql":  # the planner's estimate, at least the cap + 1
        assert capped.total_is_estimate and capped.total >= 21
    else:  # no cheap estimate: counted
        assert (capped.total, capped.total_is_estimate) == (150, False)


def test_the_history_route_pages_with_next_after(api):
    with session_scope(build_engine(api.url)) as session:
        write_predictions(session, [prediction_row(model_tag="paging:1") for _ in range(5)])
    headers = api.headers(api.keys.read)
    seen, after = [], ""
    while after is not None:
        answer = api.client.get(f"/history?model_tag=paging:1&limit=2{after}", headers=headers)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["total"], body["total_is_estimate"]) == (5, False)
        seen += [item["id"] for item in body["items"]]
        after = f"&after={body['next_after']}" if body["next_after"] else None
    assert len(seen) == len(set(seen)) == 5
    refused = api.client.get("/history?after=not-a-cursor", headers=headers)
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "after"


ROLLUPS = """
SELECT dimension, value, day, model_tag, CAST(sum(count) AS BIGINT),
       CAST(sum(positives) AS BIGINT),
       round(sum(probability_sum)::numeric, 6)
FROM prediction_rollups GROUP BY 1, 2, 3, 4 HAVING sum(count) > 0
"""
HISTORY = """
SELECT d.dimension, d.value, CAST(p.created_at AT TIME ZONE 'UTC' AS DATE), p.model_tag,
       count(*), CAST(sum(p.prediction) AS BIGINT), round(sum(p.probability)::numeric, 6)
FROM predictions p CROSS JOIN LATERAL (VALUES
    ('departement', p.input ->> 'departement'), ('poste', p.input ->> 'poste'),
    ('genre', p.input ->> 'genre'), ('statut_marital', p.input ->> 'statut_marital'),
    ('age_band', CASE WHEN CAST(p.input ->> 'age' AS INTEGER) < 30 THEN '<30'
                      WHEN CAST(p.input ->> 'age' AS INTEGER) < 45 THEN '30-44' ELSE '>=45' END),
    ('day', CAST(CAST(p.created_at AT TIME ZONE 'UTC' AS DATE) AS TEXT))) AS d(dimension, value)
GROUP BY 1, 2, 3, 4
"""
LATEST = """
SELECT DISTINCT ON (employee_id, model_tag) employee_id, model_tag, id, input
FROM predictions WHERE employee_id IS NOT NULL
ORDER BY employee_id, model_tag, created_at DESC, id DESC
"""
KEPT_LATEST = "SELECT employee_id, model_tag, prediction_id, input FROM latest_predictions"
MONTHLY = """
SELECT DISTINCT ON (employee_id, model_tag, 3) employee_id, model_tag,
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM'), id
FROM predictions WHERE employee_id IS NOT NULL
ORDER BY employee_id, model_tag, 3, created_at DESC, id DESC
"""
KEPT_MONTHLY = "SELECT employee_id, model_tag, month, prediction_id FROM latest_monthly_predictions"


def _same(engine: sa.Engine, kept: str, history: str) -> None:
    with engine.connect() as connection:
        assert sorted(map(repr, connection.execute(sa.text(kept)))) == sorted(
            map(repr, connection.execute(sa.text(history)))
        )


@pytest.mark.postgres
def test_the_kept_tables_equal_the_history_after_writes_and_a_purge(new_postgres_database):
    url = new_postgres_database()
    db.upgrade(url)
    engine = _engine_with(url, _rows(300, seed=2))
    try:
        for cutoff_days in (None, 60, 30):
            if cutoff_days is not None:  # a purge, in batches, as `attrition db purge` runs it
                cutoff = NOW - timedelta(days=cutoff_days)
                while True:
                    with session_scope(engine) as session:
                        if not purge_batch(session, cutoff)["predictions"]:
                            break
            _same(engine, ROLLUPS, HISTORY)
            _same(engine, KEPT_LATEST, LATEST)
            _same(engine, KEPT_MONTHLY, MONTHLY)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgresql_from_the_kept_tables_answers_as_sqlite_from_the_history(
    new_postgres_database, tmp_path
):
    rows = _rows(400, seed=3)
    urls = {"sqlite": f"sqlite:///{tmp_path / 'same.db'}", "postgres": new_postgres_database()}
    for url in urls.values():
        db.upgrade(url)
    engines = {backend: _engine_with(url, rows) for backend, url in urls.items()}
    facts = [OutcomeFact(3, "left", (NOW - timedelta(days=20)).date())] + [
        OutcomeFact(e, "stayed", (NOW + timedelta(days=400)).date()) for e in (1, 2, 4, 5)
    ]
    answers = {}
    try:
        for backend, engine in engines.items():
            with session_scope(engine) as session:
                record_outcomes(session, facts, source="tests", client=None)
            with Session(engine) as session:
                answers[backend] = _answers(session)
    finally:
        for engine in engines.values():
            engine.dispose()
    assert answers["postgres"] == _floats_close(answers["sqlite"])


def _answers(session: Session) -> dict[str, object]:
    since = NOW - timedelta(days=30)
    metadata = {"reference": REFERENCE, "metrics": None}
    found: dict[str, object] = {}
    for tag in ("m:1", None):
        found[f"drift {tag}"] = live_drift(
            session, metadata, model_tag=tag, since=since, until=None, min_rows=1
        )
        found[f"performance {tag}"] = live_performance(
            session, metadata, model_tag=tag, since=since, until=None, horizon_days=30,
            threshold=0.3,
        )  # fmt: skip
        for band in (None, "high"):
            total, rows = at_risk(
                session, AtRiskFilter(band=band, model_tag=tag), offset=2, limit=5
            )
            found[f"at-risk {tag} {band}"] = (
                total,
                [
                    (r["prediction_id"], r["band"], r["departement"], len(r["top_factors"]))
                    for r in rows
                ],
            )
    for by in DIMENSIONS:
        groups = prediction_stats(session, by, HistoryFilter(model_tag="m:2"))
        # The backends differ in where NULL sorts (SQLite first, PostgreSQL last).
        found[f"stats {by}"] = sorted(groups, key=lambda g: str(g["group"]))
    return found


def _floats_close(value: object) -> object:
    """Floats as `pytest.approx`: rows summed in another order differ in the last bits (a
    rounding to 9 places still differed when two sums straddled a boundary)."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9, abs=1e-12)
    if isinstance(value, dict):
        return {k: _floats_close(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_floats_close(v) for v in value)
    return value


def test_the_kept_latest_rows_hold_every_contract_feature_as_a_column(migrated_database):
    """`/drift` reads the features from `latest_predictions`' columns; a contract feature
    without one (a contract change without its migration) would send it to the history."""
    assert {"departement", "poste", *INPUT_COLUMNS} == set(FEATURES)
    engine = build_engine(migrated_database)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("latest_predictions")}
    finally:
        engine.dispose()
    assert set(FEATURES) <= columns


@pytest.mark.postgres
def test_a_value_holding_the_column_separator_is_still_one_value(new_postgres_database, tmp_path):
    """PostgreSQL reads a window's features as one joined text per feature (split on the
    unit separator); a value holding that character (impossible through the contract, written
    here directly) must not become two: the rows are read instead, and both backends agree."""
    odd_value = "Com\x1fmercial"
    rows = [
        replace(r, input={**r.input, "departement": odd_value})
        if r.employee_id in (1, 2) and "departement" in r.input
        else r
        for r in _rows(120, seed=4)
    ]
    urls = {"sqlite": f"sqlite:///{tmp_path / 'odd.db'}", "postgres": new_postgres_database()}
    answers = {}
    for backend, url in urls.items():
        db.upgrade(url)
        engine = _engine_with(url, rows)
        try:
            with Session(engine) as session:
                (values,) = latest_inputs(session, None, None, None, ["departement"])[2:]
                assert odd_value in values
                answers[backend] = live_drift(
                    session, {"reference": REFERENCE}, model_tag=None, since=None, until=None,
                    min_rows=1,
                )  # fmt: skip
        finally:
            engine.dispose()
    assert answers["postgres"] == _floats_close(answers["sqlite"])
