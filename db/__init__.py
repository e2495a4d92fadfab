"""Alembic migrations, the SQL schema, analytics SQL; `upgrade` applies pending migrations;
`grant_service_role` gives the service's PostgreSQL role its insert-only privileges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from persistence.engine import normalise_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ANALYTICS_SQL = Path(__file__).resolve().parent / "analytics.sql"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def analytics_queries() -> dict[str, str]:
    """The named queries of `analytics.sql` ("-- name: X" starts query X)."""
    queries: dict[str, str] = {}
    name = None
    for line in ANALYTICS_SQL.read_text(encoding="utf-8").splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            queries[name] = ""
        elif name is not None and not line.startswith("--"):
            queries[name] += line + "\n"
    return {k: v.strip() for k, v in queries.items()}


# --- PostgreSQL roles ------------------------------------------------------------------------

# What the service's role may do, table by table: add to the history and read it, never
# rewrite it (no UPDATE or DELETE on predictions or reviews). Every table of the schema has an
# entry, an empty one included (tests/test_cli_audit.py checks it after the migrations): a new
# table gets nothing until it is decided here, and the map is reapplied whole (revoke, then
# grant) after every `attrition db upgrade`, so a migration never leaves it behind.
SERVICE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "predictions": ("SELECT", "INSERT"),
    "reviews": ("SELECT", "INSERT"),
    "access_events": ("SELECT", "INSERT"),
    "audit_events": ("SELECT", "INSERT"),
    "employees": ("SELECT",),
    "scoring_switches": ("SELECT",),
    "outcomes": ("SELECT", "INSERT"),
    "monitoring_snapshots": ("SELECT", "INSERT"),
    "shadow_predictions": ("SELECT", "INSERT"),
    "ui_sessions": ("SELECT", "INSERT", "UPDATE (last_seen_at, ended_at)"),
    "api_keys": ("SELECT", "UPDATE (last_used_at)"),
    # Read models: written only by the triggers on `predictions` (as the tables' owner).
    "prediction_rollups": ("SELECT",),
    "latest_predictions": ("SELECT",),
    "latest_monthly_predictions": ("SELECT",),
    "alembic_version": (),
}


INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE


class RoleProblem(RuntimeError):
    """The service's role cannot be made what `SERVICE_PRIVILEGES` says (message says why)."""


@dataclass(frozen=True)
class ServiceGrants:
    """What `grant_service_role` did: the role, whether it made it, the privileges it holds."""

    role: str
    created: bool
    password_set: bool
    privileges: dict[str, tuple[str, ...]]
    sequences: tuple[str, ...]
    # Tables of the schema that `SERVICE_PRIVILEGES` does not name: the role gets nothing there.
    undecided: tuple[str, ...]


def grant_service_role(
    engine: Engine, role: str, password: str | None, *, set_password: bool
) -> ServiceGrants:
    """Make `role` (created, with `password`, when missing) hold exactly `SERVICE_PRIVILEGES`.

    Runs as the admin (the owner of the tables) in one transaction: the service never sees the
    privileges half revoked. A role that is a superuser or a member of the tables' or schema's
    owner could undo any of it, so it is refused. `set_password` also resets an existing role's
    password (the admin needs CREATEROLE, as for creating it).
    """
    try:
        with engine.begin() as connection:
            return _grant(connection, role, password, set_password=set_password)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        if getattr(exc.orig, "pgcode", None) == INSUFFICIENT_PRIVILEGE:
            reason += (
                " (the admin must own the tables, and have CREATEROLE to create the role or "
                "set its password)"
            )
        raise RoleProblem(f"could not set up the service's role {role!r}: {reason}") from exc


def _grant(
    connection: Connection, role: str, password: str | None, *, set_password: bool
) -> ServiceGrants:
    def run(statement: str, **values: Any) -> Any:
        return connection.execute(text(statement), values)

    quoted = connection.dialect.identifier_preparer.quote_identifier(role)
    admin, schema = run("SELECT current_user, current_schema()").one()
    if role == admin:
        raise RoleProblem(
            f"the service and the admin are the same PostgreSQL role {role!r}: "
            "DATABASE_URL must name the service's own user (docs/DEPLOYMENT.md)"
        )
    superuser = run("SELECT rolsuper FROM pg_roles WHERE rolname = :role", role=role).scalar()
    created = superuser is None
    if created:
        run(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    elif superuser:
        raise RoleProblem(f"role {role!r} is a superuser: it cannot be limited")
    owned = run(OWNED_BY_ROLE, role=role).scalars().all()
    if owned:
        raise RoleProblem(
            f"role {role!r} owns (or is a member of the owner of) {', '.join(owned)}: it could "
            "grant itself anything back. Use that user as the admin "
            "(ATTRITION_ADMIN_DATABASE_URL) and a new one for DATABASE_URL"
        )
    password_set = password is not None and (created or set_password)
    if password_set:
        run(f"ALTER ROLE {quoted} PASSWORD :password", password=password)

    preparer = connection.dialect.identifier_preparer
    in_schema = preparer.quote_identifier(schema)
    run(f"REVOKE ALL ON ALL TABLES IN SCHEMA {in_schema} FROM {quoted}")
    run(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {in_schema} FROM {quoted}")
    run(f"GRANT USAGE ON SCHEMA {in_schema} TO {quoted}")
    tables = set(
        run("SELECT tablename FROM pg_tables WHERE schemaname = :schema", schema=schema).scalars()
    )
    privileges = {t: p for t, p in SERVICE_PRIVILEGES.items() if t in tables}
    sequences: list[str] = []
    for table, granted in privileges.items():
        if granted:
            run(f"GRANT {', '.join(granted)} ON {preparer.quote(table)} TO {quoted}")
        if "INSERT" in granted:
            sequences += run(SERIAL_SEQUENCES, table=preparer.quote(table)).scalars().all()
    for sequence in sequences:
        run(f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}")
    return ServiceGrants(
        role=role,
        created=created,
        password_set=password_set,
        privileges=privileges,
        sequences=tuple(sequences),
        undecided=tuple(sorted(tables - set(SERVICE_PRIVILEGES))),
    )


# Objects of the current schema (and the schema itself) whose owner `:role` is or inherits.
OWNED_BY_ROLE = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND pg_has_role(:role, c.relowner, 'MEMBER')
UNION ALL
SELECT 'schema ' || nspname FROM pg_namespace
WHERE nspname = current_schema() AND pg_has_role(:role, nspowner, 'MEMBER')
ORDER BY 1
"""
# The sequences behind a table's serial / identity columns (INSERT needs USAGE on them).
SERIAL_SEQUENCES = """
SELECT pg_get_serial_sequence(:table, attname) FROM pg_attribute
WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped
  AND pg_get_serial_sequence(:table, attname) IS NOT NULL
"""
