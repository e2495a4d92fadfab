"""What the machine did during a run: peak memory of the server, and where the CPU went."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psutil

from bench import log
from bench.server import Server

NOISY_PCT = 10.0  # CPU share used by other processes during a run that makes it unreliable


class RssSampler(threading.Thread):
    """Peak RSS of the server, per `server/phase`: of its whole process tree (`peaks`, the sum
    over processes) and of its largest worker (`worker_peaks`, every process but the arbiter)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.server: Server | None = None
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self.worker_peaks: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            server = self.server
            if server is None:
                continue
            sizes = server.rss()
            arbiter = server.pid()
            key = f"{server.name}/{self.phase}"
            total = sum(sizes.values())
            worker = max((v for pid, v in sizes.items() if pid != arbiter), default=0)
            self.peaks[key] = max(total, self.peaks.get(key, 0))
            self.worker_peaks[key] = max(worker, self.worker_peaks.get(key, 0))

    def stop(self) -> None:
        self._stop_event.set()

    def peak(self, prefix: str = "", *, worker: bool = False) -> int:
        """The highest sample of the keys starting with `prefix`: the tree's, or one worker's."""
        peaks = self.worker_peaks if worker else self.peaks
        return max((v for k, v in peaks.items() if k.startswith(prefix)), default=0)


class CpuWatch:
    """Where the CPU went during a run: each server process, and everything not ours.

    `foreign_pct`: busy CPU time of the machine minus the server tree, PostgreSQL, this
    process and its waited-for children (wrk), as a share of all CPUs over the run: another
    job's noise. `steal_pct`: CPU time the hypervisor gave to other guests. `workers_pct`: CPU
    of each server worker, in % of one core; a lopsided split means the kernel handed most
    connections to one worker (they share one listening socket).
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.foreign_pct = 0.0
        self.steal_pct = 0.0
        self.workers_pct: list[float] = []
        self.arbiter_pct = 0.0

    def _server_times(self) -> dict[int, float]:
        times: dict[int, float] = {}
        for process in self.server.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                cpu = process.cpu_times()
                times[process.pid] = cpu.user + cpu.system
        return times

    def _ours(self, server_times: dict[int, float]) -> float:
        own = os.times()
        total = own.user + own.system + own.children_user + own.children_system
        total += sum(server_times.values())
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "postgres" and process.pid not in server_times:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    cpu = process.cpu_times()
                    total += cpu.user + cpu.system
        return total

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return float(times.user + times.nice + times.system + times.irq + times.softirq)

    def __enter__(self) -> CpuWatch:
        self._began = time.monotonic()
        self._server0 = self._server_times()
        self._busy0, self._ours0 = self._busy(), self._ours(self._server0)
        self._times0 = psutil.cpu_times()
        return self

    def __exit__(self, *_exc: object) -> None:
        elapsed = time.monotonic() - self._began
        server = self._server_times()
        foreign = (self._busy() - self._busy0) - (self._ours(server) - self._ours0)
        self.foreign_pct = max(0.0, 100 * foreign / (elapsed * (os.cpu_count() or 1)))
        times = psutil.cpu_times()
        total = sum(times) - sum(self._times0)
        stolen = getattr(times, "steal", 0.0) - getattr(self._times0, "steal", 0.0)
        self.steal_pct = 100 * stolen / total if total > 0 else 0.0
        spent = {
            pid: 100 * (t - self._server0.get(pid, 0.0)) / elapsed for pid, t in server.items()
        }
        root = self.server.pid()
        self.arbiter_pct = round(spent.pop(root, 0.0) if root is not None else 0.0, 1)
        self.workers_pct = [round(spent[pid], 1) for pid in sorted(spent)]


def wait_for_quiet(server: Server, limit: float, window: float = 2.0) -> None:
    """Hold a run until other processes use < NOISY_PCT of the CPUs, for at most `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        with CpuWatch(server) as cpu:
            time.sleep(window)
        if cpu.foreign_pct < NOISY_PCT or time.monotonic() >= deadline:
            return
        log(f"machine busy (other processes {cpu.foreign_pct:.0f}% CPU): waiting")
