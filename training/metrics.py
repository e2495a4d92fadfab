"""Classification metrics shared by training (out-of-fold) and `attrition evaluate`."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    fbeta_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

# A missed departure costs more than a false alarm: recall weighs twice precision.
THRESHOLD_BETA = 2.0
THRESHOLD_RULE = "maximise F2 (recall weighted 2x precision) on out-of-fold probabilities"


def choose_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The probability cut that maximises F-beta on held-out predictions."""
    precision, recall, thresholds = precision_recall_curve(y_true, probability)
    beta2 = THRESHOLD_BETA**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f_beta = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    f_beta = np.nan_to_num(f_beta[:-1])  # the last point has no threshold
    return float(thresholds[int(np.argmax(f_beta))])


def classification_report(
    y_true: np.ndarray, probability: np.ndarray, threshold: float
) -> dict[str, object]:
    """Ranking quality plus the confusion at the decision threshold."""
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(y_true)) == 2
    return {
        "n": len(y_true),
        "positive_rate": float(np.mean(y_true)) if len(y_true) else 0.0,
        "roc_auc": float(roc_auc_score(y_true, probability)) if both_classes else None,
        "average_precision": (
            float(average_precision_score(y_true, probability)) if both_classes else None
        ),
        "threshold": float(threshold),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(fbeta_score(y_true, predicted, beta=1, zero_division=0)),
        "f2": float(fbeta_score(y_true, predicted, beta=2, zero_division=0)),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }
