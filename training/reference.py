"""Aggregates of the training data kept with the model: drift references and the average
employee that explanations are measured against. Never rows.

The `reference` block of the model metadata::

    {"rows": int, "positive_rate": float,
     "binning": str,                                   # how to bin new values the same way
     "features": {
         numeric feature: {"type": "numeric", "edges": [float, ...],
                           "proportions": [float, ...]},      # len(edges) + 1 bins
         categorical feature: {"type": "categorical", "categories": [str, ...],
                               "proportions": [float, ...]}},  # one per category
     "score_histogram": {"edges": [0.0, 0.1, ..., 1.0], "proportions": [float] * 10}}

Numeric edges are the training deciles with duplicates removed (a 1-4 rating has 3 or 4
edges, not 9), interior only: bin i holds the values v with edges[i-1] <= v < edges[i], the
first and last bins are open-ended, so a value outside the training range still has a bin.
Every contract feature is described, including any the model does not use: monitoring by
group needs them. The score histogram is of the out-of-fold probabilities of the chosen
model, the distribution a stable population should keep producing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from training.contract import CATEGORIES, FEATURES
from training.metrics import CALIBRATION_BINS

BINNING = (
    "numeric: bin = numpy.searchsorted(edges, value, side='right') (open-ended first and last "
    "bins); categorical: one bin per category, in the listed order; score_histogram: "
    "numpy.histogram(probability, bins=edges)"
)
DECILES = np.linspace(0.1, 0.9, 9)


def _proportions(counts: np.ndarray) -> list[float]:
    return [round(float(c), 4) for c in counts / counts.sum()]


def _numeric(values: np.ndarray) -> dict[str, Any]:
    edges = np.unique(np.quantile(values, DECILES))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {
        "type": "numeric",
        "edges": [float(e) for e in edges],
        "proportions": _proportions(counts),
    }


def _categorical(values: pd.Series, categories: tuple[str, ...]) -> dict[str, Any]:
    counts = values.value_counts().reindex(list(categories), fill_value=0).to_numpy()
    return {
        "type": "categorical",
        "categories": list(categories),
        "proportions": _proportions(counts),
    }


def reference_statistics(
    frame: pd.DataFrame, y_true: np.ndarray, probability: np.ndarray
) -> dict[str, Any]:
    """The `reference` block: per-feature bins, the score histogram and the positive rate."""
    features = {
        name: _categorical(frame[name], CATEGORIES[name])
        if name in CATEGORIES
        else _numeric(frame[name].to_numpy(dtype=float))
        for name in FEATURES
    }
    counts, edges = np.histogram(probability, bins=CALIBRATION_BINS, range=(0.0, 1.0))
    return {
        "rows": len(frame),
        "positive_rate": round(float(np.mean(y_true)), 4),
        "binning": BINNING,
        "features": features,
        "score_histogram": {
            "edges": [round(float(e), 2) for e in edges],
            "proportions": _proportions(counts),
        },
    }


def explanation_baseline(pipeline: Pipeline, frame: pd.DataFrame) -> dict[str, float]:
    """Mean of every transformed column over the training rows: the "average employee".

    Scaled numbers average 0 by construction; a one-hot column averages to its category's
    share, which is what makes "Heures supplémentaires : oui" raise the score compared with
    the average employee rather than compared with nobody.
    """
    preprocess = pipeline.named_steps["preprocess"]
    means = np.asarray(preprocess.transform(frame), dtype=float).mean(axis=0)
    return {
        str(name): float(mean)
        for name, mean in zip(preprocess.get_feature_names_out(), means, strict=True)
    }
