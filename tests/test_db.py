"""Migrations, the SQL schema file, seeding, analytics SQL and the keys CLI on real databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

import db
from cli.main import main as attrition
from persistence.engine import build_engine, normalise_url, session_scope
from persistence.errors import StoreRejected, StoreUnavailable
from persistence.predictions import COLUMNS, PredictionRow, write_predictions
from persistence.tables import ApiKey, EmployeeRecord, PredictionRecord
from settings import get_settings
from tests.support.rows import prediction_row

CATALOG = """
SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' '
       || coalesce(character_maximum_length::text, '') || ' ' || is_nullable
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
"""


def catalog(url: str) -> set[tuple[str, str]]:
    engine = build_engine(url)
    with engine.connect() as connection:
        found = {tuple(row) for row in connection.execute(sa.text(CATALOG))}
    engine.dispose()
    return found


@pytest.fixture
def use_database(monkeypatch):
    def use(url: str) -> str:
        monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        return url

    yield use
    get_settings.cache_clear()


def test_schema_sql_equals_the_migrations(new_postgres_database):
    migrated, from_file = new_postgres_database(), new_postgres_database()
    db.upgrade(migrated)
    engine = build_engine(from_file)
    with engine.begin() as connection:
        connection.exec_driver_sql((Path(db.__file__).parent / "schema.sql").read_text())
    engine.dispose()
    assert catalog(from_file) == catalog(migrated)
    engine = build_engine(from_file)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


def test_migrations_go_down_and_up_again_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url)
    from alembic import command

    command.downgrade(db.alembic_config(url), "base")
    assert set(sa.inspect(build_engine(url)).get_table_names()) == {"alembic_version"}
    db.upgrade(url)
    assert {"employees", "predictions", "api_keys", "audit_events"} <= set(
        sa.inspect(build_engine(url)).get_table_names()
    )


def _prediction(employee_id: int | None = None) -> PredictionRow:
    return prediction_row(employee_id=employee_id)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_written_predictions_read_back_unchanged(backend, request, tmp_path):
    """COPY on PostgreSQL, INSERT elsewhere: both must keep every awkward value as it was."""
    url = (
        f"sqlite:///{tmp_path / 'w.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("new_postgres_database")()
    )
    db.upgrade(url)
    awkward = 'a "quoted", comma\nnew line\ttab\rreturn \\ backslash \\N é 日本'
    rows = [_prediction() for _ in range(3)]
    rows[0].input = {"poste": awkward, "departement": "", "note": None, "n": 1.5e-7}
    rows[0].top_factors = [{"feature": awkward, "contribution": -0.1234567890123}]
    rows[0].request_id = ""
    rows[1].model_tag = awkward[:128]
    rows[2].probability = 0.1 + 0.2
    rows[2].employee_id = 999  # names no stored employee: kept as NULL, the row still written
    engine = build_engine(url)
    with session_scope(engine) as session:
        session.add(EmployeeRecord(id=7, features={}))
        session.flush()
        rows[1].employee_id = 7
        write_predictions(session, rows)
    with Session(engine) as session:
        stored = {r.id: r for r in session.exec(select(PredictionRecord))}
    engine.dispose()
    assert set(stored) == {r.id for r in rows}
    assert [stored[r.id].employee_id for r in rows] == [None, 7, None]
    for row in rows:
        record = stored[row.id]
        for name in COLUMNS:
            value, found = getattr(row, name), getattr(record, name)
            if name == "created_at":
                assert found.replace(tzinfo=None) == value.replace(tzinfo=None)
            else:
                assert found == value, name


def test_a_batch_copied_in_many_chunks_reads_back_unchanged(new_postgres_database):
    """COPY's text is encoded as the driver reads it, in chunks, with the values a batch
    repeats escaped once: a batch far over one chunk, sharing awkward values, reads back as
    written, each row its own."""
    url = new_postgres_database()
    db.upgrade(url)
    awkward = "tab\there \\ back\\slash\nnew line \\N é"
    batch_id = uuid.uuid4()
    rows = [_prediction() for _ in range(300)]  # ~1.5 kB each: dozens of 8 kB chunks
    for n, row in enumerate(rows):
        row.batch_id = batch_id
        row.client = awkward if n % 2 else None
        row.request_id = awkward if n % 3 else f"r{n}"
        row.input = {"poste": f"{awkward} {n}", "filler": "x" * 1000}
    engine = build_engine(url)
    with session_scope(engine) as session:
        write_predictions(session, rows)
    with Session(engine) as session:
        stored = {r.id: r for r in session.exec(select(PredictionRecord))}
    engine.dispose()
    assert len(stored) == len(rows)
    for row in rows:
        record = stored[row.id]
        assert (record.client, record.request_id, record.input, record.batch_id) == (
            row.client,
            row.request_id,
            row.input,
            row.batch_id,
        )


def test_a_value_postgresql_refuses_in_copy_is_store_rejected(new_postgres_database):
    """COPY runs on the raw cursor: its errors must still reach callers as persistence's."""
    url = new_postgres_database()
    db.upgrade(url)
    row = _prediction()
    row.input = {"poste": "nul \u0000 byte"}  # JSONB cannot hold U+0000
    engine = build_engine(url)
    with pytest.raises(StoreRejected) as raised, session_scope(engine) as session:
        write_predictions(session, [row])
    assert isinstance(raised.value.__cause__, sa.exc.DataError)
    with Session(engine) as session:
        assert session.exec(select(PredictionRecord)).all() == []
    engine.dispose()


def test_a_connection_lost_during_copy_is_store_unavailable(new_postgres_database):
    url = new_postgres_database()
    db.upgrade(url)
    engine = build_engine(url)
    with pytest.raises(StoreUnavailable) as raised, session_scope(engine) as session:
        pid = session.exec(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        write_predictions(session, [_prediction()])
    cause = raised.value.__cause__
    assert isinstance(cause, sa.exc.OperationalError) and cause.connection_invalidated
    with Session(engine) as session:  # the pool hands out a live connection again
        assert session.exec(select(PredictionRecord)).all() == []
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_seed_is_idempotent_and_keeps_predictions(
    backend, request, tmp_path, generated_dir, use_database
):
    url = use_database(
        f"sqlite:///{tmp_path / 's.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("new_postgres_database")()
    )
    assert attrition(["db", "upgrade"]) == 0
    assert attrition(["db", "seed", "--data-dir", str(generated_dir)]) == 0
    engine = build_engine(url)
    with session_scope(engine) as session:
        first = session.exec(select(EmployeeRecord)).first()
        write_predictions(session, [_prediction(first.id)])
    assert attrition(["db", "seed", "--data-dir", str(generated_dir)]) == 0
    with Session(engine) as session:
        assert len(session.exec(select(EmployeeRecord)).all()) == 600
        assert len(session.exec(select(PredictionRecord)).all()) == 1


def test_analytics_sql_runs_on_postgres_and_agrees_with_the_rows(new_postgres_database):
    url = new_postgres_database()
    db.upgrade(url)
    rows = []
    for i in range(10):
        row = _prediction()
        row.input = {
            "departement": "Commercial" if i < 4 else "Consulting",
            "poste": "Manager",
            "annees_dans_l_entreprise": i,
        }
        row.probability, row.prediction = i / 10, int(i >= 6)
        rows.append(row)
    engine = build_engine(url)
    with session_scope(engine) as session:
        write_predictions(session, rows)
    results = {}
    with engine.connect() as connection:
        for name, sql in db.analytics_queries().items():
            results[name] = [r._asdict() for r in connection.execute(sa.text(sql))]
    assert set(results) == {
        "by_department",
        "by_job",
        "by_seniority_band",
        "by_week",
        "latest_risk_per_employee",
    }
    by_department = {r["departement"]: r for r in results["by_department"]}
    assert by_department["Commercial"]["predictions"] == 4
    assert by_department["Commercial"]["mean_risk"] == pytest.approx(0.15)
    assert by_department["Consulting"]["attrition_rate"] == pytest.approx(4 / 6)
    bands = [(r["seniority_band"], r["predictions"]) for r in results["by_seniority_band"]]
    assert bands == [("0-1 years", 2), ("2-4 years", 3), ("5-9 years", 5)]
    assert sum(r["predictions"] for r in results["by_week"]) == 10


def test_keys_cli_on_a_freshly_upgraded_database(tmp_path, use_database, capsys):
    url = use_database(f"sqlite:///{tmp_path / 'k.db'}")
    assert attrition(["db", "upgrade"]) == 0
    assert attrition(["keys", "create", "hr-app", "--role", "read"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("atk_") and len(key) > 40
    assert attrition(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "hr-app" in listing and key.split(".")[1] not in listing
    assert attrition(["keys", "create", "hr-app"]) == 2
    assert attrition(["keys", "revoke", "hr-app"]) == 0
    with Session(build_engine(url)) as session:
        stored = session.exec(select(ApiKey)).one()
    assert stored.revoked_at is not None and key.split(".")[1] not in stored.model_dump_json()


def test_database_urls_name_the_shipped_driver():
    assert normalise_url("postgresql://u:p@h:5432/d").startswith("postgresql+psycopg2://")
    socket = normalise_url("postgresql://u@/d?host=/var/run/postgresql")
    assert socket == "postgresql+psycopg2://u@/d?host=%2Fvar%2Frun%2Fpostgresql"
    assert normalise_url("sqlite:///var/a.db") == "sqlite:///var/a.db"
