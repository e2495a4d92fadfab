"""Shared fixtures. Tests never touch the user's model store or database.

BENTOML_HOME points at a temporary store before anything imports bentoml, and settings are
read from a clean environment (no `.env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="attrition-tests-"))
os.environ["BENTOML_HOME"] = str(_SESSION_HOME / "bentoml")
os.environ["ATTRITION_REPORTS_DIR"] = str(_SESSION_HOME / "reports")
os.environ.pop("DATABASE_URL", None)
# Real extracts are only for the tests that ask for them, never a default.
REAL_DATA_DIR = os.environ.pop("ATTRITION_DATA_DIR", None)

import pytest  # noqa: E402

from training.generator import write_extracts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GENERATED_ROWS = 600


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The `attrition` command in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="session")
def session_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def generated_dir(session_home: Path) -> Path:
    """A generated set of the three extracts, shared by the whole session."""
    return write_extracts(session_home / "generated", rows=GENERATED_ROWS, seed=1)


@pytest.fixture(scope="session")
def holdout_dir(session_home: Path) -> Path:
    """A second generated set, from another seed: 'employees the model has not seen'."""
    return write_extracts(session_home / "holdout", rows=300, seed=2)


@pytest.fixture(scope="session")
def trained_tag() -> str:
    """Train once per session, through the real CLI, into the session's model store."""
    from cli.main import main

    assert (
        main(["train", "--generated-rows", str(GENERATED_ROWS), "--seed", "1", "--folds", "3"]) == 0
    )
    import bentoml

    return str(bentoml.models.get("attrition_pipeline:latest").tag)


# ---------------------------------------------------------------- databases and servers
import contextlib  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx  # noqa: E402
import psycopg2  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.processes import stop_server  # noqa: E402

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        psycopg2.connect(
            make_url(url).set(drivername="postgresql").render_as_string(False), connect_timeout=2
        ).close()
    except psycopg2.Error:
        return False
    return True


def start_embedded_postgres(folder: Path):
    """A PostgreSQL server from the pgserver package, owned by the caller."""
    import pgserver

    return pgserver.get_server(folder, cleanup_mode="stop")


@pytest.fixture(scope="session")
def postgres_server(session_home: Path) -> Iterator[str]:
    """TEST_DATABASE_URL, else a local server that answers, else an embedded one."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif _answers(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
    else:
        server = start_embedded_postgres(session_home / "pgdata")
        yield server.get_uri()
        server.cleanup()


def create_database(server_url: str) -> str:
    """A fresh database on that server, so tests never see anyone else's rows."""
    name = f"attrition_test_{uuid.uuid4().hex[:10]}"
    dsn = make_url(server_url).set(drivername="postgresql")
    connection = psycopg2.connect(dsn.render_as_string(False))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return dsn.set(database=name).render_as_string(False)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> str:
    return create_database(postgres_server)


@pytest.fixture(scope="session")
def sqlite_url(session_home: Path) -> str:
    return f"sqlite:///{session_home / 'attrition.db'}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A `bentoml serve` subprocess and what a test needs to call and audit it."""

    url: str
    database_url: str
    predict_key: str
    read_key: str
    revoked_key: str
    process: subprocess.Popen
    log: Path

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.predict_key}

    def stop(self) -> None:
        stop_server(self.process)


def prepare_database(database_url: str, seed_dir: Path | None = None) -> dict[str, str]:
    """Migrate, create one key per role plus a revoked one, seed employees."""
    import db
    from persistence.engine import build_engine, session_scope
    from persistence.keys import create_key, revoke_key
    from persistence.queries import upsert_employees
    from training.extracts import load_extracts

    db.upgrade(database_url)
    engine = build_engine(database_url)
    suffix = uuid.uuid4().hex[:6]
    with session_scope(engine) as session:
        keys = {
            "predict": create_key(session, f"tests-predict-{suffix}", "predict"),
            "read": create_key(session, f"tests-read-{suffix}", "read"),
            "revoked": create_key(session, f"tests-revoked-{suffix}", "predict"),
        }
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
    engine.dispose()
    return keys


def start_server(
    database_url: str,
    log: Path,
    keys: dict[str, str],
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Server:
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
        **(extra_env or {}),
    }
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    process = subprocess.Popen(
        [bentoml_cli, "serve", "service:Attrition", "--port", str(port), "--host", "127.0.0.1"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(
        f"http://127.0.0.1:{port}",
        database_url,
        keys["predict"],
        keys["read"],
        keys["revoked"],
        process,
        log,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"bentoml serve not ready in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request, trained_tag, generated_dir, session_home) -> Iterator[Server]:
    """One running service per backend, shared by every end-to-end test."""
    url = request.getfixturevalue(f"{request.param}_url")
    keys = prepare_database(url, seed_dir=generated_dir)
    running = start_server(url, session_home / f"serve-{request.param}.log", keys)
    yield running
    running.stop()
