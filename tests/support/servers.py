"""Starting a service on a free port and waiting for /readyz; stopping it with every process
it started.

BentoML's workers run in sessions of their own, so a signal to the arbiter's process group
does not reach them, and an arbiter killed with SIGKILL leaves them serving as orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tests.support import REPO
from tests.support.databases import Keys

BENTOML = str(Path(sys.executable).with_name("bentoml"))


class ServerError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_family(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (empty once it is gone)."""
    try:
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill(members: list[psutil.Process]) -> None:
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def stop_server(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM to the arbiter (it stops its workers gracefully), then SIGKILL to what is left."""
    family = process_family(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(family)
        process.wait(timeout=10)
    _kill([member for member in family[1:] if member.is_running()])


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the arbiter and every worker at once: the whole service crashes."""
    _kill(process_family(process.pid))
    process.wait(timeout=30)


@dataclass
class Running:
    """A server process (in its own session) that answered /readyz."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    ready_after_s: float

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log, lines)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            stop_server(self.process, timeout)


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log: Path,
    cwd: Path = REPO,
    timeout: float = 180,
) -> Running:
    """Run `command` (which serves on 127.0.0.1:`port`) and wait until /readyz answers 200."""
    began = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=2) as client:
        while time.monotonic() - began < timeout:
            if process.poll() is not None:
                raise ServerError(f"{command[0]} exited:\n{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return Running(url, process, log, time.monotonic() - began)
            time.sleep(0.3)
    stop_server(process)
    raise ServerError(f"{command[0]} not ready after {timeout:.0f} s:\n{_tail(log)}")


def bentoml_serve(
    target: str = "service:Attrition",
    *,
    env: Mapping[str, str],
    log: Path,
    cwd: Path = REPO,
    timeout: float = 180,
) -> Running:
    """`bentoml serve TARGET` (a service or a Bento tag) on a free port of 127.0.0.1."""
    port = free_port()
    command = [BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    return start(command, port=port, env=env, log=log, cwd=cwd, timeout=timeout)


@dataclass
class Service(Running):
    """The repository's service on a prepared database, and the keys to call it."""

    database_url: str
    keys: Keys

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.keys.predict}


def start_service(database_url: str, keys: Keys, log: Path) -> Service:
    """`bentoml serve service:Attrition` on that database, with the repository's
    configuration.yaml."""
    env = os.environ | {
        "DATABASE_URL": database_url,
        "BENTOML_CONFIG": str(REPO / "configuration.yaml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    running = bentoml_serve(env=env, log=log)
    return Service(
        running.url, running.process, running.log, running.ready_after_s, database_url, keys
    )
