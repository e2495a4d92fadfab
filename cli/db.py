"""`attrition db upgrade | seed | purge | roles`.

They change the schema, the reference data or the history, so they connect as the admin:
`ATTRITION_ADMIN_DATABASE_URL` (the owner of the tables), else `DATABASE_URL`. On PostgreSQL
the service's own role may not do any of it (docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from cli.serve import CommandError
from persistence.engine import build_engine, is_sqlite, session_scope
from settings import Settings, get_settings

if TYPE_CHECKING:
    from db import ServiceGrants

NO_ROLES_ON_SQLITE = (
    "SQLite has no roles: it is the embedded, single-user default (make serve), and whoever "
    "can open the file can change it. Separate service and admin roles need PostgreSQL "
    "(docs/DEPLOYMENT.md)"
)


@contextmanager
def connected(url: str) -> Iterator[Engine]:
    """An engine for one command, its connections closed on the way out."""
    engine = build_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def upgrade(_args: argparse.Namespace) -> int:
    """Migrate as the admin; with a separate service user, reapply its privileges after."""
    import db

    settings = get_settings()
    db.upgrade(settings.admin_url)
    print(f"database at revision {db.head_revision()}")
    if is_sqlite(settings.admin_url):
        return 0
    service = _separate_service_user(settings)
    if service is None:
        print(
            "note: the service connects as the admin (one PostgreSQL user): it could UPDATE "
            "and DELETE predictions; give it its own user with ATTRITION_ADMIN_DATABASE_URL "
            "(docs/DEPLOYMENT.md)",
            file=sys.stderr,
        )
        return 0
    _show(_grant(settings, service, set_password=False))
    return 0


def roles(_args: argparse.Namespace) -> int:
    """Create the service's role if needed, (re)set its password, grant exactly its rights."""
    settings = get_settings()
    if is_sqlite(settings.admin_url) or is_sqlite(settings.database_url):
        raise CommandError(NO_ROLES_ON_SQLITE)
    service = make_url(settings.database_url).username
    if service is None:
        raise CommandError("DATABASE_URL names no user: it must name the service's own role")
    _show(_grant(settings, service, set_password=True))
    return 0


def _separate_service_user(settings: Settings) -> str | None:
    """DATABASE_URL's user when an admin URL names another one, else None."""
    service = make_url(settings.database_url).username
    admin = make_url(settings.admin_url).username
    if settings.admin_database_url is None or service is None or service == admin:
        return None
    return service


def _grant(settings: Settings, role: str, *, set_password: bool) -> ServiceGrants:
    """`db.grant_service_role` as the admin, with DATABASE_URL's password."""
    import db

    password = make_url(settings.database_url).password
    try:
        with connected(settings.admin_url) as engine:
            return db.grant_service_role(engine, role, password, set_password=set_password)
    except db.RoleProblem as exc:
        raise CommandError(str(exc)) from exc


def _show(grants: ServiceGrants) -> None:
    done = ["created" if grants.created else "exists"]
    if grants.password_set:
        done.append("password set")
    print(f"service role {grants.role!r} ({', '.join(done)}) may:")
    for table, privileges in grants.privileges.items():
        print(f"  {table:<18} {', '.join(privileges) or 'nothing'}")
    if grants.sequences:
        print(f"  {'sequences':<18} USAGE on {', '.join(grants.sequences)}")
    if not grants.privileges:
        print("  nothing yet: no tables (attrition db upgrade grants again after migrating)")
    print("and never UPDATE or DELETE a prediction or a review")
    if grants.undecided:
        print(
            f"warning: no privileges decided for {', '.join(grants.undecided)}: the service "
            "gets none there (db.SERVICE_PRIVILEGES)",
            file=sys.stderr,
        )


def seed(args: argparse.Namespace) -> int:
    """Employees from the extracts (or generated ones); predictions are never touched."""
    from cli.train import resolve_dataset
    from persistence.queries import upsert_employees

    dataset = resolve_dataset(args.data_dir)
    features = {
        int(e.id_employee): e.model_dump(mode="json", exclude_none=True)
        for e in dataset.employees
        if e.id_employee is not None
    }
    with connected(get_settings().admin_url) as engine, session_scope(engine) as session:
        count = upsert_employees(session, features)
    print(f"seeded {count} employees")
    return 0


def purge(args: argparse.Namespace) -> int:
    """Delete what is older than `--older-than` days, one short transaction per batch."""
    from persistence.audit import cutoff_for, purge_batch, purge_counts

    settings = get_settings()
    floor = settings.retention_floor_days
    if args.older_than < floor:
        raise CommandError(
            f"--older-than {args.older_than} is below the retention floor of {floor} days "
            "(ATTRITION_RETENTION_FLOOR_DAYS): logs are kept at least that long "
            "(docs/RUNBOOK.md, Purge)"
        )
    cutoff = cutoff_for(args.older_than)
    when = f"created before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({args.older_than} days)"
    with connected(settings.admin_url) as engine:
        if args.dry_run:
            with session_scope(engine) as session:
                counts = purge_counts(session, cutoff)
            print(f"would delete, {when}:")
        else:
            counts, batches = {}, 0
            while True:
                with session_scope(engine) as session:
                    deleted = purge_batch(session, cutoff)
                for table, count in deleted.items():
                    counts[table] = counts.get(table, 0) + count
                if not any(deleted.values()):
                    break
                batches += 1
            print(f"deleted, {when}, in {batches} batch(es):")
    for table, count in counts.items():
        print(f"  {table:<18} {count:>10}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("db", help="database schema, seed data, retention, roles")
    sub = group.add_subparsers(required=True, metavar="ACTION")
    sub.add_parser(
        "upgrade", help="apply pending migrations (as the admin), then the service's privileges"
    ).set_defaults(handler=upgrade)
    parser = sub.add_parser("seed", help="load employees (idempotent, keeps predictions)")
    parser.add_argument("--data-dir", type=Path)
    parser.set_defaults(handler=seed)
    parser = sub.add_parser(
        "purge",
        help="delete predictions (with their reviews), access and refusal events older than "
        "DAYS; refuses DAYS below ATTRITION_RETENTION_FLOOR_DAYS",
    )
    parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")
    parser.add_argument("--dry-run", action="store_true", help="only count, per table")
    parser.set_defaults(handler=purge)
    sub.add_parser(
        "roles",
        help="PostgreSQL: create DATABASE_URL's user if missing, set its password, grant it "
        "insert-only rights (run as ATTRITION_ADMIN_DATABASE_URL's user)",
    ).set_defaults(handler=roles)
