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
    return f"{value:.{digits}f}x" if unit == "x" else f"{value:.{digits}f} {unit}"


@dataclass(frozen=True)
class Target:
    measure: str
    threshold: float
    unit: str
    higher_is_better: bool
    value: Callable[[dict[str, Any]], float]

    @property
    def label(self) -> str:
        bound = ">=" if self.higher_is_better else "<="
        return f"{self.measure} {bound} {with_unit(self.threshold, self.unit, 0)}"

    def met_by(self, measured: float) -> bool:
        if self.higher_is_better:
            return measured >= self.threshold
        return measured <= self.threshold


TARGETS = (
    Target("/predict, 64 connections", 450, "req/s", True, lambda r: _predict(r, 64)["rps"]),
    Target(
        "/predict, 64 connections, batching / no batching", 4, "x", True, lambda r: r["ratio"]["64"]
    ),
    Target("/predict, 16 connections p99", 150, "ms", False, lambda r: _predict(r, 16)["p99_ms"]),
    Target("/predict, 1 connection p50", 20, "ms", False, lambda r: _predict(r, 1)["p50_ms"]),
    Target(
        "/predict_batch of 1000 employees",
        250,
        "ms",
        False,
        lambda r: _predict_batch(r, 1000)["median_ms"],
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
    """Each target: passed (True/False), or None when the run did not measure it."""
    evaluated: list[dict[str, Any]] = []
    for target in TARGETS:
        try:
            measured = float(target.value(results))
        except (KeyError, StopIteration, TypeError):  # a scenario not run
            evaluated.append({"target": target.label, "pass": None, "value": "not measured"})
            continue
        shown = with_unit(measured, target.unit, 2 if target.unit == "x" else 1)
        evaluated.append({"target": target.label, "pass": target.met_by(measured), "value": shown})
    return evaluated
