"""Drift of live inputs and scores against the training reference kept in the model metadata.

Rules (the `reference` block is described in `training.reference`):

* **Bins.** Live values are binned exactly as the reference was: a numeric feature by
  ``numpy.searchsorted(edges, value, side="right")``; a categorical feature one bin per
  known category in order, plus an ``other`` bin for any value outside them (reference
  proportion 0, hence epsilon below: an unknown category is drift); the score by
  ``numpy.histogram(probability, bins=edges)`` after clipping it to [0, 1].
* **Missing values** (``None``, an absent key, a number that does not parse) are left out of
  that feature's counts; the feature's ``n`` says how many values were compared. Numbers are
  read as the contract dumps them (numbers, booleans) or as the extracts spell them
  (``"Oui"``/``"Non"``, ``"11 %"``).
* **PSI** = sum((live - ref) * ln(live / ref)) over the bins, both proportions floored at
  ``EPSILON`` = 1e-4 so that an empty bin gives a large but finite term.
* **p-value**: chi-square goodness of fit (as ``scipy.stats.chisquare``) of the live bin counts
  against the reference proportions (floored at ``EPSILON``, renormalised) times ``n``, for
  categorical and numeric features alike: numbers are compared on the reference's decile
  bins because the reference keeps bins, not rows, so a two-sample KS test is impossible.
  With thousands of rows it flags shifts too small to matter: it is reported, the status
  comes from the PSI alone.
* **Status**: ``stable`` (PSI < 0.1), ``watch`` (PSI < 0.25), ``drift`` (PSI >= 0.25), or
  ``insufficient_data`` when fewer than ``min_rows`` values were compared; then ``psi`` and
  ``p_value`` are null too, because a PSI from a handful of rows is noise that a dashboard
  or a ``--fail-above`` check would read as a verdict.
* **Overall status**: ``insufficient_data`` below ``min_rows`` rows, else the worst status
  among the features that have a verdict. The score has its own status and does not enter
  the overall one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import chi2

EPSILON = 1e-4
STABLE_BELOW = 0.1
WATCH_BELOW = 0.25
DEFAULT_MIN_ROWS = 200
TEST = "chi2"

Status = Literal["stable", "watch", "drift", "insufficient_data"]
_SEVERITY: dict[str, int] = {"stable": 0, "watch": 1, "drift": 2}
_YES = {"oui", "yes", "true", "y"}
_NO = {"non", "no", "false", "n"}


def psi_status(psi: float) -> Status:
    """The verdict for a PSI computed on enough rows."""
    if psi < STABLE_BELOW:
        return "stable"
    return "watch" if psi < WATCH_BELOW else "drift"


def compare(counts: np.ndarray, proportions: Sequence[float]) -> tuple[float, float | None]:
    """PSI and chi-square p-value of live bin `counts` against reference `proportions`."""
    n = float(counts.sum())
    expected = np.maximum(np.asarray(proportions, dtype=float), EPSILON)
    expected /= expected.sum()
    live = np.maximum(counts / n, EPSILON)
    psi = float(np.sum((live - expected) * np.log(live / expected)))
    # `scipy.stats.chisquare(counts, expected * n)`'s statistic and p-value (a test compares):
    # its argument checking cost ~0.2 ms a call, a sixth of a 28-feature report's arithmetic.
    statistic = float(np.sum((counts - expected * n) ** 2 / (expected * n)))
    p_value = float(chi2.sf(statistic, len(counts) - 1))
    return psi, None if math.isnan(p_value) else p_value


def _number(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        word = value.strip().removesuffix("%").strip().replace(",", ".").lower()
        if word in _YES:
            return 1.0
        if word in _NO:
            return 0.0
        try:
            return float(word)
        except ValueError:
            return math.nan
    return math.nan


def _distinct(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """(code of each value, the distinct values; code -1 for None): each distinct value is then
    read once. A 30-day window at 1M predictions holds ~10,000 rows of a few dozen distinct
    values per feature (at most one per employee): reading each of its 27 x 10,000 values in
    Python (`_number`, `str`) took 470-500 ms, reading the distinct ones 65-70 ms (and
    `numpy.asarray(dtype=float)` of the text the database returns ~3 ms a feature)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    return codes, list(uniques)


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """The values that are numbers (see `_number`), as floats. The distinct values are parsed
    by pandas first (a continuous feature such as a salary has ~5,000 distinct values in
    10,000 rows: 1.2 ms against ~10 ms through `_number`); `_number` reads only what pandas
    does not (``"Oui"``, ``"11 %"``, ``"1,5"``, booleans), so the rules stay `_number`'s."""
    codes, uniques = _distinct(values)
    parsed = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(
        float, copy=True
    )
    unparsed = np.flatnonzero(np.isnan(parsed))
    parsed[unparsed] = [_number(uniques[i]) for i in unparsed]
    array = np.append(parsed, math.nan)[codes]
    present: np.ndarray = array[~np.isnan(array)]
    return present


def _numeric_counts(spec: Mapping[str, Any], values: Sequence[Any]) -> np.ndarray:
    edges = np.asarray(spec["edges"], dtype=float)
    bins = np.searchsorted(edges, _numbers(values), side="right")
    return np.bincount(bins, minlength=len(edges) + 1)


def _categorical_counts(spec: Mapping[str, Any], values: Sequence[Any]) -> np.ndarray:
    index = {category: i for i, category in enumerate(spec["categories"])}
    other = len(index)
    codes, uniques = _distinct(values)
    bins = np.asarray([index.get(str(u).strip(), other) for u in uniques], dtype=np.intp)
    return np.bincount(bins[codes[codes >= 0]], minlength=other + 1)  # None is left out


def _verdict(counts: np.ndarray, proportions: Sequence[float], min_rows: int) -> dict[str, Any]:
    n = int(counts.sum())
    if n < min_rows:
        return {"psi": None, "p_value": None, "test": TEST, "status": "insufficient_data", "n": n}
    psi, p_value = compare(counts, proportions)
    return {"psi": psi, "p_value": p_value, "test": TEST, "status": psi_status(psi), "n": n}


def _feature(
    name: str, spec: Mapping[str, Any], values: Sequence[Any], min_rows: int
) -> dict[str, Any]:
    if spec["type"] == "categorical":
        counts = _categorical_counts(spec, values)
        proportions = [*spec["proportions"], 0.0]  # the "other" bin
    else:
        counts = _numeric_counts(spec, values)
        proportions = list(spec["proportions"])
    return {"feature": name, **_verdict(counts, proportions, min_rows)}


def _score(
    histogram: Mapping[str, Any], probabilities: np.ndarray, min_rows: int
) -> dict[str, Any]:
    counts, _ = np.histogram(np.clip(probabilities, 0.0, 1.0), bins=histogram["edges"])
    return _verdict(counts, histogram["proportions"], min_rows)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def drift_report(
    reference: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    probabilities: Sequence[float],
    *,
    predictions: Sequence[int | bool | None] | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> dict[str, Any]:
    """Compare scored rows with the model's `reference` block (see the module's rules).

    `inputs[i]`, `probabilities[i]` and `predictions[i]` (optional) describe the same row.
    Answer: as `column_drift_report`'s.
    """
    if len(probabilities) != len(inputs):
        raise ValueError("inputs and probabilities must describe the same rows")
    columns = {name: [row.get(name) for row in inputs] for name in reference["features"]}
    return column_drift_report(
        reference, columns, probabilities, predictions=predictions, min_rows=min_rows
    )


def column_drift_report(
    reference: Mapping[str, Any],
    columns: Mapping[str, Sequence[Any]],
    probabilities: Sequence[float],
    *,
    predictions: Sequence[int | bool | None] | None = None,
    min_rows: int = DEFAULT_MIN_ROWS,
) -> dict[str, Any]:
    """`drift_report` of rows given column by column: `probabilities[i]` and `predictions[i]`
    describe row i, `columns[feature]` holds the feature's values in those rows, in any order,
    a missing value None or left out (a reference feature absent from `columns` is missing
    in every row). Answer::

        {"n": int, "status": Status, "min_rows": int,
         "features": [{"feature", "psi", "p_value", "test", "status", "n"}, ...],
         "score": {"psi", "p_value", "test", "status", "n"},
         "positive_rate": {"training", "live_mean_probability",
                           "live_predicted_positive_rate"}}
    """
    if min_rows < 1:
        raise ValueError("min_rows must be at least 1")
    n = len(probabilities)
    if any(len(values) > n for values in columns.values()):
        raise ValueError("a feature has more values than there are rows")
    if predictions is not None and len(predictions) != n:
        raise ValueError("inputs and predictions must describe the same rows")
    features = [
        _feature(name, spec, columns.get(name, []), min_rows)
        for name, spec in reference["features"].items()
    ]
    verdicts = [f["status"] for f in features if f["status"] in _SEVERITY]
    # A feature never counts more values than there are rows: below min_rows, no verdict.
    status = max(verdicts, key=_SEVERITY.__getitem__) if verdicts else "insufficient_data"
    scores = np.asarray(probabilities, dtype=float)
    scores = scores[~np.isnan(scores)]
    flagged = np.asarray(predictions if predictions is not None else [], dtype=float)
    return {
        "n": n,
        "status": status,
        "min_rows": min_rows,
        "features": features,
        "score": _score(reference["score_histogram"], scores, min_rows),
        "positive_rate": {
            "training": reference.get("positive_rate"),
            "live_mean_probability": _mean(scores),
            "live_predicted_positive_rate": _mean(flagged[~np.isnan(flagged)]),
        },
    }
