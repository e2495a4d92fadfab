"""`attrition db upgrade` and `attrition db seed`."""

from __future__ import annotations

import argparse
from pathlib import Path

from settings import get_settings


def upgrade(_args: argparse.Namespace) -> int:
    import db

    url = get_settings().database_url
    db.upgrade(url)
    print(f"database at revision {db.head_revision()}")
    return 0


def seed(args: argparse.Namespace) -> int:
    """Employees from the extracts (or generated ones); predictions are never touched."""
    from cli.train import resolve_dataset
    from persistence.engine import build_engine, session_scope
    from persistence.queries import upsert_employees

    dataset = resolve_dataset(args.data_dir)
    features = {
        int(e.id_employee): e.model_dump(mode="json", exclude_none=True)
        for e in dataset.employees
        if e.id_employee is not None
    }
    with session_scope(build_engine(get_settings().database_url)) as session:
        count = upsert_employees(session, features)
    print(f"seeded {count} employees")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("db", help="database schema and seed data")
    sub = group.add_subparsers(required=True, metavar="ACTION")
    sub.add_parser("upgrade", help="apply pending Alembic migrations").set_defaults(handler=upgrade)
    parser = sub.add_parser("seed", help="load employees (idempotent, keeps predictions)")
    parser.add_argument("--data-dir", type=Path)
    parser.set_defaults(handler=seed)
