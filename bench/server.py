"""The servers under test: `bentoml serve service:Attrition` with a configuration of its own,
started and stopped through tests/support (the one place that knows how)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil
import yaml

from bench import BenchError, log
from tests.support import REPO
from tests.support.servers import Running, ServerError, bentoml_serve, process_family


def server_config(tmp: Path, name: str, *, workers: int | None) -> Path:
    """configuration.yaml, with `services.attrition.workers` replaced when given."""
    config = yaml.safe_load((REPO / "configuration.yaml").read_text())
    service = config.setdefault("services", {}).setdefault("attrition", {})
    if workers is not None:
        service["workers"] = workers
    path = tmp / f"configuration-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Server:
    """One named server configuration; `start` runs it, `stop` ends it with its workers."""

    def __init__(
        self,
        name: str,
        config: Path,
        env: dict[str, str],
        tmp: Path,
        settings: dict[str, str] | None = None,
    ) -> None:
        """`settings`: ATTRITION_* variables of this server only (e.g. the batcher's caps)."""
        self.name = name
        self.config = config
        self.env = env | {"BENTOML_CONFIG": str(config)} | (settings or {})
        self.log_path = tmp / f"server-{name}.log"
        self.running: Running | None = None

    @property
    def url(self) -> str:
        if self.running is None:
            raise BenchError(f"server {self.name!r} was not started")
        return self.running.url

    @property
    def ready_after_s(self) -> float:
        return self.running.ready_after_s if self.running else 0.0

    def start(self) -> None:
        try:
            self.running = bentoml_serve(env=self.env, log=self.log_path)
        except ServerError as error:
            raise BenchError(f"server {self.name!r}: {error}") from error
        log(
            f"server {self.name!r}: pid {self.running.process.pid}, {self.url}, "
            f"ready in {self.ready_after_s:.1f} s, log {self.log_path}"
        )

    def pid(self) -> int | None:
        """The arbiter's process id while it runs."""
        if self.running is None or self.running.process.poll() is not None:
            return None
        return self.running.process.pid

    def tree(self) -> list[psutil.Process]:
        pid = self.pid()
        return [] if pid is None else process_family(pid)

    def rss(self) -> dict[int, int]:
        """Resident memory of each process of the tree (the arbiter and its workers), by pid."""
        sizes: dict[int, int] = {}
        for process in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                sizes[process.pid] = process.memory_info().rss
        return sizes

    def stop(self) -> None:
        if self.running is not None and self.running.process.poll() is None:
            self.running.stop(timeout=15)
            log(f"server {self.name!r} stopped")
