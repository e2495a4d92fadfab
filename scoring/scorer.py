"""Score a batch of employees and explain each score, with one transform per batch.

Explanations are per contract feature, in log-odds:
- linear model: exact, coefficient x transformed value, summed over a feature's one-hot columns;
- any other estimator: occlusion, the drop in log-odds when the feature's transformed columns
  are set to 0 (the training mean for scaled numbers, "no category" for one-hot groups),
  one extra `predict_proba` per feature on the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from scoring.fast_transform import compile_preprocessor
from training.contract import CATEGORIES

logger = logging.getLogger(__name__)

DEFAULT_TOP_FACTORS = 5
_EPS = 1e-9


def _log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, _EPS, 1 - _EPS)
    return np.log(clipped / (1 - clipped))


def _feature_groups(preprocess: ColumnTransformer) -> tuple[list[str], np.ndarray]:
    """Which transformed column belongs to which input feature (a one-hot group is one)."""
    features: list[str] = []
    owner: list[int] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        width = preprocess.output_indices_[name].stop - preprocess.output_indices_[name].start
        categories = getattr(transformer, "categories_", None)
        sizes = [len(c) for c in categories] if categories is not None else [1] * len(columns)
        if sum(sizes) != width:
            raise ValueError(f"cannot map transformer {name!r} outputs to its input columns")
        for column, size in zip(columns, sizes, strict=True):
            owner.extend([len(features)] * size)
            features.append(column)
    return features, np.asarray(owner)


def _probe(features: list[str]) -> pd.DataFrame:
    """Rows covering every contract category and a spread of numbers, to compare transforms."""
    rows = 12
    return pd.DataFrame(
        {
            name: [CATEGORIES[name][i % len(CATEGORIES[name])] for i in range(rows)]
            if name in CATEGORIES
            else [float(i * i) for i in range(rows)]
            for name in features
        }
    )


def _fastest_transform(
    preprocess: ColumnTransformer, features: list[str]
) -> Callable[[pd.DataFrame], Any]:
    """The numpy transform when it provably matches sklearn's, else sklearn's own."""
    fast = compile_preprocessor(preprocess)
    if fast is not None:
        probe = _probe(features)
        if np.allclose(fast(probe), preprocess.transform(probe), rtol=1e-9, atol=1e-12):
            return fast
        logger.warning("numpy preprocessing disagrees with sklearn: using sklearn's")
    return preprocess.transform


def risk_band(probability: float, threshold: float) -> str:
    """high = predicted to leave; medium = within a factor two of the threshold; else low."""
    if probability >= threshold:
        return "high"
    return "medium" if probability >= threshold / 2 else "low"


@dataclass(frozen=True)
class Score:
    probability: float
    prediction: int
    risk_band: str
    top_factors: list[dict[str, Any]]


class Scorer:
    """A fitted pipeline plus its decision threshold, scoring whole batches."""

    def __init__(
        self, pipeline: Pipeline, threshold: float, top_k: int = DEFAULT_TOP_FACTORS
    ) -> None:
        self.preprocess: ColumnTransformer = pipeline.named_steps["preprocess"]
        self.model = pipeline[-1]
        self.threshold = float(threshold)
        self.top_k = top_k
        self.features, self._owner = _feature_groups(self.preprocess)
        self._transform = _fastest_transform(self.preprocess, self.features)
        coef = getattr(self.model, "coef_", None)
        self._coef = None if coef is None else np.asarray(coef)[0]
        # (transformed columns x features) 0/1 matrix that sums columns into their feature.
        self._groups = np.zeros((len(self._owner), len(self.features)))
        self._groups[np.arange(len(self._owner)), self._owner] = 1.0

    @property
    def explanation_method(self) -> str:
        return (
            "linear: coefficient x transformed value"
            if self._coef is not None
            else ("occlusion: log-odds change when the feature is reset to its training mean")
        )

    def _contributions(self, transformed: np.ndarray, probability: np.ndarray) -> np.ndarray:
        if self._coef is not None:
            return (transformed * self._coef) @ self._groups
        base = _log_odds(probability)
        out = np.empty((len(transformed), len(self.features)))
        for index in range(len(self.features)):
            occluded = transformed.copy()
            occluded[:, self._owner == index] = 0.0
            out[:, index] = base - _log_odds(self.model.predict_proba(occluded)[:, 1])
        return out

    def score(self, frame: pd.DataFrame) -> list[Score]:
        """One transform and one `predict_proba` for the whole batch."""
        transformed = np.asarray(self._transform(frame), dtype=float)
        probability = self.model.predict_proba(transformed)[:, 1]
        contributions = self._contributions(transformed, probability)
        k = min(self.top_k, len(self.features))
        # Python lists up front: per-element numpy access costs more than the scoring itself.
        order = np.argsort(-np.abs(contributions), axis=1)[:, :k]
        picked = np.round(np.take_along_axis(contributions, order, axis=1), 4).tolist()
        values = {name: frame[name].tolist() for name in self.features}
        scores = []
        for row, (p, columns, sizes) in enumerate(
            zip(probability.tolist(), order.tolist(), picked, strict=True)
        ):
            factors = [
                {
                    "feature": self.features[j],
                    "value": values[self.features[j]][row],
                    "contribution": size,
                    "direction": "raises" if size > 0 else "lowers",
                }
                for j, size in zip(columns, sizes, strict=True)
            ]
            scores.append(
                Score(
                    probability=p,
                    prediction=int(p >= self.threshold),
                    risk_band=risk_band(p, self.threshold),
                    top_factors=factors,
                )
            )
        return scores
