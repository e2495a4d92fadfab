"""Alembic migrations, the SQL schema, analytics SQL; `upgrade` applies pending migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

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
