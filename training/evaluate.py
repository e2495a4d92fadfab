"""Score a stored model on another labelled set of extracts."""

from __future__ import annotations

from training.contract import FEATURES
from training.extracts import Dataset
from training.metrics import classification_report
from training.store import StoredModel


def evaluate(model: StoredModel, dataset: Dataset) -> dict[str, object]:
    """The model's metrics on `dataset`, at the threshold it was saved with."""
    probability = model.pipeline.predict_proba(dataset.frame[list(FEATURES)])[:, 1]
    return {
        "model": model.tag,
        **classification_report(dataset.target, probability, model.threshold),
        "data": dataset.describe(),
    }
