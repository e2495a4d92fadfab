"""The predictor (serving/predictor.py) in process, with the trained model and a real database:
the rows of a batch are committed before its answers exist, or there are no answers."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

import prometheus_client
import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

import db
from persistence.engine import build_engine, session_scope
from persistence.queries import upsert_employees
from persistence.tables import PredictionRecord
from scoring.scorer import Scorer
from serving.errors import Unavailable, Unprocessable
from serving.predictor import Predictor, ScoringRequest
from tests.support.databases import libpq
from tests.support.payloads import ANONYMOUS, RAW
from training.contract import Employee, employees_frame
from training.store import StoredModel, load

SEEDED_ID = 1  # RAW's id_employee
DB_ERRORS = "attrition_db_errors_total"


@pytest.fixture(scope="module")
def stored(trained_tag: str) -> StoredModel:
    return load(trained_tag)


@pytest.fixture(scope="module")
def scorer(stored: StoredModel) -> Scorer:
    return stored.scorer()


@dataclass
class Database:
    backend: str
    url: str
    engine: sa.Engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'predictor.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    db.upgrade(url)
    engine = build_engine(url)
    with session_scope(engine) as session:
        upsert_employees(session, {SEEDED_ID: RAW})
    yield Database(request.param, url, engine)
    engine.dispose()


def employee(**changes: object) -> Employee:
    return Employee.model_validate(RAW | changes)


def request(
    person: Employee,
    request_id: str,
    client: str | None = "tests",
    endpoint: str = "/predict",
    employee_id: int | None = None,
) -> ScoringRequest:
    return ScoringRequest(person, request_id, client, endpoint, employee_id)


def stored_rows(url: str) -> dict[uuid.UUID, PredictionRecord]:
    """What another process would see: a separate engine, committed rows only."""
    engine = build_engine(url)
    try:
        with Session(engine) as session:
            return {r.id: r for r in session.exec(select(PredictionRecord))}
    finally:
        engine.dispose()


def db_errors() -> float:
    return prometheus_client.REGISTRY.get_sample_value(DB_ERRORS) or 0.0


def test_answers_come_back_in_order_and_their_rows_are_committed(database, scorer, stored):
    predictor = Predictor(scorer, stored.tag, database.engine)
    employees = [employee(age=age) for age in (22, 41, 58)]
    requests = [
        ScoringRequest(e, f"req-{i}", "client-a", "/predict_batch") for i, e in enumerate(employees)
    ]
    answers = predictor.score_and_store(requests, "predict_batch")

    rows = stored_rows(database.url)  # visible to others as soon as the call returns
    assert set(rows) == {a.prediction_id for a in answers}
    expected = stored.pipeline.predict_proba(employees_frame(employees))[:, 1]
    assert {rows[a.prediction_id].batch_id for a in answers} == {
        rows[answers[0].prediction_id].batch_id
    }
    for i, (answer, person, probability) in enumerate(
        zip(answers, employees, expected, strict=True)
    ):
        row = rows[answer.prediction_id]
        assert answer.probability == pytest.approx(probability, abs=1e-9)
        assert row.probability == answer.probability
        assert row.prediction == answer.prediction == int(probability >= stored.threshold)
        assert answer.label == ("Oui" if answer.prediction else "Non")
        assert row.threshold == answer.threshold == stored.threshold
        assert row.model_tag == answer.model_tag == stored.tag
        assert row.request_id == f"req-{i}"
        assert (row.client, row.endpoint) == ("client-a", "/predict_batch")
        assert row.input == person.model_dump(mode="json", exclude_none=True)
        # The row keeps every factor the answer shows, as shown (the row may hold more keys).
        answered = [f.model_dump() for f in answer.top_factors]
        assert len(row.top_factors) == len(answered)
        for kept, shown in zip(row.top_factors, answered, strict=True):
            assert {k: kept[k] for k in shown} == shown
        assert row.latency_ms <= answer.latency_ms


def test_each_row_keeps_who_asked_and_through_which_route(database, scorer, stored):
    """The batcher scores callers of /predict and /predict_by_id together: each row keeps its
    own caller and route, whatever its neighbours'. A key's name is free text: on PostgreSQL
    the COPY path must carry a tab, a backslash and non-ASCII through unchanged."""
    predictor = Predictor(scorer, stored.tag, database.engine)
    odd = "équipe\\rh\tnord \\N"
    requests = [
        request(employee(), "a", "alice", "/predict"),
        request(employee(age=30), "b", odd, "/predict"),
        request(employee(), "c", "bob", "/predict_by_id", employee_id=SEEDED_ID),
        request(employee(age=50), "d", None, "/predict_batch"),
    ]
    answers = predictor.score_and_store(requests, "predict")
    rows = stored_rows(database.url)
    by_request = {rows[a.prediction_id].request_id: rows[a.prediction_id] for a in answers}
    assert {k: (r.client, r.endpoint) for k, r in by_request.items()} == {
        "a": ("alice", "/predict"),
        "b": (odd, "/predict"),
        "c": ("bob", "/predict_by_id"),
        "d": (None, "/predict_batch"),
    }


def test_an_unknown_employee_id_is_stored_as_null(database, scorer, stored):
    predictor = Predictor(scorer, stored.tag, database.engine)
    requests = [
        request(employee(), "known"),  # id_employee 1 is seeded
        request(employee(id_employee=424242), "unknown"),
        request(Employee.model_validate(ANONYMOUS), "anonymous"),
        request(Employee.model_validate(ANONYMOUS), "by-id", employee_id=SEEDED_ID),
    ]
    answers = predictor.score_and_store(requests, "predict")
    rows = stored_rows(database.url)
    by_request = {rows[a.prediction_id].request_id: rows[a.prediction_id] for a in answers}
    assert by_request["known"].employee_id == SEEDED_ID
    assert by_request["unknown"].employee_id is None
    assert by_request["unknown"].input["id_employee"] == 424242  # the caller's id is kept
    assert by_request["anonymous"].employee_id is None
    assert by_request["by-id"].employee_id == SEEDED_ID


def test_an_employee_id_past_the_column_is_an_unknown_employee(database, scorer, stored):
    """The contract bounds `id_employee` below only; `employees.id` is 32-bit. No employee has
    a larger id, so the row keeps NULL, as for any unknown employee: not a database error that
    would fail every caller batched with this one."""
    predictor = Predictor(scorer, stored.tag, database.engine)
    huge = employee().model_copy(update={"id_employee": 10**30})
    answers = predictor.score_and_store(
        [request(employee(), "neighbour"), request(huge, "huge")], "predict"
    )
    rows = stored_rows(database.url)
    assert rows[answers[0].prediction_id].employee_id == SEEDED_ID
    assert rows[answers[1].prediction_id].employee_id is None
    assert rows[answers[1].prediction_id].input["id_employee"] == 10**30


def test_a_database_outage_is_a_503_and_leaves_no_row(database, scorer, stored):
    """The database stops answering in the middle of the write: no answer, no row."""
    predictor = Predictor(scorer, stored.tag, database.engine)
    requests = [request(employee(age=30 + i), f"outage-{i}") for i in range(5)]
    errors = db_errors()
    with pytest.raises(Unavailable) as refused:
        if database.backend == "sqlite":
            _write_while_sqlite_is_locked(database, predictor, requests)
        else:
            _write_while_postgres_kills_the_connection(database, predictor, requests)
    assert refused.value.status == 503
    assert refused.value.code == "database_unavailable"
    assert "not returned" in refused.value.message
    assert stored_rows(database.url) == {}
    assert db_errors() == errors + 1

    # The pool recovers: the next batch is written and answered.
    answers = predictor.score_and_store(requests, "predict")
    assert set(stored_rows(database.url)) == {a.prediction_id for a in answers}


def _write_while_sqlite_is_locked(database, predictor, requests):
    path = make_url(database.url).database
    # Another writer holds the database; our writer gives up after 100 ms instead of 10 s.
    sa.event.listen(
        database.engine,
        "connect",
        lambda connection, _record: connection.execute("PRAGMA busy_timeout=100"),
    )
    database.engine.dispose()
    with closing(sqlite3.connect(path, isolation_level=None)) as blocker:
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            predictor.score_and_store(requests, "predict")
        finally:
            blocker.execute("ROLLBACK")


def _write_while_postgres_kills_the_connection(database, predictor, requests):
    """Hold the table so the write blocks inside its transaction, then kill that backend."""
    with (
        closing(psycopg2.connect(libpq(database.url))) as holder,
        closing(psycopg2.connect(libpq(database.url))) as admin,
    ):
        admin.autocommit = True
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        try:
            with ThreadPoolExecutor(1) as pool:
                write = pool.submit(predictor.score_and_store, requests, "predict")
                pid = _blocked_backend(admin, holder.get_backend_pid())
                with admin.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
                write.result(timeout=30)
        finally:
            holder.rollback()


def _blocked_backend(admin, holder_pid: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid NOT IN (pg_backend_pid(), %s)",
                (holder_pid,),
            )
            found = cursor.fetchall()
        if found:
            return int(found[0][0])
        time.sleep(0.02)
    raise AssertionError("the write never reached the locked table")


@pytest.mark.postgres
def test_a_value_postgresql_refuses_is_a_422_and_nothing_is_written(
    new_postgres_database, scorer, stored
):
    """JSONB cannot hold U+0000. The contract's patterns refuse it today; should a string field
    ever let it through, the caller gets a 422 naming the body, not a 500 or a 503."""
    url = new_postgres_database()
    db.upgrade(url)
    engine = build_engine(url)
    try:
        predictor = Predictor(scorer, stored.tag, engine)
        poisoned = employee().model_copy(update={"eval_number": "E_1\u0000"})
        requests = [request(employee(), "fine"), request(poisoned, "nul")]
        with pytest.raises(Unprocessable) as refused:
            predictor.score_and_store(requests, "predict_batch")
        assert refused.value.status == 422
        [detail] = refused.value.detail or []
        assert (detail["field"], detail["rule"]) == ("body", "database_range")
        assert stored_rows(url) == {}  # not even the valid row of the batch
    finally:
        engine.dispose()
