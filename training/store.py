"""The BentoML model store: what a saved attrition model carries, and how it comes back.

The store location follows `BENTOML_HOME`, as every `bentoml` command does.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import bentoml
from sklearn.pipeline import Pipeline

from scoring.scorer import Scorer, risk_bands
from training.contract import contract_description
from training.extracts import Dataset
from training.fit import TrainingResult

MODEL_NAME = "attrition_pipeline"
DEFAULT_TAG = f"{MODEL_NAME}:latest"
LIBRARIES = ("scikit-learn", "pandas", "numpy", "bentoml", "pydantic", "fairlearn", "scipy")


class ModelNotFound(LookupError):
    """No model under that tag: the message says how to train one."""


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{name: version(name) for name in LIBRARIES}}


def _without_nulls(value: Any) -> Any:
    """BentoML metadata refuses None: an absent key says the same thing."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_nulls(v) for v in value]
    return value


def save(result: TrainingResult, dataset: Dataset) -> bentoml.Model:
    """Save the fitted pipeline with everything needed to serve, explain, monitor and audit it.

    Aggregates only: the training rows never enter the model store.
    """
    scorer = Scorer(result.pipeline, result.threshold, baseline=result.explanation_baseline)
    metadata: dict[str, Any] = {
        "threshold": result.threshold,
        "probability_meaning": result.probability_meaning,
        "risk_bands": risk_bands(result.threshold),
        "metrics": result.metrics(),
        "features_used": list(result.features_used),
        "fairness": result.fairness,
        "reference": result.reference,
        "contract": contract_description(),
        "training_data": dataset.describe(),
        "explanation_method": scorer.explanation_method,
        "explanation_baseline": result.explanation_baseline,
        "libraries": library_versions(),
    }
    model: bentoml.Model = bentoml.sklearn.save_model(
        MODEL_NAME,
        result.pipeline,
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}},
        labels={
            "estimator": result.estimator,
            "data": "generated" if dataset.generated else "real",
        },
        metadata=_without_nulls(metadata),
    )
    return model


@dataclass(frozen=True)
class StoredModel:
    tag: str
    pipeline: Pipeline
    metadata: dict[str, Any]

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    def scorer(self, threshold_override: float | None = None) -> Scorer:
        """The model's scorer, explaining against its training means when it has them."""
        return Scorer(
            self.pipeline,
            self.threshold if threshold_override is None else threshold_override,
            baseline=self.metadata.get("explanation_baseline"),
        )


def train_command() -> str:
    return "make train (or: .venv/bin/attrition train [--data-dir DIR])"


def load(tag: str = DEFAULT_TAG) -> StoredModel:
    """Load a model from the store; a missing tag says which command creates one."""
    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ModelNotFound(
            f"model {tag!r} is not in the BentoML model store; train one with {train_command()}"
        ) from exc
    return from_bento_model(model)


def from_bento_model(model: bentoml.Model) -> StoredModel:
    return StoredModel(
        tag=str(model.tag), pipeline=bentoml.sklearn.load_model(model), metadata=model.info.metadata
    )


def has_model(tag: str = DEFAULT_TAG) -> bool:
    try:
        bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True
