"""The results: what machine, one plain-text table with the targets and checks, the JSON."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from bench.monitor import NOISY_PCT
from tests.support import REPO


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
        ).stdout.splitlines()[0:1]
        if shutil.which("wrk")
        else [],
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(git("status", "--porcelain").splitlines()),
        "load_average_start": [round(load, 2) for load in os.getloadavg()],
    }


# The servers of a run: the key of their results, and the title of their rows.
SERVERS = (
    ("batching", "/predict, batching"),
    ("disabled", "/predict, no batching"),
    ("no_shadow", "/predict, champion pinned"),
    ("shadow", "/predict, with a shadow"),
)


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def ok(value: bool) -> str:
        return "ok" if value else "MISMATCH"

    lines: list[list[str]] = []
    for key, title in SERVERS:
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
    if "shadow_cost" in results:
        cost = results["shadow_cost"]
        lines.append(
            [
                *("shadow / no shadow", f"{cost['connections']} conn", f"{cost['rps_pct']:.1f} %"),
                *("-", "-", f"{cost['p99_ratio']:.2f}x", "-", "-", ok(not cost["rows_difference"])),
            ]
        )
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
    for key, _ in SERVERS:
        if key in results:
            server = results[key]
            lines.append(
                [
                    f"{key.replace('_', '-')} server",
                    "peak RSS, tree",
                    f"{server['peak_rss_mb']:.0f} MB",
                ]
            )
            lines.append(["", "peak RSS, 1 worker", f"{server['peak_worker_rss_mb']:.0f} MB"])
            lines.append(["", "serve to /readyz", f"{server['ready_after_s']:.1f} s"])
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
    if "shadow" in results:
        shadow = results["shadow"]
        same = "==" if shadow["shadow_rows"] == shadow["champion_rows"] else "!="
        out.append(
            f"shadow rows {same} champion rows after the drain: {shadow['shadow_rows']} shadow, "
            f"{shadow['champion_rows']} champion; attrition_shadow_failures_total counted "
            f"{results['shadow_cost']['failures_counted']:.0f} before the stop"
        )
    if "load_average_end" in results:
        start = "/".join(f"{x:.2f}" for x in results["machine"]["load_average_start"])
        end = "/".join(f"{x:.2f}" for x in results["load_average_end"])
        cpus = results["machine"]["cpus"]
        out.append(
            f"load average (1/5/15 min, {cpus} CPUs): {start} at the start, {end} at the end"
        )
    for key, _ in SERVERS:
        for run in results.get(key, {}).get("predict", []):
            foreign, steal = run.get("foreign_cpu_pct", 0), run.get("steal_cpu_pct", 0)
            if foreign >= NOISY_PCT or steal >= NOISY_PCT:
                out.append(
                    f"WARNING  other processes used {foreign:.0f}% of the CPUs (hypervisor "
                    f"steal {steal:.0f}%) during {run['server']} c={run['connections']}: "
                    "that run understates the service"
                )
    return "\n".join(out)


def write_results(results: dict[str, Any], folder: Path) -> Path:
    """bench/results/<timestamp>.json (or another folder): the whole record of the run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path
