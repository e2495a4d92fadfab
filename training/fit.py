"""Choose the estimator by stratified cross-validation, then the threshold, then refit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from training.contract import FEATURES
from training.extracts import Dataset
from training.metrics import THRESHOLD_RULE, choose_threshold, classification_report
from training.pipeline import candidates

SELECTION_RULE = "highest mean average precision over stratified folds"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Pipeline
    estimator: str
    threshold: float
    cv: dict[str, dict[str, float]]
    out_of_fold: dict[str, object]
    oof_probability: np.ndarray

    def metrics(self) -> dict[str, object]:
        """Everything the model card and the model-store metadata say about quality."""
        return {
            "selection_rule": SELECTION_RULE,
            "threshold_rule": THRESHOLD_RULE,
            "estimator": self.estimator,
            "cross_validation": self.cv,
            "out_of_fold": self.out_of_fold,
        }


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


def train(
    dataset: Dataset, *, folds: int = 5, seed: int = 0, progress: Progress = print
) -> TrainingResult:
    """Cross-validate every candidate on the same folds, keep the best, fit it on all rows."""
    frame = dataset.frame[list(FEATURES)]
    y = dataset.target
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(frame, y))
    cv: dict[str, dict[str, float]] = {}
    oof: dict[str, np.ndarray] = {}
    for name, pipeline in candidates(seed).items():
        probability = np.zeros(len(y))
        aucs, aps = [], []
        for train_idx, test_idx in splits:
            model = clone(pipeline).fit(frame.iloc[train_idx], y[train_idx])
            probability[test_idx] = model.predict_proba(frame.iloc[test_idx])[:, 1]
            report = classification_report(y[test_idx], probability[test_idx], 0.5)
            aucs.append(float(report["roc_auc"]))  # type: ignore[arg-type]
            aps.append(float(report["average_precision"]))  # type: ignore[arg-type]
        cv[name] = {
            **{f"roc_auc_{k}": v for k, v in _summary(aucs).items()},
            **{f"average_precision_{k}": v for k, v in _summary(aps).items()},
        }
        oof[name] = probability
        progress(
            f"  {name:<24} ROC-AUC {cv[name]['roc_auc_mean']:.3f} ± {cv[name]['roc_auc_std']:.3f}"
            f"   AP {cv[name]['average_precision_mean']:.3f} "
            f"± {cv[name]['average_precision_std']:.3f}"
        )
    best = max(cv, key=lambda name: cv[name]["average_precision_mean"])
    threshold = choose_threshold(y, oof[best])
    progress(f"chose {best}; threshold {threshold:.3f} ({THRESHOLD_RULE})")
    final = clone(candidates(seed)[best]).fit(frame, y)
    return TrainingResult(
        pipeline=final,
        estimator=best,
        threshold=threshold,
        cv=cv,
        out_of_fold=classification_report(y, oof[best], threshold),
        oof_probability=oof[best],
    )
