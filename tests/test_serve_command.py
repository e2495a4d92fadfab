"""`make serve`'s own steps on an empty model store and an empty database."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.support.servers import free_port, start

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
    server = start(
        [sys.executable, "-m", "cli.main", "serve"],
        port=port,
        env=env,
        log=tmp_path / "serve.log",
        timeout=240,
    )
    try:
        # `attrition serve` prints everything before it execs bentoml
        output = server.log.read_text()
        assert "GENERATED" in output
        curl = next(line.strip() for line in output.splitlines() if line.strip().startswith("curl"))
        run = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
        answer = json.loads(run.stdout)
        assert 0 <= answer["probability"] <= 1
        assert answer["model_tag"].startswith("attrition_pipeline:")
        assert re.search(r"atk_\w+\.\S+", output)
    finally:
        server.stop(timeout=30)
