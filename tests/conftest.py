"""Shared fixtures. Tests never touch the user's model store or database.

BENTOML_HOME points at a temporary store before anything imports bentoml, and settings are
read from a clean environment (no `.env`).
"""

from __future__ import annotations

import os
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
