"""The audit issue's command line, on SQLite and PostgreSQL: keys with several roles, retention
(`db purge`), the stop switch (`scoring`), and the service's insert-only PostgreSQL role
(`db upgrade` / `db roles`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

import db
from cli.keys import ensure_local_key
from cli.main import main as attrition
from persistence import audit
from persistence.engine import build_engine, session_scope
from persistence.keys import touch_key
from persistence.predictions import PredictionRow, write_predictions
from persistence.tables import (
    AccessEvent,
    ApiKey,
    AuditEvent,
    EmployeeRecord,
    PredictionRecord,
    Review,
    ScoringSwitch,
    UiSession,
    utcnow,
)
from settings import get_settings
from tests.support import databases
from tests.support.rows import prediction_row

ENV = ("DATABASE_URL", "ATTRITION_ADMIN_DATABASE_URL", "ATTRITION_RETENTION_FLOOR_DAYS")


def use(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Run the CLI in process with exactly these of `ENV` set."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path, monkeypatch) -> Iterator[str]:
    """A migrated database the CLI uses (DATABASE_URL, one role for everything)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    db.upgrade(url)
    use(monkeypatch, DATABASE_URL=url)
    yield url
    get_settings.cache_clear()


def _prediction(days_ago: float) -> PredictionRow:
    return prediction_row(
        created_at=utcnow() - timedelta(days=days_ago), input={"departement": "Consulting"}
    )


def _counts(output: str) -> dict[str, int]:
    """The `table  count` lines of a purge's output."""
    return {
        words[0]: int(words[1])
        for line in output.splitlines()
        if line.startswith("  ") and len(words := line.split()) == 2
    }


def _rows(url: str) -> dict[str, set]:
    engine = build_engine(url)
    with Session(engine) as session:
        rows = {
            "predictions": set(session.exec(select(PredictionRecord.id))),
            "reviews": set(session.exec(select(Review.id))),
            "access_events": set(session.exec(select(AccessEvent.route))),
            "audit_events": set(session.exec(select(AuditEvent.endpoint))),
            "ui_sessions": set(session.exec(select(UiSession.client))),
        }
    engine.dispose()
    return rows


# --- keys -----------------------------------------------------------------------------------


def test_keys_hold_several_roles_stored_and_listed(database, capsys):
    assert attrition(["keys", "create", "hr-review", "--role", "predict", "--role", "review"]) == 0
    assert "with roles predict, review" in capsys.readouterr().out
    assert attrition(["keys", "create", "plain"]) == 0  # no --role: predict
    assert attrition(["keys", "create", "auditor", "--role", "audit", "--role", "audit"]) == 0
    capsys.readouterr()
    assert attrition(["keys", "list"]) == 0
    listed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert listed["hr-review"] == "predict,review"
    assert listed["plain"] == "predict"
    assert listed["auditor"] == "audit"
    engine = build_engine(database)
    with Session(engine) as session:
        stored = {k.name: k.roles for k in session.exec(select(ApiKey))}
    engine.dispose()
    assert stored == {"hr-review": "predict,review", "plain": "predict", "auditor": "audit"}
    with pytest.raises(SystemExit) as refused:
        attrition(["keys", "create", "boss", "--role", "admin"])
    assert refused.value.code == 2


def test_the_local_key_of_make_serve_may_do_everything(database, capsys):
    ensure_local_key("3000", 1)
    printed = capsys.readouterr().out
    assert "with roles audit, predict, review" in printed
    engine = build_engine(database)
    with Session(engine) as session:
        (key,) = session.exec(select(ApiKey)).all()
    engine.dispose()
    assert key.roles == "audit,predict,review"
    ensure_local_key("3000", 1)  # one is enough
    assert "exists" in capsys.readouterr().out


# --- purge ----------------------------------------------------------------------------------


def test_purge_below_the_retention_floor_is_refused(database, monkeypatch, capsys):
    engine = build_engine(database)
    with session_scope(engine) as session:
        write_predictions(session, [_prediction(days_ago=1000)])
    engine.dispose()
    for args in (["--older-than", "182"], ["--older-than", "30", "--dry-run"]):
        assert attrition(["db", "purge", *args]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and "183 days" in error, error
        assert "ATTRITION_RETENTION_FLOOR_DAYS" in error
    use(monkeypatch, DATABASE_URL=database, ATTRITION_RETENTION_FLOOR_DAYS="400")
    assert attrition(["db", "purge", "--older-than", "365"]) == 2
    assert "400 days" in capsys.readouterr().err
    assert len(_rows(database)["predictions"]) == 1  # nothing was deleted


def test_purge_counts_then_deletes_exactly_the_rows_older_than_days(database, monkeypatch, capsys):
    old = [_prediction(days_ago=400 + i) for i in range(3)]
    new = [_prediction(days_ago=10), _prediction(days_ago=364)]
    engine = build_engine(database)
    with session_scope(engine) as session:
        write_predictions(session, old + new)
        now = utcnow()
        reviews = [
            Review(prediction_id=old[0].id, decision="agree", reviewer="a", created_at=now),
            Review(prediction_id=old[0].id, decision="disagree", reviewer="b", created_at=now),
            # A recent review of an old prediction leaves with it.
            Review(prediction_id=old[1].id, decision="no_action", reviewer="a", created_at=now),
            Review(prediction_id=new[0].id, decision="agree", reviewer="a", created_at=now),
        ]
        session.add_all(reviews)
        for days, route in ((400, "old-1"), (366, "old-2"), (300, "new-1")):
            session.add(AccessEvent(created_at=now - timedelta(days=days), route=route))
        for days, route in ((500, "old"), (100, "new-1"), (0, "new-2")):
            session.add(
                AuditEvent(
                    created_at=now - timedelta(days=days),
                    method="POST",
                    endpoint=route,
                    status=401,
                    error="unauthorized",
                )
            )
        for days, client in ((400, "old"), (200, "new")):  # sign-ins to the HR page
            session.add(
                UiSession(
                    token_hash=uuid.uuid4().hex,
                    key_id="k",
                    client=client,
                    csrf_token="c",
                    created_at=now - timedelta(days=days),
                    last_seen_at=now - timedelta(days=days),
                    expires_at=now - timedelta(days=days) + timedelta(hours=8),
                )
            )
    engine.dispose()
    expected = {
        "reviews": 3,
        "shadow_predictions": 0,
        "predictions": 3,
        "access_events": 2,
        "audit_events": 1,
        "ui_sessions": 1,
    }

    assert attrition(["db", "purge", "--older-than", "365", "--dry-run"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("would delete") and _counts(output) == expected
    assert len(_rows(database)["predictions"]) == 5  # a dry run deletes nothing

    monkeypatch.setattr(audit, "PURGE_BATCH", 2)  # several transactions
    assert attrition(["db", "purge", "--older-than", "365"]) == 0
    output = capsys.readouterr().out
    assert "in 2 batch(es)" in output and _counts(output) == expected
    assert _rows(database) == {
        "predictions": {p.id for p in new},
        "reviews": {reviews[3].id},
        "access_events": {"new-1"},
        "audit_events": {"new-1", "new-2"},
        "ui_sessions": {"new"},
    }

    assert attrition(["db", "purge", "--older-than", "365"]) == 0
    assert set(_counts(capsys.readouterr().out).values()) == {0}


# --- the stop switch ------------------------------------------------------------------------


def test_suspend_and_resume_are_stored_with_who_and_why(database, monkeypatch, capsys):
    engine = build_engine(database)

    def switch() -> ScoringSwitch | None:
        with Session(engine) as session:
            return audit.current_switch(session)

    assert attrition(["scoring", "status"]) == 0
    assert "never suspended" in capsys.readouterr().out

    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    assert attrition(["scoring", "suspend", "--reason", "drift under investigation"]) == 0
    assert "SUSPENDED" in capsys.readouterr().out
    state = switch()
    assert state is not None and state.suspended
    assert (state.reason, state.actor) == ("drift under investigation", "carol")
    assert attrition(["scoring", "status"]) == 0
    status = capsys.readouterr().out
    assert "SUSPENDED" in status and "carol: drift under investigation" in status

    assert attrition(["scoring", "resume", "--actor", "dpo@technova", "--reason", "fixed"]) == 0
    state = switch()
    assert state is not None and not state.suspended
    assert (state.reason, state.actor) == ("fixed", "dpo@technova")
    assert attrition(["scoring", "resume"]) == 0  # not suspended: nothing written
    assert "nothing to resume" in capsys.readouterr().out

    assert attrition(["scoring", "suspend", "--reason", "   "]) == 2
    assert "--reason" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        attrition(["scoring", "suspend"])  # --reason is required
    with Session(engine) as session:
        assert len(session.exec(select(ScoringSwitch)).all()) == 2
    engine.dispose()


# --- database roles -------------------------------------------------------------------------


def test_every_table_has_its_service_privileges_decided(tmp_path):
    """A new table must be given an entry in db.SERVICE_PRIVILEGES (empty for none)."""
    url = f"sqlite:///{tmp_path / 'tables.db'}"
    db.upgrade(url)
    engine = build_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert tables == set(db.SERVICE_PRIVILEGES)
    for table in ("predictions", "reviews"):
        assert set(db.SERVICE_PRIVILEGES[table]) == {"SELECT", "INSERT"}, table


def test_sqlite_has_no_roles_and_says_so(tmp_path, monkeypatch, capsys):
    use(monkeypatch, DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}")
    assert attrition(["db", "roles"]) == 2
    assert "SQLite has no roles" in capsys.readouterr().err


@pytest.fixture
def two_roles(postgres_server, monkeypatch) -> Iterator[tuple[str, str]]:
    """A database owned by a fresh non-superuser admin role (CREATEROLE, as a managed
    PostgreSQL's main user) and the URL of a service role still to create: (admin, service).
    Roles are cluster-wide: both are dropped at the end, after the database."""
    suffix = uuid.uuid4().hex[:8]
    admin, service = f"attrition_test_admin_{suffix}", f"attrition_test_service_{suffix}"
    server = make_url(postgres_server)
    superuser = psycopg2.connect(databases.libpq(postgres_server), connect_timeout=3)
    superuser.autocommit = True
    url = databases.create_database(postgres_server)
    name = make_url(url).database
    try:
        with superuser.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {admin} LOGIN CREATEROLE PASSWORD 'admin-pw'")
            cursor.execute(f'ALTER DATABASE "{name}" OWNER TO {admin}')
        urls = tuple(
            server.set(username=user, password=password, database=name).render_as_string(
                hide_password=False
            )
            for user, password in ((admin, "admin-pw"), (service, "service-pw"))
        )
        use(monkeypatch, ATTRITION_ADMIN_DATABASE_URL=urls[0], DATABASE_URL=urls[1])
        yield urls
    finally:
        get_settings.cache_clear()
        databases.drop_database(postgres_server, url)
        with closing(superuser), superuser.cursor() as cursor:
            cursor.execute(f"DROP ROLE IF EXISTS {service}")
            cursor.execute(f"DROP ROLE IF EXISTS {admin}")


def _refused(engine: sa.Engine, statement: sa.Executable) -> None:
    """`statement`, run as `engine`'s role, fails for want of the privilege."""
    with pytest.raises(sa.exc.ProgrammingError) as raised, engine.begin() as connection:
        connection.execute(statement)
    assert isinstance(raised.value.orig, psycopg2.errors.InsufficientPrivilege), raised.value


@pytest.mark.postgres
def test_the_service_role_may_add_and_read_history_but_never_rewrite_it(two_roles, capsys):
    admin_url, service_url = two_roles
    # The migration Job's command: migrate as the admin, create the service's role, grant.
    assert attrition(["db", "upgrade"]) == 0
    assert f"service role '{make_url(service_url).username}' (created" in capsys.readouterr().out
    assert attrition(["db", "roles"]) == 0  # again: idempotent, and resets the password
    assert "(exists, password set)" in capsys.readouterr().out
    assert attrition(["keys", "create", "svc-test", "--role", "review"]) == 0  # as the admin

    service = build_engine(service_url)
    prediction = _prediction(days_ago=1)
    with session_scope(service) as session:  # COPY, as the service does it
        write_predictions(session, [prediction])
    with session_scope(service) as session:
        review = audit.add_review(session, prediction.id, "agree", "", "svc-test")
        audit.record_access(session, [audit.access_event("svc-test", "/history", None, [1])])
        audit.record_refusals(
            session, [AuditEvent(method="GET", endpoint="/x", status=401, error="unauthorized")]
        )
        (key_id,) = session.exec(select(ApiKey.key_id)).all()
        touch_key(session, key_id, utcnow())
        assert session.exec(select(PredictionRecord.id)).all() == [prediction.id]
        assert audit.current_switch(session) is None
    assert review is not None

    predictions, reviews = PredictionRecord.__table__, Review.__table__
    for table, column in ((predictions, "probability"), (reviews, "decision")):
        _refused(service, sa.update(table).values({column: table.c[column]}))
        _refused(service, sa.delete(table))
        _refused(service, sa.text(f"TRUNCATE {table.name}"))
    _refused(service, sa.update(ApiKey.__table__).values(roles="audit,predict,read,review"))
    _refused(service, sa.delete(AccessEvent.__table__))
    _refused(service, sa.delete(AuditEvent.__table__))
    _refused(service, sa.insert(EmployeeRecord.__table__).values(id=1, features={}))
    _refused(
        service,
        sa.insert(ScoringSwitch.__table__).values(
            created_at=utcnow(), suspended=False, reason="", actor="service"
        ),
    )
    service.dispose()

    # What the service may not do, the admin does: purge and switch.
    assert attrition(["scoring", "suspend", "--reason", "test", "--actor", "t"]) == 0
    admin = build_engine(admin_url)
    with session_scope(admin) as session:
        session.execute(
            sa.update(PredictionRecord.__table__).values(created_at=utcnow() - timedelta(days=999))
        )
    admin.dispose()
    assert attrition(["db", "purge", "--older-than", "365"]) == 0
    assert _counts(capsys.readouterr().out)["predictions"] == 1


@pytest.mark.postgres
def test_db_roles_refuses_a_service_role_that_could_undo_its_limits(
    two_roles, postgres_server, capsys
):
    admin_url, service_url = two_roles
    assert attrition(["db", "upgrade"]) == 0
    # The admin itself as the service: revoking its own rights would be no limit at all.
    with pytest.MonkeyPatch.context() as patch:
        use(patch, ATTRITION_ADMIN_DATABASE_URL=admin_url, DATABASE_URL=admin_url)
        capsys.readouterr()
        assert attrition(["db", "roles"]) == 2
        assert "same PostgreSQL role" in capsys.readouterr().err
    get_settings.cache_clear()
    # A service role owning a table could grant itself anything back.
    database = make_url(postgres_server).set(database=make_url(admin_url).database)
    superuser = psycopg2.connect(databases.libpq(database.render_as_string(False)))
    with closing(superuser), superuser, superuser.cursor() as cursor:
        cursor.execute("CREATE TABLE stray (id int)")
        cursor.execute(f"ALTER TABLE stray OWNER TO {make_url(service_url).username}")
    assert attrition(["db", "roles"]) == 2
    error = capsys.readouterr().err
    assert "owns" in error and "stray" in error
