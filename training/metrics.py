"""Classification metrics shared by training (out-of-fold) and `attrition evaluate`.

Ranking (ROC-AUC, average precision) says who is riskier than whom; calibration (Brier score,
log-loss, expected calibration error) says whether "0.30" means that 30 % of such employees
leave. Both are reported, because the issue's model ranked well while overstating every
probability (mean 0.36 against 16 % observed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    fbeta_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

# A missed departure costs more than a false alarm: recall weighs twice precision.
THRESHOLD_BETA = 2.0
THRESHOLD_RULE = (
    "maximise F2 (recall weighted 2x precision) on calibrated out-of-fold probabilities"
)
CALIBRATION_BINS = 10


def choose_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The probability cut that maximises F-beta on held-out predictions."""
    precision, recall, thresholds = precision_recall_curve(y_true, probability)
    beta2 = THRESHOLD_BETA**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f_beta = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    f_beta = np.nan_to_num(f_beta[:-1])  # the last point has no threshold
    return float(thresholds[int(np.argmax(f_beta))])


def calibration_table(y_true: np.ndarray, probability: np.ndarray) -> list[dict[str, Any]]:
    """Per equal-width probability bin: employees, mean predicted and observed leaving rate.

    sklearn's `calibration_curve` uses the same bins but drops their sizes, which the
    expected calibration error weighs by; empty bins keep their row with no rates.
    """
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    index = np.searchsorted(edges[1:-1], probability, side="right")
    count = np.bincount(index, minlength=CALIBRATION_BINS)
    predicted = np.bincount(index, weights=probability, minlength=CALIBRATION_BINS)
    observed = np.bincount(index, weights=y_true, minlength=CALIBRATION_BINS)
    return [
        {
            "from": round(float(edges[i]), 2),
            "to": round(float(edges[i + 1]), 2),
            "count": int(count[i]),
            "mean_probability": float(predicted[i] / count[i]) if count[i] else None,
            "observed_rate": float(observed[i] / count[i]) if count[i] else None,
        }
        for i in range(CALIBRATION_BINS)
    ]


def expected_calibration_error(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Bin-size-weighted gap between mean predicted and observed rate (10 equal-width bins)."""
    table = calibration_table(y_true, probability)
    return float(
        sum(
            row["count"] * abs(row["observed_rate"] - row["mean_probability"])
            for row in table
            if row["count"]
        )
        / len(y_true)
    )


def base_rate_brier(y_true: np.ndarray) -> float:
    """The Brier score of answering the observed positive rate to everyone."""
    return float(brier_score_loss(y_true, np.full(len(y_true), np.mean(y_true)), pos_label=1))


def calibration_report(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Brier score, log-loss and expected calibration error of `probability`."""
    return {
        "brier": float(brier_score_loss(y_true, probability, pos_label=1)),
        "log_loss": float(log_loss(y_true, probability, labels=[0, 1])),
        "ece": expected_calibration_error(y_true, probability),
    }


def classification_report(
    y_true: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Ranking quality, calibration, and the confusion at the decision threshold."""
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(y_true)) == 2
    return {
        "n": len(y_true),
        "positive_rate": float(np.mean(y_true)) if len(y_true) else 0.0,
        "mean_probability": float(np.mean(probability)) if len(y_true) else 0.0,
        "roc_auc": float(roc_auc_score(y_true, probability)) if both_classes else None,
        "average_precision": (
            float(average_precision_score(y_true, probability)) if both_classes else None
        ),
        **calibration_report(y_true, probability),
        "threshold": float(threshold),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(fbeta_score(y_true, predicted, beta=1, zero_division=0)),
        "f2": float(fbeta_score(y_true, predicted, beta=2, zero_division=0)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
