"""How the chosen model's decisions treat groups: fairlearn on out-of-fold predictions.

Attrition scoring profiles workers, a high-risk use under the EU AI Act (Annex III point 4);
Art. 10(2)(f) asks to examine possible bias and Art. 13 to state accuracy per group. Every
employee is judged here by a model that did not see them (out-of-fold), at the decision
threshold, grouped by `genre`, age band and `statut_marital`.

Point estimates come from fairlearn's `MetricFrame`; the 90 % intervals from scipy's
percentile bootstrap, resampling employees within each group (group sizes are fixed, as in
the per-group table). fairlearn's own bootstrap (`MetricFrame(n_boot=...)`) rebuilds a
MetricFrame per resample: 13 s per attribute for 500 resamples on the 1,176 real rows, while
the whole assessment below (three attributes, 1,000 resamples) takes 0.3 s.

The `fairness` block of the model metadata::

    {"method": str, "threshold": float, "dp_ratio_floor": 0.8,
     "attributes": {"genre" | "age_band" | "statut_marital": {
         "demographic_parity_ratio": float, "equalized_odds_difference": float,
         "groups": {group: {"count": int,
                            "selection_rate" | "recall" | "false_positive_rate" | "precision":
                                {"value": float, "ci90": [low, high]}}}}},
     "warnings": ["WARNING fairness: demographic-parity ratio for age_band is 0.34 (< 0.8)"]}

A rate that is undefined for a group (no leavers, or nobody flagged) has no `value`/`ci90`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_ratio,
    equalized_odds_difference,
)
from scipy.stats import DegenerateDataWarning, bootstrap

from training.contract import CATEGORIES

AGE_BANDS = ("<30", "30-44", ">=45")
ATTRIBUTES = ("genre", "age_band", "statut_marital")
# The "four-fifths rule": a group selected at under 80 % of another group's rate.
DP_RATIO_FLOOR = 0.8
INTERVAL = 0.9
RESAMPLES = 1000
METHOD = (
    "fairlearn MetricFrame on out-of-fold predictions at the decision threshold; "
    f"{INTERVAL:.0%} percentile-bootstrap intervals ({RESAMPLES} resamples of each group's "
    "employees, scipy); demographic-parity ratio = lowest / highest group selection rate; "
    "equalized-odds difference = largest between-group gap in recall or false-positive rate"
)

Rate = Callable[..., Any]


def age_band(age: pd.Series) -> pd.Series:
    """< 30, 30-44, >= 45 years."""
    bands = pd.cut(age, [-np.inf, 30, 45, np.inf], right=False, labels=list(AGE_BANDS))
    return bands.astype(str)


def sensitive_features(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The grouping of every employee by each assessed attribute."""
    return {
        "genre": frame["genre"].astype(str),
        "age_band": age_band(frame["age"]),
        "statut_marital": frame["statut_marital"].astype(str),
    }


def _divide(numerator: Any, denominator: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator, dtype=float) / denominator


# Vectorised over the last axis: the same function serves MetricFrame (one group's arrays)
# and the bootstrap (every resample of a group at once).
def selection_rate(y_true: Any, y_pred: Any, axis: int = -1) -> Any:
    return np.mean(np.asarray(y_pred), axis=axis)


def recall(y_true: Any, y_pred: Any, axis: int = -1) -> Any:
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return _divide((y * p).sum(axis=axis), y.sum(axis=axis))


def false_positive_rate(y_true: Any, y_pred: Any, axis: int = -1) -> Any:
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return _divide(((1 - y) * p).sum(axis=axis), (1 - y).sum(axis=axis))


def precision(y_true: Any, y_pred: Any, axis: int = -1) -> Any:
    y, p = np.asarray(y_true), np.asarray(y_pred)
    return _divide((y * p).sum(axis=axis), p.sum(axis=axis))


RATES: dict[str, Rate] = {
    "selection_rate": selection_rate,
    "recall": recall,
    "false_positive_rate": false_positive_rate,
    "precision": precision,
}


def _number(value: Any) -> float | None:
    """Rounded, or None where the rate is undefined (no positives, or nobody selected)."""
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def _interval(rate: Rate, y: np.ndarray, pred: np.ndarray, seed: int) -> list[float] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(
            (y, pred),
            rate,
            paired=True,
            vectorized=True,
            n_resamples=RESAMPLES,
            confidence_level=INTERVAL,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = _number(result.confidence_interval.low), _number(result.confidence_interval.high)
    return None if low is None or high is None else [low, high]


def _group_order(attribute: str, present: pd.Index) -> list[str]:
    order = AGE_BANDS if attribute == "age_band" else CATEGORIES[attribute]
    return [group for group in order if group in present]


def demographic_parity_ratios(
    frame: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, float | None]:
    """Lowest over highest group selection rate, per attribute."""
    return {
        attribute: _number(demographic_parity_ratio(y_true, y_pred, sensitive_features=groups))
        for attribute, groups in sensitive_features(frame).items()
    }


def _attribute(
    y: np.ndarray, pred: np.ndarray, groups: pd.Series, attribute: str, seed: int
) -> dict[str, Any]:
    metrics = MetricFrame(
        metrics={"count": count, **RATES}, y_true=y, y_pred=pred, sensitive_features=groups
    ).by_group
    table: dict[str, Any] = {}
    for group in _group_order(attribute, metrics.index):
        mask = (groups == group).to_numpy()
        table[group] = {"count": int(metrics.loc[group, "count"])} | {
            name: {
                "value": _number(metrics.loc[group, name]),
                "ci90": _interval(rate, y[mask], pred[mask], seed),
            }
            for name, rate in RATES.items()
        }
    return {
        "demographic_parity_ratio": _number(
            demographic_parity_ratio(y, pred, sensitive_features=groups)
        ),
        "equalized_odds_difference": _number(
            equalized_odds_difference(y, pred, sensitive_features=groups)
        ),
        "groups": table,
    }


def warning_lines(ratios: dict[str, float | None]) -> list[str]:
    """One line per attribute whose demographic-parity ratio is under the floor."""
    return [
        f"WARNING fairness: demographic-parity ratio for {attribute} is {ratio:.2f} "
        f"(< {DP_RATIO_FLOOR})"
        for attribute, ratio in ratios.items()
        if ratio is not None and ratio < DP_RATIO_FLOOR
    ]


def assess(
    frame: pd.DataFrame, y_true: np.ndarray, probability: np.ndarray, threshold: float, seed: int
) -> dict[str, Any]:
    """The `fairness` block of the model metadata (shape in the module docstring)."""
    y = np.asarray(y_true, dtype=int)
    pred = (probability >= threshold).astype(int)
    attributes = {
        attribute: _attribute(y, pred, groups, attribute, seed)
        for attribute, groups in sensitive_features(frame).items()
    }
    ratios = {name: block["demographic_parity_ratio"] for name, block in attributes.items()}
    return {
        "method": METHOD,
        "threshold": float(threshold),
        "dp_ratio_floor": DP_RATIO_FLOOR,
        "attributes": attributes,
        "warnings": warning_lines(ratios),
    }
