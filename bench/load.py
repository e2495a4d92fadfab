"""The load scenarios against a running server: wrk on /predict, timed /predict_batch calls,
each followed by the check that the rows written equal the 2xx answers."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import BENCH, BenchError, log
from bench.database import Rows
from bench.monitor import CpuWatch, RssSampler, wait_for_quiet
from bench.server import Server

LUA = BENCH / "predict.lua"
BATCH_LINE = re.compile(
    r"^(?P<name>[\w:]*attrition_batch_size_(?P<kind>sum|count))"
    r"\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)",
    re.MULTILINE,
)


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


def batch_totals(url: str, endpoint: str = "predict") -> tuple[float, float]:
    """(sum, count) of the `attrition_batch_size` histogram for an endpoint, all workers."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for match in BATCH_LINE.finditer(text):
        if f'endpoint="{endpoint}"' in match["labels"]:
            totals[match["kind"]] += float(match["value"])
    return totals["sum"], totals["count"]


def counter_total(url: str, name: str) -> float:
    """A counter of the server's /metrics, summed over its workers and labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith(name)
    )


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

    def check(self, run: str, rows: int, answered: int, in_flight: int, found: int) -> int:
        """Every 2xx answer has its row; extra rows only for calls abandoned in flight. Returns
        the mismatches: answers whose row is missing, plus rows no call accounts for."""
        mismatch = abs(answered - found) + max(0, rows - answered - in_flight)
        ok = mismatch == 0  # then rows >= answered too: the found rows are among them
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
        return mismatch


def run_wrk(
    ctx: Context, server: Server, connections: int, duration: float, label: str
) -> dict[str, Any]:
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
    mismatch = ctx.check(run, after - before, answered, in_flight, ctx.rows.found(ids))
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
        "rows_ok": not mismatch,
        "rows_mismatch": mismatch,
        "peak_rss_mb": round(ctx.sampler.peak(f"{server.name}/{label}") / 2**20, 1),
        "peak_worker_rss_mb": round(
            ctx.sampler.peak(f"{server.name}/{label}", worker=True) / 2**20, 1
        ),
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


def run_predict_batch(ctx: Context, server: Server, size: int, calls: int) -> dict[str, Any]:
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
    mismatch = ctx.check(run, after - before, answered, 0, ctx.rows.found(ids))
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
        "rows_ok": not mismatch,
    }
    log(f"{run}: median {summary['median_ms']} ms, {summary['rows_per_s']} rows/s")
    return summary


def serve_and_measure(
    ctx: Context,
    server: Server,
    *,
    concurrencies: tuple[int, ...] | None = None,
    batch_sizes: tuple[int, ...] = (),
    flood: float = 0,
    counters: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Start `server`, run /predict at each of `concurrencies` (default: the command line's),
    then the /predict_batch sizes and the flood, read `counters` from /metrics, and stop it."""
    from bench.flood import run_flood

    ctx.sampler.server = server
    try:
        server.start()
        # A warm-up at each concurrency first (caches, pools, the allocator's arenas).
        warm, runs = [], []
        for connections in concurrencies or ctx.args.connections:
            warm.append(run_wrk(ctx, server, connections, ctx.args.warmup, "warm-up"))
            runs.append(run_wrk(ctx, server, connections, ctx.args.duration, "measured"))
        batches = [run_predict_batch(ctx, server, n, ctx.args.calls) for n in batch_sizes]
        flooded = run_flood(ctx, server, flood) if flood else None
        totals = {name: counter_total(server.url, name) for name in counters}
    finally:
        ctx.sampler.server = None
        server.stop()
    return {
        "config": str(server.config),
        "ready_after_s": round(server.ready_after_s, 1),
        "warm_ups": warm,
        "predict": runs,
        "predict_batch": batches,
        "flood": flooded,
        "counters": totals,
        "peak_rss_mb": round(ctx.sampler.peak(f"{server.name}/") / 2**20, 1),
        "peak_worker_rss_mb": round(ctx.sampler.peak(f"{server.name}/", worker=True) / 2**20, 1),
        "log": str(server.log_path),
    }
