"""Champion against shadow challenger: how differently they score the same rows, which of the
two the outcomes prove right, and whether to promote the challenger.

Rules:

* **Pairs**: each pair is one prediction both models scored, ``{"employee_id",
  "created_at", "champion": Score, "challenger": Score}`` with ``Score = {"model_tag",
  "probability", "prediction", "threshold"}``.
* **Agreement figures use every pair**: ``agreement`` is the share of pairs whose two
  decisions agree, each model deciding at its own threshold (its stored ``prediction`` when
  present, else ``probability >= threshold``: what the caller would have been told);
  ``mean_abs_diff`` is the mean of ``|challenger - champion|`` probability; ``spearman`` is
  ``scipy.stats.spearmanr`` of the two probabilities; ``flips`` counts the pairs whose risk
  band changes, by ``"<champion band>-><challenger band>"`` (all six changes, zeros
  included), each band from its own model's threshold (``scoring.scorer.risk_band``:
  low < t <= medium < max(t, 0.5) <= high). Null when undefined (no pairs, Spearman of a
  constant).
* **Outcome figures use the latest pair per employee and cohort month** (UTC), as live
  performance does, so an employee scored every day counts once a month; pairs without an
  employee id are left out. They are taken in (employee, month) order, so the pairs' order
  changes nothing. Each is labelled by ``monitoring.performance.horizon_label``
  (positive, negative, excluded, pending) with ``horizon_days``; the labelled rows (positive
  or negative) give each model's ROC-AUC, average precision and Brier score
  (``sklearn.metrics``; ROC-AUC and average precision need both classes, Brier one row;
  otherwise null).
* **Intervals**: percentile bootstrap, 90 %: ``bootstrap`` resamples of the labelled rows,
  with replacement, drawn from ``numpy.random.default_rng(seed)`` (the same seed gives the
  same intervals). Resampling is **paired**: each resample takes the same rows for both
  models, so the difference (challenger - champion) has its own interval. A resample where
  a metric is undefined (one class only) is left out of that metric's interval; no defined
  resample (or ``bootstrap=0``) gives a null interval.
* **Recommendation** (`RULE`): promote only if there are at least ``min_labelled`` (100)
  labelled rows with both outcomes among them, the challenger's average precision is higher
  than the champion's, the 90 % interval of that difference is entirely above 0, and the
  challenger's Brier score is no worse: challenger - champion <= ``brier_tolerance``
  (0.005). Too few labelled rows, or no positive or no negative among them: promote false,
  reason ``"not enough labelled outcomes (...)"``.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from itertools import permutations
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from monitoring.performance import DEFAULT_HORIZON_DAYS, LABELLED, horizon_label
from scoring.scorer import risk_band

MIN_LABELLED = 100
BRIER_TOLERANCE = 0.005
CONFIDENCE = 0.90
DEFAULT_BOOTSTRAP = 1000
METRICS = ("roc_auc", "average_precision", "brier")
BANDS = ("low", "medium", "high")
FLIPS = tuple(f"{a}->{b}" for a, b in permutations(BANDS, 2))
NOT_ENOUGH = "not enough labelled outcomes"
# Cells of one resampling chunk (resamples x rows): bounds memory at ~16 MB per array.
_CHUNK_CELLS = 2_000_000


def rule(min_labelled: int = MIN_LABELLED, brier_tolerance: float = BRIER_TOLERANCE) -> str:
    """The promotion rule, in words, with its figures."""
    return (
        f"promote only if, on at least {min_labelled} labelled rows with both outcomes, the "
        f"challenger's average precision is higher than the champion's, the "
        f"{CONFIDENCE:.0%} bootstrap interval of the difference (challenger - champion) is "
        f"above 0, and the challenger's Brier score is no worse (challenger - champion <= "
        f"{brier_tolerance:g})"
    )


RULE = rule()


def _moment(value: date | datetime | str) -> datetime:
    """A time in UTC: naive is taken as UTC, a date as its midnight, a string as ISO."""
    if isinstance(value, str):
        return _moment(datetime.fromisoformat(value))
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _decision(score: Mapping[str, Any]) -> int:
    if score.get("prediction") is not None:
        return int(bool(score["prediction"]))
    return int(float(score["probability"]) >= float(score["threshold"]))


def _tag(pairs: Sequence[Mapping[str, Any]], model: str) -> str | None:
    """The model's tag; several (a window across a rollout) are listed, sorted."""
    tags = sorted({str(pair[model]["model_tag"]) for pair in pairs})
    return ", ".join(tags) if tags else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input warns, and answers nan
        value = float(spearmanr(a, b).statistic)
    return value if np.isfinite(value) else None


def _flips(pairs: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(FLIPS, 0)
    for pair in pairs:
        champion, challenger = pair["champion"], pair["challenger"]
        before = risk_band(float(champion["probability"]), float(champion["threshold"]))
        after = risk_band(float(challenger["probability"]), float(challenger["threshold"]))
        if before != after:
            counts[f"{before}->{after}"] += 1
    return counts


def _latest_per_employee_month(pairs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The latest pair of each (employee, UTC month), on equal times the later in the list;
    sorted by employee and month, so that the bootstrap does not depend on the rows' order."""
    latest: dict[tuple[Any, str], tuple[datetime, Mapping[str, Any]]] = {}
    for pair in pairs:
        if pair.get("employee_id") is None:
            continue
        moment = _moment(pair["created_at"])
        key = (pair["employee_id"], f"{moment:%Y-%m}")
        if key not in latest or moment >= latest[key][0]:
            latest[key] = (moment, pair)
    return [latest[key][1] for key in sorted(latest)]


def _point(y: np.ndarray, probability: np.ndarray) -> dict[str, float | None]:
    """The three metrics of labelled rows, through sklearn; null where undefined."""
    n, positives = len(y), int(y.sum())
    both = 0 < positives < n
    return {
        "roc_auc": float(roc_auc_score(y, probability)) if both else None,
        "average_precision": float(average_precision_score(y, probability)) if both else None,
        "brier": float(brier_score_loss(y, probability)) if n else None,
    }


def _resampled(y: np.ndarray, probability: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """The three metrics of each resample at once; nan where undefined.

    `counts[b, i]` is how many times resample b drew row i: a resample is the rows weighted
    by their counts, which gives the figures sklearn gives on the drawn rows (ties at a
    score count as sklearn counts them: half for ROC-AUC, one threshold for average
    precision).
    """
    order = np.argsort(-probability, kind="stable")
    ranked = probability[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    weights = counts[:, order]
    positive = weights * y[order]
    pos = np.add.reduceat(positive, starts, axis=1)  # (resamples, distinct scores), high first
    neg = np.add.reduceat(weights - positive, starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    both = (n_pos > 0) & (n_neg > 0)
    lower = n_neg[:, None] - np.cumsum(neg, axis=1)  # negatives scored strictly lower
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos * (lower + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        true_pos, flagged = np.cumsum(pos, axis=1), np.cumsum(pos + neg, axis=1)
        precision = np.where(flagged > 0, true_pos / np.where(flagged > 0, flagged, 1), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    brier = (counts * (probability - y) ** 2).sum(axis=1) / counts.sum(axis=1)
    return {
        "roc_auc": np.where(both, auc, np.nan),
        "average_precision": np.where(both, ap, np.nan),
        "brier": brier,
    }


def _draws(rng: np.random.Generator, rows: int, resamples: int) -> Iterable[np.ndarray]:
    """Resample counts, (chunk, rows) at a time: row i drawn counts[b, i] times."""
    chunk = max(1, _CHUNK_CELLS // max(rows, 1))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        picks = rng.integers(0, rows, size=(size, rows))
        offsets = (np.arange(size) * rows)[:, None]
        yield np.bincount((picks + offsets).ravel(), minlength=size * rows).reshape(size, rows)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    defined = values[np.isfinite(values)]
    if not len(defined):
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high)


def _estimate(value: float | None, samples: np.ndarray) -> dict[str, float | None]:
    low, high = _interval(samples)
    return {"value": value, "low": low, "high": high}


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _metrics(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Each model's metrics and the paired difference, with percentile bootstrap intervals."""
    points = {"champion": _point(y, champion), "challenger": _point(y, challenger)}
    samples: dict[str, dict[str, list[np.ndarray]]] = {
        side: defaultdict(list) for side in ("champion", "challenger", "difference")
    }
    if len(y) and bootstrap > 0:
        rng = np.random.default_rng(seed)
        for counts in _draws(rng, len(y), bootstrap):
            first = _resampled(y, champion, counts.astype(float))
            second = _resampled(y, challenger, counts.astype(float))
            for name in METRICS:
                samples["champion"][name].append(first[name])
                samples["challenger"][name].append(second[name])
                samples["difference"][name].append(second[name] - first[name])

    def joined(side: str, name: str) -> np.ndarray:
        parts = samples[side][name]
        return np.concatenate(parts) if parts else np.empty(0)

    answer: dict[str, Any] = {
        side: {name: _estimate(points[side][name], joined(side, name)) for name in METRICS}
        for side in ("champion", "challenger")
    }
    answer["difference"] = {
        name: _estimate(
            _difference(points["champion"][name], points["challenger"][name]),
            joined("difference", name),
        )
        for name in METRICS
    }
    return {"confidence": CONFIDENCE, "bootstrap": bootstrap, "seed": seed, **answer}


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _recommend(
    labelled: Mapping[str, int],
    metrics: Mapping[str, Any],
    *,
    min_labelled: int,
    brier_tolerance: float,
    challenger_tag: str | None,
) -> dict[str, Any]:
    """Apply the rule; the reason names the first condition that fails, or the evidence."""
    stated = rule(min_labelled, brier_tolerance)

    def no(reason: str) -> dict[str, Any]:
        return {"promote": False, "rule": stated, "reason": reason}

    n, positives = labelled["n"], labelled["positives"]
    if n < min_labelled or positives == 0 or positives == n:
        return no(
            f"{NOT_ENOUGH} ({n} labelled, {positives} positive; need at least {min_labelled} "
            "with both outcomes)"
        )
    ap, brier = metrics["difference"]["average_precision"], metrics["difference"]["brier"]
    champion_ap = metrics["champion"]["average_precision"]["value"]
    challenger_ap = metrics["challenger"]["average_precision"]["value"]
    if ap["value"] is None or brier["value"] is None:
        return no("a metric is undefined on the labelled rows")
    if ap["value"] <= 0:
        return no(
            f"the challenger's average precision ({challenger_ap:.3f}) is not higher than the "
            f"champion's ({champion_ap:.3f})"
        )
    if ap["low"] is None or ap["high"] is None:
        return no("no bootstrap interval for the average precision difference")
    interval = f"{CONFIDENCE:.0%} interval {_signed(ap['low'])} to {_signed(ap['high'])}"
    if ap["low"] <= 0:
        return no(
            f"average precision {_signed(ap['value'])}, but its {interval} does not exclude 0"
        )
    if brier["value"] > brier_tolerance:
        return no(
            f"average precision {_signed(ap['value'])} ({interval}), but Brier worse by "
            f"{brier['value']:.4f} (tolerance {brier_tolerance:g})"
        )
    return {
        "promote": True,
        "rule": stated,
        "reason": (
            f"average precision {_signed(ap['value'])} ({interval}), Brier "
            f"{brier['value']:+.4f}: promote {challenger_tag}"
        ),
    }


def compare_report(
    pairs: Sequence[Mapping[str, Any]],
    outcomes: Iterable[Mapping[str, Any]],
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    min_labelled: int = MIN_LABELLED,
    brier_tolerance: float = BRIER_TOLERANCE,
) -> dict[str, Any]:
    """Champion against challenger on the `pairs` both scored (see the module's rules).

    `outcomes`: ``{"employee_id", "status": "left" | "stayed", "left_on" | "as_of"}``, any
    number per employee, as ``persistence.monitoring.outcome_facts`` returns them. Answer::

        {"n": int, "champion_tag": str | None, "challenger_tag": str | None,
         "horizon_days": int,
         "agreement": float | None, "mean_abs_diff": float | None, "spearman": float | None,
         "flips": {"low->medium": int, "low->high": int, "medium->low": int,
                   "medium->high": int, "high->low": int, "high->medium": int},
         "labelled": {"rows": int, "n": int, "positives": int, "pending": int,
                      "excluded": int},
         "metrics": {"confidence": 0.9, "bootstrap": int, "seed": int,
                     "champion": Metrics, "challenger": Metrics,
                     "difference": Metrics},           # challenger - champion, paired
         "recommendation": {"promote": bool, "rule": str, "reason": str}}
        Metrics = {"roc_auc": Estimate, "average_precision": Estimate, "brier": Estimate}
        Estimate = {"value": float | None, "low": float | None, "high": float | None}

    A tag is the models' tag, or their sorted tags joined by ", " when the pairs hold
    several. ``labelled.rows`` counts the latest pairs per employee and month; ``n`` those
    labelled. Undefined figures are null, never an exception.
    """
    n = len(pairs)
    champion = np.array([float(p["champion"]["probability"]) for p in pairs], dtype=float)
    challenger = np.array([float(p["challenger"]["probability"]) for p in pairs], dtype=float)
    agree = np.array(
        [_decision(p["champion"]) == _decision(p["challenger"]) for p in pairs], dtype=bool
    )

    facts: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for outcome in outcomes:
        facts[outcome["employee_id"]].append(outcome)
    latest = _latest_per_employee_month(pairs)
    labels = np.array(
        [
            horizon_label(
                _moment(p["created_at"]).date(), facts.get(p["employee_id"], ()), horizon_days
            )
            for p in latest
        ],
        dtype=object,
    )
    chosen = np.isin(labels, LABELLED)
    rows = [p for p, keep in zip(latest, chosen, strict=True) if keep]
    y = (labels[chosen] == "positive").astype(int)
    labelled = {
        "rows": len(latest),
        "n": int(chosen.sum()),
        "positives": int(y.sum()),
        "pending": int((labels == "pending").sum()),
        "excluded": int((labels == "excluded").sum()),
    }
    metrics = _metrics(
        y,
        np.array([float(p["champion"]["probability"]) for p in rows], dtype=float),
        np.array([float(p["challenger"]["probability"]) for p in rows], dtype=float),
        bootstrap=bootstrap,
        seed=seed,
    )
    challenger_tag = _tag(pairs, "challenger")
    return {
        "n": n,
        "champion_tag": _tag(pairs, "champion"),
        "challenger_tag": challenger_tag,
        "horizon_days": horizon_days,
        "agreement": float(agree.mean()) if n else None,
        "mean_abs_diff": float(np.abs(challenger - champion).mean()) if n else None,
        "spearman": _spearman(champion, challenger),
        "flips": _flips(pairs),
        "labelled": labelled,
        "metrics": metrics,
        "recommendation": _recommend(
            labelled,
            metrics,
            min_labelled=min_labelled,
            brier_tolerance=brier_tolerance,
            challenger_tag=challenger_tag,
        ),
    }
