"""`make serve`'s own steps on an empty model store and an empty database."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import REPO, free_port
from .processes import stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_serve_trains_migrates_seeds_and_prints_a_working_curl_line(tmp_path):
    port = free_port()
    env = os.environ | {
        "BENTOML_HOME": str(tmp_path / "empty-store"),
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}",
        "ATTRITION_REPORTS_DIR": str(tmp_path / "reports"),
    }
    env.pop("ATTRITION_DATA_DIR", None)
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.serve"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while "curl" not in log.read_text() or not _ready(port):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        output = log.read_text()
        assert "GENERATED" in output
        curl = next(line.strip() for line in output.splitlines() if line.strip().startswith("curl"))
        run = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
        answer = __import__("json").loads(run.stdout)
        assert 0 <= answer["probability"] <= 1 and answer["model_tag"].startswith(
            "attrition_pipeline:"
        )
        assert re.search(r"atk_\w+\.\S+", output)
    finally:
        stop_server(process, timeout=30)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
