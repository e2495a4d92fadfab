"""The model card (Markdown) and precision-recall curve (PNG) written after training."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve

from training.extracts import Dataset
from training.fit import TrainingResult


def _pr_curve(path: Path, y: np.ndarray, probability: np.ndarray, threshold: float) -> None:
    precision, recall, thresholds = precision_recall_curve(y, probability)
    at = int(np.argmin(np.abs(thresholds - threshold)))
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(recall, precision, label="out-of-fold")
    axes.scatter(
        [recall[at]], [precision[at]], color="red", zorder=3, label=f"threshold {threshold:.3f}"
    )
    axes.axhline(float(y.mean()), linestyle="--", color="grey", label="base rate")
    axes.set(
        xlabel="recall",
        ylabel="precision",
        title="Precision-recall (out-of-fold)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_reports(folder: Path, tag: str, result: TrainingResult, dataset: Dataset) -> Path:
    """Write `model_card.md` and `precision_recall.png` into `folder`; return the card."""
    folder.mkdir(parents=True, exist_ok=True)
    _pr_curve(
        folder / "precision_recall.png", dataset.target, result.oof_probability, result.threshold
    )
    oof = result.out_of_fold
    rows = "\n".join(
        f"| {name}{' (chosen)' if name == result.estimator else ''} "
        f"| {m['roc_auc_mean']:.3f} ± {m['roc_auc_std']:.3f} "
        f"| {m['average_precision_mean']:.3f} ± {m['average_precision_std']:.3f} |"
        for name, m in result.cv.items()
    )
    data = dataset.describe()
    origin = "GENERATED (synthetic) data, not real employees" if dataset.generated else "real"
    card = f"""# Model card: {tag}

**Data**: {origin}
- rows {data["rows"]}, positive rate {data["positive_rate"]:.3f}, sha256 `{data["sha256"][:16]}…`

## Cross-validated model choice
| estimator | ROC-AUC | average precision |
|---|---|---|
{rows}

Rule: {result.metrics()["selection_rule"]}.

## Decision threshold
{result.threshold:.4f}: {result.metrics()["threshold_rule"]}.

Out-of-fold at that threshold: precision {oof["precision"]:.3f}, recall {oof["recall"]:.3f},
F1 {oof["f1"]:.3f}; confusion matrix `{json.dumps(oof["confusion_matrix"])}`.

![precision-recall](precision_recall.png)

## Intended use
Ranking employees by risk of leaving so that HR can talk to them first. Not for decisions
about pay, promotion or dismissal; every score is logged with its inputs for audit.
"""
    path = folder / "model_card.md"
    path.write_text(card, encoding="utf-8")
    return path
