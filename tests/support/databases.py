"""PostgreSQL for the tests and the benchmark: find a server, create and drop throw-away
databases, and prepare a database for a service (schema, keys, employees)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pgserver
import psycopg2
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session

import db
from persistence.engine import build_engine, session_scope
from persistence.keys import Role, create_key, revoke_key
from persistence.queries import upsert_employees
from tests.support.http import Key
from training.extracts import load_extracts

TEST_DATABASE_ENV = "TEST_DATABASE_URL"  # CI's PostgreSQL service (.github/workflows/ci.yml)
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
FORCED_DROP_SINCE = 130000  # PostgreSQL 13 added DROP DATABASE ... WITH (FORCE)


def libpq(url: str) -> str:
    """A SQLAlchemy URL (maybe `postgresql+psycopg2://`) as the URI libpq takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(server_url: str) -> Any:
    connection = psycopg2.connect(libpq(server_url), connect_timeout=3)
    connection.autocommit = True
    return connection


def answers(url: str) -> bool:
    try:
        _admin(url).close()
    except psycopg2.Error:
        return False
    return True


def embedded_postgres(folder: Path) -> pgserver.PostgresServer:
    """A PostgreSQL server from the pgserver package; `cleanup()` stops it, keeping `folder`."""
    return pgserver.get_server(folder, cleanup_mode="stop")


@contextmanager
def postgres_server(folder: Path) -> Iterator[str]:
    """TEST_DATABASE_URL, else the local server if it answers, else an embedded one in
    `folder`, stopped on the way out."""
    if url := os.environ.get(TEST_DATABASE_ENV):
        yield url
    elif answers(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
    else:
        server = embedded_postgres(folder)
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def create_database(server_url: str, prefix: str = "attrition_test") -> str:
    """A fresh `<prefix>_<hex>` database on that server: the caller drops it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with closing(_admin(server_url)) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    return libpq(make_url(server_url).set(database=name).render_as_string(hide_password=False))


def drop_database(server_url: str, database_url: str) -> None:
    """Drop it even while connections are open: they are terminated first."""
    name = make_url(database_url).database
    with closing(_admin(server_url)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        force = " WITH (FORCE)" if connection.server_version >= FORCED_DROP_SINCE else ""
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')


@contextmanager
def fresh_database(server_url: str, prefix: str = "attrition_test") -> Iterator[str]:
    """`create_database`, dropped on the way out."""
    url = create_database(server_url, prefix)
    try:
        yield url
    finally:
        drop_database(server_url, url)


@dataclass(frozen=True)
class Keys:
    """One API key per role, and a revoked one."""

    predict: str
    read: str
    revoked: str


def prepare_database(database_url: str, seed_dir: Path | None = None) -> Keys:
    """Migrate, create the keys, and seed the employees of `seed_dir`'s extracts if given."""
    db.upgrade(database_url)
    engine = build_engine(database_url)
    suffix = uuid.uuid4().hex[:6]
    try:
        with session_scope(engine) as session:
            keys = Keys(
                predict=create_key(session, f"tests-predict-{suffix}", "predict"),
                read=create_key(session, f"tests-read-{suffix}", "read"),
                revoked=create_key(session, f"tests-revoked-{suffix}", "predict"),
            )
        with session_scope(engine) as session:
            revoke_key(session, f"tests-revoked-{suffix}")
            if seed_dir is not None:
                employees = load_extracts(seed_dir).employees
                upsert_employees(
                    session,
                    {
                        e.id_employee: e.model_dump(mode="json", exclude_none=True)
                        for e in employees
                        if e.id_employee
                    },
                )
    finally:
        engine.dispose()
    return keys


def new_key(database_url: str, label: str, *roles: Role) -> Key:
    """A fresh key holding `roles`, named after `label` (unique per call)."""
    name = f"tests-{label}-{uuid.uuid4().hex[:8]}"
    with engine_of(database_url) as engine, session_scope(engine) as session:
        return Key(name, create_key(session, name, *roles))


@contextmanager
def engine_of(database_url: str) -> Iterator[sa.Engine]:
    """An engine of its own on that database, disposed at the end of the block."""
    engine = build_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def stored(database_url: str, statement: Any) -> list[Any]:
    """The rows a SELECT finds, read on a connection of its own (as another process sees them)."""
    with engine_of(database_url) as engine, Session(engine) as session:
        return list(session.exec(statement))
