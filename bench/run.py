"""Load benchmark of the attrition service: `make bench` (or `.venv/bin/python bench/run.py`).

Self-contained: it finds or starts PostgreSQL (TEST_DATABASE_URL's server, else 127.0.0.1:5432,
else an embedded pgserver), creates a throw-away database, trains a model into a temporary
BentoML store (unless the default store already holds `attrition_pipeline`), starts
`bentoml serve` with the repository's configuration.yaml, and measures
- `/predict` (one employee per call) with wrk at 1, 16 and 64 connections, each after a short
  warm-up at the same concurrency: req/s, p50/p90/p99, errors, the mean batch the adaptive
  batcher formed (from the server's /metrics) and the CPU split between the workers;
- `/predict_batch` with 1, 100 and 1000 employees: median latency of a few calls, rows/s;
- the same `/predict` runs with batching disabled (max_batch_size 1), and the ratio;
- the in-process limit: scoring, validation and the batch write (COPY) without HTTP;
- the database ceiling: rows/s PostgreSQL commits from 4 processes writing 16-row batches
  (what replicas share; `--workers N` reruns the server side with N workers for scaling);
- the peak RSS of the server's process tree.
After every run it checks that the rows written equal the 2xx answers: each answered
prediction_id has its row, and the only extra rows are calls wrk abandoned in flight when its
clock ran out (answered by the server, never read by wrk).

Results: one table on stdout, and JSON in bench/results/<timestamp>.json. The table states
PASS/MISS against the performance targets, and warns when other processes used the CPUs
during a run. Needs `wrk`; as root it runs `apt-get install -y wrk` when it is missing.
Exit status: 0 done, 1 rows and answers differ, 2 a step failed, 3 a target was missed (only
with --fail-on-miss).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg2
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository's own modules, below
from tests.processes import process_family, stop_server  # noqa: E402
from tests.test_contract import RAW  # noqa: E402

BENCH = REPO / "bench"
LUA = BENCH / "predict.lua"
BIN = Path(sys.executable).parent
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/"
MODEL_NAME = "attrition_pipeline"
DROPPED_FIELDS = ("id_employee", "eval_number", "code_sondage")
NOISY_PCT = 10.0  # CPU share used by other processes during a run that makes it unreliable


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- database


def libpq(url: str) -> str:
    """A SQLAlchemy URL (maybe `postgresql+psycopg2://`) as the URI libpq takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return libpq(make_url(url).set(database=name).render_as_string(hide_password=False))


def _admin(server_url: str) -> Any:
    connection = psycopg2.connect(with_database(server_url, "postgres"), connect_timeout=3)
    connection.autocommit = True
    return connection


def reachable(server_url: str) -> bool:
    try:
        _admin(server_url).close()
    except psycopg2.Error:
        return False
    return True


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """`attrition_bench_<random>` on that server, dropped on the way out."""
    name = f"attrition_bench_{secrets.token_hex(4)}"
    connection = _admin(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        log(f"created database {name}")
        try:
            yield with_database(server_url, name)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"dropped database {name}")
    finally:
        connection.close()


@contextlib.contextmanager
def bench_database(tmp: Path) -> Iterator[tuple[str, str]]:
    """(url, where): TEST_DATABASE_URL's server, else the local server, else pgserver."""
    test_url = os.environ.get("TEST_DATABASE_URL")
    if test_url:
        try:
            with fresh_database(test_url) as url:
                yield url, "TEST_DATABASE_URL server, fresh database"
            return
        except psycopg2.Error as exc:
            if not reachable(test_url):
                raise BenchError(f"TEST_DATABASE_URL does not answer: {exc}") from exc
            log(f"cannot create a database there ({exc}); using TEST_DATABASE_URL as it is")
            yield libpq(test_url), "TEST_DATABASE_URL as is"
            return
    if reachable(LOCAL_SERVER):
        with fresh_database(LOCAL_SERVER) as url:
            yield url, f"{LOCAL_SERVER} fresh database"
        return
    log("no PostgreSQL at 127.0.0.1:5432: starting an embedded one (pgserver)")
    import pgserver

    server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        with fresh_database(server.get_uri()) as url:
            yield url, "embedded pgserver, fresh database"
    finally:
        server.cleanup()


class Rows:
    """Counts of the `predictions` table, on one autocommit connection."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(libpq(url), connect_timeout=5)
        self.connection.autocommit = True

    def count(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM predictions")
            return int(cursor.fetchone()[0])

    def settled(self, timeout: float = 15.0) -> int:
        """The count once calls still in the server have landed (stable for 0.6 s)."""
        deadline = time.monotonic() + timeout
        last = self.count()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.count()
            if now == last:
                time.sleep(0.3)
                again = self.count()
                if again == now:
                    return now
                now = again
            last = now
        return last

    def found(self, ids: list[str]) -> int:
        wanted = [i for i in ids if re.fullmatch(r"[0-9a-fA-F-]{32,36}", i)]
        if not wanted:
            return 0
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM predictions WHERE id = ANY(%s::uuid[])", (wanted,))
            return int(cursor.fetchone()[0])

    def close(self) -> None:
        self.connection.close()


# --------------------------------------------------------------------------- model and CLI


def default_store() -> Path:
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def store_has_model(home: Path) -> bool:
    return (home / "models" / MODEL_NAME / "latest").is_file()


def attrition(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(BIN / "attrition"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"attrition {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def employee_body() -> dict[str, Any]:
    return {k: v for k, v in RAW.items() if k not in DROPPED_FIELDS}


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`bentoml serve service:Attrition` in its own process group."""

    def __init__(self, name: str, config: Path, env: dict[str, str], tmp: Path) -> None:
        self.name = name
        self.config = config
        self.env = env | {"BENTOML_CONFIG": str(config)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s = 0.0

    def start(self, timeout: float = 180.0) -> None:
        began = time.monotonic()
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    str(BIN / "bentoml"),
                    *("serve", "service:Attrition", "--host", "127.0.0.1"),
                    *("--port", str(self.port)),
                ],
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log(f"server {self.name!r}: pid {self.process.pid}, {self.url}, log {self.log_path}")
        with httpx.Client(timeout=3) as client:
            while time.monotonic() - began < timeout:
                if self.process.poll() is not None:
                    raise BenchError(f"server {self.name!r} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        self.started_s = time.monotonic() - began
                        log(f"server {self.name!r} ready in {self.started_s:.1f} s")
                        return
                time.sleep(0.3)
        raise BenchError(
            f"server {self.name!r} not ready after {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def tree(self) -> list[psutil.Process]:
        if self.process is None or self.process.poll() is not None:
            return []
        return process_family(self.process.pid)

    def rss(self) -> int:
        total = 0
        for process in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_server(self.process, timeout=15)
        log(f"server {self.name!r} stopped")


class RssSampler(threading.Thread):
    """Peak RSS of the server's process tree, overall and per phase (sum over processes)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.server: Server | None = None
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            server = self.server
            if server is None:
                continue
            total = server.rss()
            key = f"{server.name}/{self.phase}"
            if total > self.peaks.get(key, 0):
                self.peaks[key] = total

    def stop(self) -> None:
        self._stop_event.set()

    def peak(self, prefix: str = "") -> int:
        return max((v for k, v in self.peaks.items() if k.startswith(prefix)), default=0)


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
        return times.user + times.nice + times.system + times.irq + times.softirq

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
        root = self.server.process.pid if self.server.process else None
        self.arbiter_pct = round(spent.pop(root, 0.0), 1)
        self.workers_pct = [round(spent[pid], 1) for pid in sorted(spent)]


# --------------------------------------------------------------------------- measurements

BATCH_LINE = re.compile(
    r"^(?P<name>[\w:]*attrition_batch_size_(?P<kind>sum|count))"
    r"\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)",
    re.MULTILINE,
)


def batch_totals(url: str, endpoint: str = "predict") -> tuple[float, float]:
    """(sum, count) of the `attrition_batch_size` histogram for an endpoint, all workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for match in BATCH_LINE.finditer(text):
        if f'endpoint="{endpoint}"' in match["labels"]:
            totals[match["kind"]] += float(match["value"])
    return totals["sum"], totals["count"]


@dataclass
class Context:
    args: argparse.Namespace
    tmp: Path
    rows: Rows
    key: str
    body_file: Path
    employee: dict[str, Any]
    sampler: RssSampler
    checks: list[dict[str, Any]] = field(default_factory=list)

    def check(self, run: str, rows: int, answered: int, in_flight: int, found: int) -> bool:
        """Every 2xx answer has its row; extra rows only for calls abandoned in flight."""
        ok = found == answered and answered <= rows <= answered + in_flight
        self.checks.append(
            {
                "run": run,
                "rows_written": rows,
                "answers_2xx": answered,
                "answered_ids_found": found,
                "abandoned_in_flight": in_flight,
                "ok": ok,
            }
        )
        if not ok:
            log(
                f"ROWS MISMATCH in {run}: {rows} rows, {answered} 2xx answers "
                f"({found} of their ids found), {in_flight} abandoned in flight"
            )
        return ok


def wait_for_quiet(server: Server, limit: float, window: float = 2.0) -> None:
    """Hold a run until other processes use < NOISY_PCT of the CPUs, for at most `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        with CpuWatch(server) as cpu:
            time.sleep(window)
        if cpu.foreign_pct < NOISY_PCT or time.monotonic() >= deadline:
            return
        log(f"machine busy (other processes {cpu.foreign_pct:.0f}% CPU): waiting")


def run_wrk(ctx: Context, server: Server, connections: int, duration: float, label: str) -> dict:
    """One wrk run against /predict, with the row check and the batcher's mean batch."""
    out = ctx.tmp / f"wrk-{server.name}-{label}.json"
    threads = max(1, min(ctx.args.threads, connections))
    command = [
        "wrk",
        *("-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s"),
        *("--timeout", "10s", "--latency", "-s", str(LUA)),
        f"{server.url}/predict",
    ]
    env = os.environ | {
        "BENCH_BODY_FILE": str(ctx.body_file),
        "BENCH_API_KEY": ctx.key,
        "BENCH_OUT": str(out),
    }
    if label == "measured" and ctx.args.wait_quiet > 0:
        wait_for_quiet(server, ctx.args.wait_quiet)
    before = ctx.rows.count()
    batch_sum, batch_count = batch_totals(server.url)
    ctx.sampler.phase = label
    with CpuWatch(server) as cpu:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=duration + 60, check=False
        )
    ctx.sampler.phase = "idle"
    if done.returncode != 0 or not out.exists():
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(out.read_text())
    ids = [line for line in Path(f"{out}.ids").read_text().splitlines() if line]
    after = ctx.rows.settled()
    batch_sum_after, batch_count_after = batch_totals(server.url)

    statuses = {int(k): v for k, v in result["statuses"].items()}
    answered = sum(v for k, v in statuses.items() if 200 <= k < 300)
    in_flight = max(0, result["sent"] - result["requests"])
    errors = (
        result["requests"]
        - answered
        + sum(result["errors"][k] for k in ("connect", "read", "write", "timeout"))
    )
    calls = batch_count_after - batch_count
    run = f"{server.name} /predict c={connections} {label}"
    ok = ctx.check(run, after - before, answered, in_flight, ctx.rows.found(ids))
    latency = result["latency_ms"]
    summary = {
        "server": server.name,
        "label": label,
        "connections": connections,
        "threads": threads,
        "duration_s": round(result["duration_s"], 3),
        "requests": result["requests"],
        "rps": round(answered / result["duration_s"], 1),
        "p50_ms": latency["p50"],
        "p90_ms": latency["p90"],
        "p99_ms": latency["p99"],
        "max_ms": latency["max"],
        "mean_ms": latency["mean"],
        "statuses": statuses,
        "errors": errors,
        "wrk_errors": result["errors"],
        "mean_batch": round((batch_sum_after - batch_sum) / calls, 2) if calls else None,
        "pipeline_calls": int(calls),
        "rows_written": after - before,
        "rows_ok": ok,
        "peak_rss_mb": round(ctx.sampler.peaks.get(f"{server.name}/{label}", 0) / 2**20, 1),
        "foreign_cpu_pct": round(cpu.foreign_pct, 1),
        "steal_cpu_pct": round(cpu.steal_pct, 1),
        "workers_cpu_pct": cpu.workers_pct,
        "arbiter_cpu_pct": cpu.arbiter_pct,
    }
    log(
        f"{run}: {summary['rps']} req/s, p50 {latency['p50']:.1f} ms, "
        f"p99 {latency['p99']:.1f} ms, errors {errors}, mean batch {summary['mean_batch']}, "
        f"workers CPU {'/'.join(f'{w:.0f}' for w in cpu.workers_pct)} %, "
        f"other processes {cpu.foreign_pct:.0f}% CPU, steal {cpu.steal_pct:.0f}%"
    )
    return summary


def run_predict_batch(ctx: Context, server: Server, size: int, calls: int) -> dict:
    """Median latency of `calls` POST /predict_batch of `size` employees (after one warm-up)."""
    body = json.dumps([ctx.employee] * size).encode()
    headers = {"X-API-Key": ctx.key, "Content-Type": "application/json"}
    before = ctx.rows.count()
    timings: list[float] = []
    statuses: list[int] = []
    ids: list[str] = []
    ctx.sampler.phase = f"predict_batch-{size}"
    with httpx.Client(timeout=120) as client:
        for index in range(calls + 1):
            started = time.perf_counter()
            response = client.post(f"{server.url}/predict_batch", content=body, headers=headers)
            elapsed = time.perf_counter() - started
            statuses.append(response.status_code)
            if response.status_code == 200:
                answers = response.json()
                if len(answers) != size:
                    raise BenchError(f"/predict_batch of {size} answered {len(answers)} rows")
                ids.extend(a["prediction_id"] for a in answers)
            if index > 0:  # the first call is the warm-up
                timings.append(elapsed)
    ctx.sampler.phase = "idle"
    after = ctx.rows.settled()
    answered = sum(size for s in statuses if s == 200)
    run = f"{server.name} /predict_batch n={size}"
    ok = ctx.check(run, after - before, answered, 0, ctx.rows.found(ids))
    median = statistics.median(timings)
    summary = {
        "size": size,
        "calls": calls,
        "median_ms": round(median * 1000, 2),
        "min_ms": round(min(timings) * 1000, 2),
        "max_ms": round(max(timings) * 1000, 2),
        "rows_per_s": round(size / median, 1),
        "statuses": statuses,
        "errors": sum(1 for s in statuses if s != 200),
        "rows_written": after - before,
        "rows_ok": ok,
    }
    log(f"{run}: median {summary['median_ms']} ms, {summary['rows_per_s']} rows/s")
    return summary


def serve_and_measure(
    ctx: Context, server: Server, *, batch_sizes: tuple[int, ...] = ()
) -> dict[str, Any]:
    ctx.sampler.server = server
    try:
        server.start()
        # A warm-up at each concurrency first: the CORK dispatcher sizes its wait from the
        # waits it has just seen, so a run inherits the previous run's batching habit.
        warm, runs = [], []
        for connections in ctx.args.connections:
            warm.append(run_wrk(ctx, server, connections, ctx.args.warmup, "warm-up"))
            runs.append(run_wrk(ctx, server, connections, ctx.args.duration, "measured"))
        batches = [run_predict_batch(ctx, server, n, ctx.args.calls) for n in batch_sizes]
    finally:
        ctx.sampler.server = None
        server.stop()
    return {
        "config": str(server.config),
        "ready_after_s": round(server.started_s, 1),
        "warm_ups": warm,
        "predict": runs,
        "predict_batch": batches,
        "peak_rss_mb": round(ctx.sampler.peak(f"{server.name}/") / 2**20, 1),
        "log": str(server.log_path),
    }


def timed(function: Callable[[], Any], *, min_runs: int = 5, min_seconds: float = 0.5) -> float:
    """Median wall time of `function`, in seconds, over >= min_runs and >= min_seconds."""
    function()  # warm-up
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - began < min_seconds:
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
        if len(times) >= 200:
            break
    return statistics.median(times)


def in_process(
    home: Path, url: str, employee: dict[str, Any], sizes: tuple[int, ...], *, db_writers: int
) -> dict:
    """The work of one batch without HTTP, workers or the batcher: the ceiling per core; then
    the database's ceiling with `db_writers` processes (0 skips it)."""
    os.environ["BENTOML_HOME"] = str(home)  # before anything imports bentoml
    from pydantic import TypeAdapter

    from persistence.engine import build_engine, session_scope
    from persistence.queries import write_predictions
    from scoring.scorer import Scorer
    from serving.predictor import Predictor, ScoringRequest
    from serving.responses import Prediction
    from training.contract import Employee, employees_frame
    from training.store import load

    stored = load()
    scorer = Scorer(stored.pipeline, stored.threshold)
    engine = build_engine(url)
    predictor = Predictor(scorer, stored.tag, engine)
    many = TypeAdapter(list[Employee])
    answers_adapter = TypeAdapter(list[Prediction])
    results: dict[str, Any] = {"model": stored.tag, "explanation": scorer.explanation_method}
    for size in sizes:
        body = json.dumps([employee] * size).encode()
        employees = many.validate_json(body)
        frame = employees_frame(employees)
        requests = [ScoringRequest(e, "bench") for e in employees]
        answers = predictor.score_and_store(requests, "bench")
        steps = {
            "validate": timed(lambda b=body: many.validate_json(b)),
            "frame": timed(lambda e=employees: employees_frame(e)),
            "predict_proba": timed(lambda f=frame: stored.pipeline.predict_proba(f)),
            "score": timed(lambda f=frame: scorer.score(f)),
            "score_and_store": timed(lambda r=requests: predictor.score_and_store(r, "bench")),
            "serialize": timed(lambda a=answers: answers_adapter.dump_json(a)),
        }
        total = steps["validate"] + steps["score_and_store"] + steps["serialize"]
        results[str(size)] = {
            **{f"{k}_ms": round(v * 1000, 3) for k, v in steps.items()},
            "predict_proba_rows_per_s": round(size / steps["predict_proba"], 1),
            "score_rows_per_s": round(size / steps["score"], 1),
            "end_to_end_ms": round(total * 1000, 3),
            "end_to_end_rows_per_s": round(size / total, 1),
        }
        log(f"in-process n={size}: {results[str(size)]}")

    # The batch write alone (COPY on PostgreSQL): 1000 rows shaped as the predictor builds them.
    scores = scorer.score(employees_frame([Employee.model_validate(employee)] * 1000))
    template = Employee.model_validate(employee).model_dump(mode="json", exclude_none=True)

    sample = [
        {
            "id": None, "created_at": datetime.now(UTC), "employee_id": None, "input": template,
            "probability": s.probability, "prediction": s.prediction,
            "threshold": scorer.threshold, "model_tag": stored.tag, "top_factors": s.top_factors,
            "latency_ms": 1.0, "request_id": "bench", "batch_id": None,
        }
        for s in scores
    ]  # fmt: skip

    def rows() -> list[dict[str, Any]]:
        return renumbered(sample)

    def insert() -> None:
        batch = rows()
        with session_scope(engine) as session:
            write_predictions(session, batch)

    build = timed(rows)
    insert_s = timed(insert, min_runs=5, min_seconds=1.0)
    results["insert_1000"] = {
        "build_rows_ms": round(build * 1000, 2),
        "insert_commit_ms": round((insert_s - build) * 1000, 2),
        "rows_per_s": round(1000 / (insert_s - build), 1),
    }
    log(f"in-process insert of 1000 rows: {results['insert_1000']}")
    engine.dispose()
    if db_writers:
        results["db_ceiling"] = db_ceiling(url, db_writers, sample[:DB_CEILING_BATCH])
    return results


DB_CEILING_BATCH = 16  # the mean batch /predict forms at 64 connections


def renumbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same rows as a new batch: fresh prediction ids and batch id."""
    batch_id = uuid.uuid4()
    return [row | {"id": uuid.uuid4(), "batch_id": batch_id} for row in rows]


def _commit_batches(url: str, batch: list[dict[str, Any]], seconds: float) -> int:
    """One writer process: `batch` again and again, one COPY + COMMIT each, for `seconds`."""
    from persistence.engine import build_engine, session_scope
    from persistence.queries import write_predictions

    engine = build_engine(url, pool_size=1, max_overflow=0)
    written, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            write_predictions(session, renumbered(batch))
        written += len(batch)
    engine.dispose()
    return written


def db_ceiling(
    url: str, writers: int, batch: list[dict[str, Any]], seconds: float = 5.0
) -> dict[str, Any]:
    """Rows/s PostgreSQL commits from `writers` processes of 16-row batches on this machine.

    What every replica's workers share: replicas add throughput until their sum reaches this.
    The writers' own Python (rows, CSV) runs on the same two cores, so it is a lower bound.
    """
    import multiprocessing

    began = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        counts = pool.starmap(_commit_batches, [(url, batch, seconds)] * writers)
    took = time.monotonic() - began
    result = {
        "writers": writers,
        "batch": len(batch),
        "rows_per_s": round(sum(counts) / seconds, 1),
        "commits_per_s": round(sum(counts) / len(batch) / seconds, 1),
        "elapsed_s": round(took, 1),
    }
    log(f"database ceiling: {result}")
    return result


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": subprocess.run(
            ["wrk", "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0:1],
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(git("status", "--porcelain").splitlines()),
    }


def by_connections(runs: list[dict], connections: int) -> dict:
    return next(r for r in runs if r["connections"] == connections)


def target_values(r: dict[str, Any]) -> list[tuple[str, Callable[[], float], str, bool]]:
    """(target, value, unit, higher is better) against the issue's thresholds."""
    predict = r["batching"]["predict"]
    batches = r["batching"]["predict_batch"]
    return [
        ("/predict, 64 connections >= 450 req/s", lambda: by_connections(predict, 64)["rps"],
         "req/s", True),
        ("/predict, 64 connections >= 4x the batching-disabled run", lambda: r["ratio"]["64"],
         "x", True),
        ("/predict, 16 connections p99 <= 150 ms", lambda: by_connections(predict, 16)["p99_ms"],
         "ms", False),
        ("/predict, 1 connection p50 <= 20 ms", lambda: by_connections(predict, 1)["p50_ms"],
         "ms", False),
        ("/predict_batch of 1000 employees <= 250 ms",
         lambda: next(b for b in batches if b["size"] == 1000)["median_ms"], "ms", False),
    ]  # fmt: skip


THRESHOLDS = (450.0, 4.0, 150.0, 20.0, 250.0)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    evaluated = []
    try:
        targets = target_values(results)
    except KeyError:
        return []
    for (name, value, unit, higher), threshold in zip(targets, THRESHOLDS, strict=True):
        try:
            measured = float(value())
        except (KeyError, StopIteration):
            evaluated.append({"target": name, "pass": None, "value": "not measured"})
            continue
        passes = measured >= threshold if higher else measured <= threshold
        shown = f"{measured:.2f}{unit}" if unit == "x" else f"{measured:.1f} {unit}"
        evaluated.append({"target": name, "pass": passes, "value": shown})
    return evaluated


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def ok(value: bool) -> str:
        return "ok" if value else "MISMATCH"

    lines: list[list[str]] = []
    for key, title in (("batching", "/predict, batching"), ("disabled", "/predict, no batching")):
        for run in results.get(key, {}).get("predict", []):
            batch = "-" if run["mean_batch"] is None else f"{run['mean_batch']:.1f}"
            lines.append(
                [
                    *(title, f"{run['connections']} conn", f"{run['rps']:.0f} req/s"),
                    *(ms(run["p50_ms"]), ms(run["p90_ms"]), ms(run["p99_ms"])),
                    *(str(run["errors"]), batch, ok(run["rows_ok"])),
                    "/".join(f"{w:.0f}" for w in run.get("workers_cpu_pct", [])),
                ]
            )
    for connections, ratio in results.get("ratio", {}).items():
        lines.append(["batching / no batching", f"{connections} conn", f"{ratio:.2f}x"])
    for run in results.get("batching", {}).get("predict_batch", []):
        lines.append(
            [
                *(
                    "/predict_batch, median",
                    f"{run['size']} empl.",
                    f"{run['rows_per_s']:.0f} rows/s",
                ),
                *(ms(run["median_ms"]), "-", "-", str(run["errors"]), str(run["size"])),
                ok(run["rows_ok"]),
            ]
        )
    local = results.get("in_process", {})
    for label, speed, took in (
        ("in-process pipeline.predict_proba", "predict_proba_rows_per_s", "predict_proba_ms"),
        ("in-process Scorer.score", "score_rows_per_s", "score_ms"),
        ("in-process validate+score+store+json", "end_to_end_rows_per_s", "end_to_end_ms"),
    ):
        for size in (k for k in local if k.isdigit()):
            step = local[size]
            speed_cell, took_cell = f"{step[speed]:.0f} rows/s", f"{step[took]:.1f}"
            lines.append([label, f"{size} empl.", speed_cell, took_cell, "-", "-", "-", size])
    if "insert_1000" in local:
        insert = local["insert_1000"]
        lines.append(
            [
                *("in-process COPY+COMMIT", "1000 rows", f"{insert['rows_per_s']:.0f} rows/s"),
                *(f"{insert['insert_commit_ms']:.1f}", "-", "-", "-", "1000"),
            ]
        )
    if "db_ceiling" in local:
        ceiling = local["db_ceiling"]
        lines.append(
            [
                "database ceiling, COPY+COMMIT",
                f"{ceiling['writers']} writers",
                f"{ceiling['rows_per_s']:.0f} rows/s",
                *("-", "-", "-", "-", str(ceiling["batch"])),
            ]
        )
    for key, title in (
        ("batching", "peak RSS, server tree"),
        ("disabled", "peak RSS, no batching"),
    ):
        if key in results:
            lines.append([title, "all runs", f"{results[key]['peak_rss_mb']:.0f} MB"])
    return lines


def table(results: dict[str, Any]) -> str:
    """The plain-text report: one aligned table, then the targets and the checks."""
    header = ["scenario", "load", "throughput", "p50 ms", "p90 ms", "p99 ms", "errors", "batch",
              "rows=2xx", "worker CPU %"]  # fmt: skip
    lines = [row + [""] * (len(header) - len(row)) for row in table_rows(results)]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [render(header), rule, *(render(row) for row in lines), rule]
    for target in results.get("targets", []):
        verdict = {True: "PASS", False: "MISS", None: "----"}[target["pass"]]
        out.append(f"{verdict}  {target['target']}: {target['value']}")
    checks = results.get("checks", [])
    bad = [c["run"] for c in checks if not c["ok"]]
    out.append(f"rows written == 2xx answers: {len(checks) - len(bad)}/{len(checks)} runs ok")
    out.extend(f"  MISMATCH in {run}" for run in bad)
    for key in ("batching", "disabled"):
        for run in results.get(key, {}).get("predict", []):
            foreign, steal = run.get("foreign_cpu_pct", 0), run.get("steal_cpu_pct", 0)
            if foreign >= NOISY_PCT or steal >= NOISY_PCT:
                out.append(
                    f"WARNING  other processes used {foreign:.0f}% of the CPUs (hypervisor "
                    f"steal {steal:.0f}%) during {run['server']} c={run['connections']}: "
                    "that run understates the service"
                )
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of wrk warm-up before each concurrency"
    )
    parser.add_argument(
        "--connections",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=(1, 16, 64),
        help="comma-separated wrk connection counts (default 1,16,64)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most conns)")
    parser.add_argument("--calls", type=int, default=5, help="timed /predict_batch calls per size")
    parser.add_argument(
        "--batch-sizes",
        type=lambda s: tuple(int(c) for c in s.split(",")),
        default=(1, 100, 1000),
        help="employees per /predict_batch call (default 1,100,1000)",
    )
    parser.add_argument(
        "--fresh-store",
        action="store_true",
        help="train into a temporary BentoML store even if the default one has a model",
    )
    parser.add_argument(
        "--skip-disabled", action="store_true", help="skip the batching-disabled server"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each measured run, wait up to SECONDS for other processes to go quiet",
    )
    parser.add_argument(
        "--workers", type=int, help="override services.attrition.workers (scaling runs)"
    )
    parser.add_argument(
        "--db-writers",
        type=int,
        default=4,
        help="processes committing 16-row batches for the database ceiling (0 skips it)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep logs and wrk outputs")
    parser.add_argument(
        "--fail-on-miss", action="store_true", help="exit 3 when a performance target is missed"
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH / "results")
    return parser.parse_args(argv)


def ensure_wrk() -> bool:
    """wrk on PATH; as root on Debian/Ubuntu, apt-get installs it (updating the lists once)."""
    if shutil.which("wrk"):
        return True
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for step in (install, ["apt-get", "update", "-q"], install):
        log(" ".join(step))
        done = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
        if step is install and done.returncode == 0:
            break
    return shutil.which("wrk") is not None


def server_config(tmp: Path, name: str, *, workers: int | None, max_batch_size: int | None) -> Path:
    """configuration.yaml, with `services.attrition.workers` and `.batching.max_batch_size`
    replaced when given (batch size 1 = batching disabled: every call is its own batch)."""
    config = yaml.safe_load((REPO / "configuration.yaml").read_text())
    service = config.setdefault("services", {}).setdefault("attrition", {})
    if workers is not None:
        service["workers"] = workers
    if max_batch_size is not None:
        service.setdefault("batching", {})["max_batch_size"] = max_batch_size
    path = tmp / f"configuration-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not ensure_wrk():
        log("wrk is not installed and could not be: apt-get install -y wrk (or brew install wrk)")
        return 2
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="attrition-bench-"))
    employee = employee_body()
    body_file = tmp / "employee.json"
    body_file.write_text(json.dumps(employee))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    sampler = RssSampler()
    sampler.start()
    rows: Rows | None = None
    try:
        with bench_database(tmp) as (url, where):
            results["database"] = where
            home = default_store()
            if args.fresh_store or not store_has_model(home):
                home = tmp / "bentoml"
            env = os.environ | {
                "BENTOML_HOME": str(home),
                "DATABASE_URL": url,
                "ATTRITION_DATABASE_URL": url,
                "ATTRITION_REPORTS_DIR": str(tmp / "reports"),
                "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONUNBUFFERED": "1",
            }
            if not store_has_model(home):
                log(f"training a model into {home} (generated data, 1176 rows, 3 folds)")
                attrition(env, "train", "--generated-rows", "1176", "--folds", "3")
            results["bentoml_home"] = "temporary" if home.is_relative_to(tmp) else str(home)
            attrition(env, "db", "upgrade")
            key = attrition(env, "keys", "create", f"bench-{secrets.token_hex(3)}")
            key = key.strip().splitlines()[-1].strip()
            rows = Rows(url)
            ctx = Context(args, tmp, rows, key, body_file, employee, sampler)

            workers = args.workers
            batching_config = server_config(tmp, "batching", workers=workers, max_batch_size=None)
            batching = Server("batching", batching_config, env, tmp)
            results["batching"] = serve_and_measure(ctx, batching, batch_sizes=args.batch_sizes)
            if not args.skip_disabled:
                disabled_config = server_config(tmp, "disabled", workers=workers, max_batch_size=1)
                disabled = Server("disabled", disabled_config, env, tmp)
                results["disabled"] = serve_and_measure(ctx, disabled)
                results["ratio"] = {
                    str(on["connections"]): round(on["rps"] / off["rps"], 2) if off["rps"] else 0
                    for on, off in zip(
                        results["batching"]["predict"],
                        results["disabled"]["predict"],
                        strict=True,
                    )
                }
            results["in_process"] = in_process(
                home, url, employee, args.batch_sizes, db_writers=args.db_writers
            )
            results["checks"] = ctx.checks
            rows.close()
            rows = None
    finally:
        sampler.stop()
        if rows is not None:
            rows.close()
        if args.keep_temp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results["elapsed_s"] = round(time.monotonic() - began, 1)
    results["targets"] = evaluate_targets(results)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"whole run {results['elapsed_s']:.0f} s; results: {shown}")
    if not all(c["ok"] for c in results["checks"]):
        return 1
    if args.fail_on_miss and not all(t["pass"] for t in results["targets"]):
        return 3
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"error: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
