"""Property-based fuzzing of the running service from its own OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIN_CASES = 1000


@pytest.mark.parametrize("server", ["postgres"], indirect=True)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, tmp_path):
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/docs.json",
            "--header",
            f"X-API-Key: {server.keys.predict}",
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
