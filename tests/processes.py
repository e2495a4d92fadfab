"""Stopping a `bentoml serve` together with every process it started.

BentoML's workers run in sessions of their own, so a signal to the arbiter's process group
does not reach them, and an arbiter killed with SIGKILL leaves them serving as orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil


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


def stop_server(process: subprocess.Popen, timeout: float = 20) -> None:
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


def kill_server(process: subprocess.Popen) -> None:
    """SIGKILL to the arbiter and every worker at once: the whole service crashes."""
    _kill(process_family(process.pid))
    process.wait(timeout=30)
