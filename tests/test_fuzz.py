"""Property-based fuzzing of the running service from its own OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from persistence.engine import build_engine, session_scope
from persistence.keys import create_key
from tests.support.databases import prepare_database
from tests.support.servers import Service, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIN_CASES = 1000


@pytest.fixture
def fuzzed(
    new_postgres_database, generated_dir, session_home, trained_tag
) -> Iterator[tuple[Service, str]]:
    """A service of its own (the fuzzer writes reviews and outcomes no other test expects),
    and a key holding every role, so that every route is fuzzed past the gate."""
    url = new_postgres_database()
    keys = prepare_database(url, seed_dir=generated_dir)
    engine = build_engine(url)
    try:
        with session_scope(engine) as session:
            every_role = create_key(session, "fuzz-every-role", "predict", "review", "audit")
    finally:
        engine.dispose()
    server = start_service(url, keys, session_home / "serve-fuzz.log")
    try:
        yield server, every_role
    finally:
        server.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzzed, tmp_path):
    server, key = fuzzed
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/docs.json",
            "--header",
            f"X-API-Key: {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "250",
            "--seed",
            "20261123",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = json.loads(report.read_text())
    assert summary["failures"] == [], run.stdout[-4000:]
    assert run.returncode == 0, run.stdout[-4000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 10
    assert summary["test_cases"]["generated"] >= MIN_CASES, summary["test_cases"]
