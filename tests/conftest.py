"""Fixtures shared by the tests; the helpers behind them are in tests/support.

Tests never touch the user's model store or database: `tests.support.isolation`, imported
before anything else, gives the session its own BENTOML_HOME and a clean environment.
"""

from __future__ import annotations

from tests.support.isolation import SESSION_HOME  # first: before anything imports bentoml

# isort: split
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import bentoml
import pytest

import db
from cli.main import main as attrition
from tests.support import databases
from tests.support.inprocess import Api, running
from tests.support.servers import Service, start_service
from tests.support.ui import TEST_CLIENT
from training.generator import write_extracts

GENERATED_ROWS = 600


@pytest.fixture(scope="session", autouse=True)
def session_home() -> Iterator[Path]:
    """The session's temporary folder (model store, reports, logs), removed at the end."""
    yield SESSION_HOME
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def generated_dir(session_home: Path) -> Path:
    """A generated set of the three extracts, shared by the whole session."""
    return write_extracts(session_home / "generated", rows=GENERATED_ROWS, seed=1)


@pytest.fixture(scope="session")
def holdout_dir(session_home: Path) -> Path:
    """A second generated set, from another seed: 'employees the model has not seen'."""
    return write_extracts(session_home / "holdout", rows=300, seed=2)


@pytest.fixture(scope="session")
def trained_tag(session_home: Path) -> str:
    """Train once per session, through the real CLI, into the session's model store."""
    assert (
        attrition(["train", "--generated-rows", str(GENERATED_ROWS), "--seed", "1", "--folds", "3"])
        == 0
    )
    return str(bentoml.models.get("attrition_pipeline:latest").tag)


@pytest.fixture(scope="session")
def postgres_server(session_home: Path) -> Iterator[str]:
    """A PostgreSQL server's URL: TEST_DATABASE_URL, the local server, or an embedded one."""
    with databases.postgres_server(session_home / "pgdata") as url:
        yield url


@pytest.fixture
def new_postgres_database(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Make fresh databases on that server; each is dropped after the test, pass or fail."""
    created: list[str] = []

    def new() -> str:
        created.append(databases.create_database(postgres_server))
        return created[-1]

    yield new
    for url in created:
        databases.drop_database(postgres_server, url)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The session's database on that server, dropped at the end."""
    with databases.fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend at the head revision (PostgreSQL's dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrated.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    db.upgrade(url)
    return url


@pytest.fixture(scope="session")
def sqlite_url(session_home: Path) -> str:
    return f"sqlite:///{session_home / 'attrition.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, trained_tag: str, generated_dir: Path, session_home: Path
) -> Iterator[Service]:
    """One running service per backend, shared by every end-to-end test."""
    url = request.getfixturevalue(f"{request.param}_url")
    keys = databases.prepare_database(url, seed_dir=generated_dir)
    running = start_service(url, keys, session_home / f"serve-{request.param}.log")
    yield running
    running.stop()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def api(
    request: pytest.FixtureRequest,
    trained_tag: str,
    generated_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """The service in process on a fresh database of each backend, one per test module."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'api.db'}"
        keys = databases.prepare_database(url, seed_dir=generated_dir)
        with running("sqlite", url, keys, trained_tag) as api:
            yield api
    else:
        server = request.getfixturevalue("postgres_server")
        with databases.fresh_database(server) as url:
            keys = databases.prepare_database(url, seed_dir=generated_dir)
            with running("postgres", url, keys, trained_tag) as api:
                yield api


@pytest.fixture
def signed_out(api: Api) -> Iterator[None]:
    """The HR page's tests: each starts (and leaves the shared client) signed out, the test
    client's address not slowed down by earlier failed sign-ins."""
    api.client.cookies.clear()
    api.module.SIGN_IN_BACKOFF.succeeded(TEST_CLIENT)
    yield
    api.client.cookies.clear()
    api.module.SIGN_IN_BACKOFF.succeeded(TEST_CLIENT)
