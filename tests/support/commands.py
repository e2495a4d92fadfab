"""The `attrition` command, run in a fresh process as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.support import REPO


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`attrition ARGS` in the repository, with this environment (default: the current one)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=REPO,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
