"""`make serve`: migrate, train if the store is empty, check, then run `bentoml serve`.

Everything a worker needs is checked here first, because a worker whose start-up fails is
respawned by BentoML forever and the server never becomes ready.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqlalchemy import Engine

from settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def ensure_employees(engine: Engine) -> int:
    """Seed the employees table when it is empty, so `/predict_by_id` has someone to score."""
    from sqlmodel import Session, col, select

    from cli.main import main as attrition
    from persistence.tables import EmployeeRecord

    def first_id() -> int | None:
        with Session(engine) as session:
            return session.exec(select(col(EmployeeRecord.id)).order_by(EmployeeRecord.id)).first()

    if first_id() is None:
        attrition(["db", "seed"])
    found = first_id()
    if found is None:
        raise SystemExit("error: the employees table is still empty after seeding")
    return found


def main() -> int:
    import db
    from cli.main import main as attrition
    from persistence.engine import build_engine
    from serving.health import database_ready
    from training.store import ModelNotFound, has_model, load

    settings = get_settings()
    os.chdir(ROOT)
    engine = build_engine(settings.database_url)
    if not database_ready(engine):
        return _fail(f"database {engine.url!r} does not answer; check DATABASE_URL")
    db.upgrade(settings.database_url)
    if not has_model(settings.model_tag):
        if settings.model_tag.split(":")[-1] != "latest":
            return _fail(f"model {settings.model_tag!r} is not in the store; run make train")
        print(f"no model {settings.model_tag!r} in the store yet: training one", flush=True)
        if attrition(["train"]) != 0:
            return 2
    try:
        load(settings.model_tag)
    except ModelNotFound as exc:
        return _fail(str(exc))
    from cli.keys import ensure_local_key

    employee_id = ensure_employees(engine)
    ensure_local_key(port := os.environ.get("PORT", "3000"), employee_id)
    os.environ["BENTOML_CONFIG"] = str(ROOT / "configuration.yaml")
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    args = [
        bentoml,
        "serve",
        "service:Attrition",
        "--port",
        port,
        "--host",
        os.environ.get("HOST", "127.0.0.1"),
    ]
    print(f"serving on http://{args[-1]}:{port}", flush=True)
    os.execv(bentoml, args)
    return 0  # pragma: no cover  (execv does not return)


if __name__ == "__main__":
    sys.exit(main())
