"""The benchmark's arithmetic and report (`make bench` itself is too long for the suite): the
shadow's cost against the run without it, the targets it is judged by, the printed table, the
memory per worker."""

from __future__ import annotations

import time
from typing import Any

from bench.monitor import RssSampler
from bench.report import table
from bench.shadow import FAILURES, SHADOW_CONNECTIONS, shadow_cost
from bench.targets import TARGETS, evaluate_targets


def _run(connections: int, rps: float, p99: float, worker_mb: float) -> dict[str, Any]:
    return {
        "server": "s", "connections": connections, "rps": rps, "p50_ms": p99 / 3,
        "p90_ms": p99 / 2, "p99_ms": p99, "errors": 0, "mean_batch": 8.0, "rows_ok": True,
        "rows_mismatch": 0, "peak_worker_rss_mb": worker_mb, "workers_cpu_pct": [90.0, 88.0],
    }  # fmt: skip


def _server(runs: list[dict[str, Any]], ready: float, worker_mb: float) -> dict[str, Any]:
    return {
        "predict": runs, "predict_batch": [], "ready_after_s": ready, "peak_rss_mb": 900.0,
        "peak_worker_rss_mb": worker_mb,
    }  # fmt: skip


def _results(*, shadow_rps: float, shadow_rows: int) -> dict[str, Any]:
    batching = _server([_run(16, 1100, 40, 280), _run(64, 2100, 70, 295)], 14.0, 300)
    without = _server([_run(SHADOW_CONNECTIONS, 2000, 80, 290)], 14.5, 291)
    shadow = _server([_run(SHADOW_CONNECTIONS, shadow_rps, 96, 294)], 15.5, 301)
    shadow |= {
        "champion_rows": 1000,
        "shadow_rows": shadow_rows,
        "counters": {FAILURES: 1000 - shadow_rows},
    }
    results = {
        "machine": {"cpus": 2, "load_average_start": [1.0, 0.5, 0.2]},
        "load_average_end": [2.0, 1.0, 0.4],
        "batching": batching,
        "no_shadow": without,
        "shadow": shadow,
        "shadow_cost": shadow_cost(without, shadow),
    }
    results["targets"] = evaluate_targets(results)
    return results


def _verdicts(results: dict[str, Any]) -> dict[str, tuple[bool | None, str]]:
    return {t["target"]: (t["pass"], t["value"]) for t in results["targets"]}


def test_the_shadow_costs_a_share_of_throughput_a_p99_ratio_and_worker_memory():
    cost = _results(shadow_rps=1800, shadow_rows=1000)["shadow_cost"]
    assert cost == {
        "connections": 64,
        "rps_pct": 90.0,
        "p99_ratio": 1.2,
        "rows_difference": 0,
        "failures_counted": 0,
        "worker_rss_mb": {"without": 290, "with": 294},
    }


def test_the_shadow_targets_pass_and_miss_on_their_bounds():
    met = _verdicts(_results(shadow_rps=1700, shadow_rows=1000))
    assert met["/predict, 64 connections, with a shadow / without >= 85 %"] == (True, "85.0 %")
    assert met["/predict, 64 connections p99, with a shadow / without <= 1.3x"] == (True, "1.20x")
    assert met["shadow rows != champion rows after the drain <= 0"] == (True, "0")
    assert met["/predict, 64 connections >= 2,000 req/s"] == (True, "2,100.0 req/s")

    missed = _verdicts(_results(shadow_rps=1600, shadow_rows=990))
    assert missed["/predict, 64 connections, with a shadow / without >= 85 %"] == (False, "80.0 %")
    assert missed["shadow rows != champion rows after the drain <= 0"] == (False, "10")


def test_reported_rows_carry_a_value_and_no_verdict_and_unmeasured_ones_say_so():
    met = _verdicts(_results(shadow_rps=1800, shadow_rows=1000))
    assert met["time from `bentoml serve` to /readyz 200 (reported)"] == (None, "14.0 s")
    assert met["peak RSS of one worker, /predict 64 connections, with a shadow (reported)"] == (
        None,
        "294.0 MB",
    )
    assert met["/predict, 1 connection p50 <= 5 ms"] == (None, "not measured")
    assert len(met) == len(TARGETS)


def test_the_table_prints_the_shadow_rows_its_check_and_the_load_average():
    printed = table(_results(shadow_rps=1800, shadow_rows=990))
    lines = printed.splitlines()
    for title, rps in (("/predict, with a shadow", 1800), ("/predict, champion pinned", 2000)):
        assert any(line.startswith(title) and f"{rps} req/s" in line for line in lines), title
    [cost] = [line for line in lines if line.startswith("shadow / no shadow")]
    assert "90.0 %" in cost and "1.20x" in cost and "MISMATCH" in cost
    assert (
        "shadow rows != champion rows after the drain: 990 shadow, 1000 champion; "
        "attrition_shadow_failures_total counted 10 before the stop"
    ) in lines
    assert "load average (1/5/15 min, 2 CPUs): 1.00/0.50/0.20 at the start, " in printed
    assert "PASS  /predict, 64 connections p99, with a shadow / without <= 1.3x: 1.20x" in lines


class _Tree:
    """A server whose arbiter (pid 1) and two workers hold fixed memory."""

    name = "s"

    def pid(self) -> int:
        return 1

    def rss(self) -> dict[int, int]:
        return {1: 100, 2: 300, 3: 200}


def test_the_sampler_keeps_the_tree_and_the_largest_worker_apart():
    sampler = RssSampler(interval=0.01)
    sampler.server = _Tree()  # type: ignore[assignment]
    sampler.phase = "measured"
    sampler.start()
    deadline = time.monotonic() + 10
    while "s/measured" not in sampler.worker_peaks and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    sampler.join()
    assert sampler.peak("s/") == 600
    assert sampler.peak("s/", worker=True) == 300
