"""The performance targets: each stated once, with how to read its value from the results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _predict(results: dict[str, Any], connections: int) -> dict[str, Any]:
    return next(r for r in results["batching"]["predict"] if r["connections"] == connections)


def _predict_batch(results: dict[str, Any], size: int) -> dict[str, Any]:
    return next(b for b in results["batching"]["predict_batch"] if b["size"] == size)


def with_unit(value: float, unit: str, digits: int) -> str:
    if unit == "x":
        return f"{value:,.{digits}f}x"
    return f"{value:,.{digits}f} {unit}".rstrip()


@dataclass(frozen=True)
class Target:
    """A measure and its bound; `threshold` None: reported, not judged (the issue sets none)."""

    measure: str
    threshold: float | None
    unit: str
    higher_is_better: bool
    value: Callable[[dict[str, Any]], float]

    @property
    def label(self) -> str:
        if self.threshold is None:
            return f"{self.measure} (reported)"
        bound = ">=" if self.higher_is_better else "<="
        digits = 0 if self.threshold == int(self.threshold) else 1
        return f"{self.measure} {bound} {with_unit(self.threshold, self.unit, digits)}"

    def met_by(self, measured: float) -> bool | None:
        if self.threshold is None:
            return None
        if self.higher_is_better:
            return measured >= self.threshold
        return measured <= self.threshold


# Issue 17's targets (this round: every capability on, shadow off unless stated), issue 16's
# shadow cost, and the flood and batching targets of earlier rounds, which still hold.
TARGETS = (
    Target("/predict, 64 connections", 2000, "req/s", True, lambda r: _predict(r, 64)["rps"]),
    Target("/predict, 64 connections p99", 100, "ms", False, lambda r: _predict(r, 64)["p99_ms"]),
    Target("/predict, 64 connections errors", 0, "", False, lambda r: _predict(r, 64)["errors"]),
    Target(
        "/predict, 64 connections rows != 2xx answers",
        0,
        "",
        False,
        lambda r: _predict(r, 64)["rows_mismatch"],
    ),
    Target(
        "/predict, 64 connections, batching / no batching", 4, "x", True, lambda r: r["ratio"]["64"]
    ),
    Target("/predict, 16 connections p99", 50, "ms", False, lambda r: _predict(r, 16)["p99_ms"]),
    Target("/predict, 1 connection p50", 5, "ms", False, lambda r: _predict(r, 1)["p50_ms"]),
    Target(
        "/predict_batch of 1000 employees",
        100,
        "ms",
        False,
        lambda r: _predict_batch(r, 1000)["median_ms"],
    ),
    Target(
        "/predict, 64 connections, with a shadow / without",
        85,
        "%",
        True,
        lambda r: r["shadow_cost"]["rps_pct"],
    ),
    Target(
        "/predict, 64 connections p99, with a shadow / without",
        1.3,
        "x",
        False,
        lambda r: r["shadow_cost"]["p99_ratio"],
    ),
    Target(
        "shadow rows != champion rows after the drain",
        0,
        "",
        False,
        lambda r: r["shadow_cost"]["rows_difference"],
    ),
    Target(
        "time from `bentoml serve` to /readyz 200",
        None,
        "s",
        False,
        lambda r: r["batching"]["ready_after_s"],
    ),
    Target(
        "time from `bentoml serve` to /readyz 200, with a shadow",
        None,
        "s",
        False,
        lambda r: r["shadow"]["ready_after_s"],
    ),
    Target(
        "peak RSS of one worker, /predict 64 connections, champion alone",
        None,
        "MB",
        False,
        lambda r: r["shadow_cost"]["worker_rss_mb"]["without"],
    ),
    Target(
        "peak RSS of one worker, /predict 64 connections, with a shadow",
        None,
        "MB",
        False,
        lambda r: r["shadow_cost"]["worker_rss_mb"]["with"],
    ),
    Target(
        "good caller's p50 under a random-key flood / quiet",
        2,
        "x",
        False,
        lambda r: r["batching"]["flood"]["good_p50_ratio"],
    ),
    Target(
        "audit rows per 10,000 refused calls (aggregated)",
        50,
        "rows",
        False,
        lambda r: (
            r["batching"]["flood"]["audit_rows"]
            * 10_000
            / max(1, r["batching"]["flood"]["refused"])
        ),
    ),
)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: passed (True/False), or None when the run did not measure it or the target
    is only reported."""
    evaluated: list[dict[str, Any]] = []
    for target in TARGETS:
        try:
            measured = float(target.value(results))
        except (KeyError, StopIteration, TypeError):  # a scenario not run
            evaluated.append({"target": target.label, "pass": None, "value": "not measured"})
            continue
        digits = {"x": 2, "": 0}.get(target.unit, 1)
        shown = with_unit(measured, target.unit, digits)
        evaluated.append({"target": target.label, "pass": target.met_by(measured), "value": shown})
    return evaluated
