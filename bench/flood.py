"""A flood of refused calls beside a good caller: what the attacker costs the good caller and
the audit log.

wrk sends /predict with a new random, well-formed key on every call (each a cache miss, then a
401) while a good caller runs the usual /predict load at 4 connections; the same good load
without the flood comes first. Reported: the good caller's p50 with and without the flood, the
refused calls, and the audit rows they cost (refusals are aggregated per address and error).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from bench import BENCH, BenchError, log
from bench.load import Context, run_wrk
from bench.server import Server

GOOD_CONNECTIONS = 4
FLOOD_CONNECTIONS = 32


def run_flood(ctx: Context, server: Server, seconds: float) -> dict[str, Any]:
    quiet = run_wrk(ctx, server, GOOD_CONNECTIONS, seconds, "flood-quiet")
    out = ctx.tmp / "flood.json"
    started = datetime.now(UTC)
    flood = subprocess.Popen(
        [
            "wrk",
            *("-t", "1", "-c", str(FLOOD_CONNECTIONS), "-d", f"{max(1, round(seconds))}s"),
            *("--timeout", "10s", "-s", str(BENCH / "flood.lua")),
            f"{server.url}/predict",
        ],
        env=os.environ | {"BENCH_BODY_FILE": str(ctx.body_file), "BENCH_OUT": str(out)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    flooded = run_wrk(ctx, server, GOOD_CONNECTIONS, seconds, "flood-under")
    _, errors = flood.communicate(timeout=seconds + 60)
    if flood.returncode != 0 or not out.exists():
        raise BenchError(f"flood wrk failed ({flood.returncode}): {errors}")
    statuses = {int(k): v for k, v in json.loads(out.read_text()).items()}
    time.sleep(5)  # two flush windows of the refusal log
    audit_rows, counted = ctx.rows.refusals_since(started)
    summary = {
        "seconds": seconds,
        "refused": statuses.get(401, 0),
        "flood_statuses": statuses,
        "audit_rows": audit_rows,
        "audit_count": counted,
        "good_p50_quiet_ms": quiet["p50_ms"],
        "good_p50_flood_ms": flooded["p50_ms"],
        "good_p50_ratio": round(flooded["p50_ms"] / quiet["p50_ms"], 2) if quiet["p50_ms"] else 0,
        "good_errors": flooded["errors"],
    }
    log(
        f"{server.name} flood: {summary['refused']} refused calls -> {audit_rows} audit rows "
        f"counting {counted}; good caller p50 {quiet['p50_ms']:.1f} -> "
        f"{flooded['p50_ms']:.1f} ms ({summary['good_p50_ratio']}x)"
    )
    return summary
