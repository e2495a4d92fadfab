"""`attrition serve` (what `make serve` runs): migrate, train if the store is empty, seed,
make a local key, then exec `bentoml serve`.

Everything a worker needs is checked here first, because a worker whose start-up fails is
respawned by BentoML forever and the server never becomes ready.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sqlalchemy import Engine

from settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


class CommandError(RuntimeError):
    """A failure whose message is the whole story: printed without a traceback, exit 2."""


def ensure_employees(engine: Engine) -> int:
    """Seed the employees table when it is empty, so `/predict_by_id` has someone to score."""
    from sqlmodel import Session, col, select

    from cli.main import main as attrition
    from persistence.tables import EmployeeRecord

    def first_id() -> int | None:
        with Session(engine) as session:
            return session.exec(
                select(col(EmployeeRecord.id)).order_by(col(EmployeeRecord.id))
            ).first()

    if first_id() is None:
        attrition(["db", "seed"])
    found = first_id()
    if found is None:
        raise CommandError("the employees table is still empty after seeding")
    return found


def serve(_args: argparse.Namespace) -> int:
    from cli.keys import ensure_local_key
    from cli.main import main as attrition
    from persistence.engine import build_engine, database_ready
    from training.store import has_model, load

    settings = get_settings()
    os.chdir(ROOT)
    engine = build_engine(settings.database_url)
    if not database_ready(engine):
        raise CommandError(f"database {engine.url!r} does not answer; check DATABASE_URL")
    if attrition(["db", "upgrade"]) != 0:  # as the admin role; grants the service's
        raise CommandError("the database could not be migrated; see above")
    if not has_model(settings.model_tag):
        if settings.model_tag.split(":")[-1] != "latest":
            raise CommandError(f"model {settings.model_tag!r} is not in the store; run make train")
        print(f"no model {settings.model_tag!r} in the store yet: training one", flush=True)
        if attrition(["train"]) != 0:
            raise CommandError("training failed; see above")
    load(settings.model_tag)
    if settings.shadow_model_tag:
        load(settings.shadow_model_tag)  # a missing challenger fails here, not in every worker
    employee_id = ensure_employees(engine)
    ensure_local_key(port := os.environ.get("PORT", "3000"), employee_id)
    os.environ["BENTOML_CONFIG"] = str(ROOT / "configuration.yaml")
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    host = os.environ.get("HOST", "127.0.0.1")
    print(f"serving on http://{host}:{port}", flush=True)
    print(
        f"HR page: http://{host}:{port}/ui (sign in with an API key, e.g. the one above)",
        flush=True,
    )
    os.execv(bentoml, [bentoml, "serve", "service:Attrition", "--port", port, "--host", host])
    return 0  # pragma: no cover  (execv does not return)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve", help="migrate, train if needed, seed, make a local key, run bentoml serve"
    )
    parser.set_defaults(handler=serve)
