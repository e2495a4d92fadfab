"""The fitted preprocessing as plain numpy, for the serving hot path.

`ColumnTransformer.transform` spends ~8-12 ms per call on input checks (feature names,
dtypes, indexing) whatever the batch size, which caps a worker near 100 batches a second.
The fitted parameters of its parts (scaler means and scales, the log, one-hot categories) fully
define the output, so the same arithmetic runs here in microseconds. Only the parts this
project's pipelines use are compiled; anything else returns None and the caller keeps
sklearn's own transform. `Scorer` checks both agree before it uses this one.

The input is a DataFrame or, on the serving path, a plain mapping of one list per column
(`Columns`): building a DataFrame and indexing its columns cost more than the arithmetic for
the small batches of `/predict` (~18 % of a worker's CPU at 64 connections, py-spy, issue 17).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

Step = Callable[[np.ndarray], np.ndarray]
# One list of values per column name, rows in the same order in every list.
Columns: TypeAlias = Mapping[str, Sequence[Any]]
Frame: TypeAlias = pd.DataFrame | Columns


def _column(frame: Frame, name: str, dtype: type) -> np.ndarray:
    """One column as a numpy array of `dtype`, from a DataFrame or from `Columns`."""
    values = frame[name]
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=dtype)
    return np.asarray(values, dtype=dtype)


def _numeric_step(transformer: object) -> Step | None:
    if isinstance(transformer, StandardScaler):
        mean = transformer.mean_ if transformer.with_mean else 0.0
        scale = transformer.scale_ if transformer.with_std else 1.0
        return lambda x: (x - mean) / scale
    if (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is np.log1p
        and transformer.inverse_func is None
    ):
        log1p: Step = np.log1p
        return log1p
    if isinstance(transformer, Pipeline):
        steps = [_numeric_step(step) for _, step in transformer.steps]
        if any(step is None for step in steps):
            return None

        def chained(x: np.ndarray) -> np.ndarray:
            for step in steps:
                x = step(x)  # type: ignore[misc]
            return x

        return chained
    return None


def _one_hot(encoder: OneHotEncoder) -> Callable[[Frame, list[str]], np.ndarray] | None:
    if encoder.handle_unknown != "ignore" or encoder.drop is not None:
        return None
    categories = [np.asarray(c, dtype=object) for c in encoder.categories_]

    def encode(frame: Frame, columns: list[str]) -> np.ndarray:
        blocks = [
            (_column(frame, name, object)[:, None] == cats[None, :]).astype(float)
            for name, cats in zip(columns, categories, strict=True)
        ]
        return np.hstack(blocks)

    return encode


def _encoded_columns(
    frame: Frame,
    *,
    encode: Callable[[Frame, list[str]], np.ndarray],
    columns: list[str],
) -> np.ndarray:
    return encode(frame, columns)


def _numeric_columns(frame: Frame, *, step: Step, columns: list[str]) -> np.ndarray:
    if isinstance(frame, pd.DataFrame):
        return step(frame[columns].to_numpy(dtype=float))
    return step(np.array([frame[name] for name in columns], dtype=float).T)


def compile_preprocessor(
    preprocess: ColumnTransformer,
) -> Callable[[Frame], np.ndarray] | None:
    """A numpy function equal to `preprocess.transform`, or None if a part is unknown here."""
    parts: list[Callable[[Frame], np.ndarray]] = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder":
            if transformer != "drop":
                return None
            continue
        columns = list(columns)
        if isinstance(transformer, OneHotEncoder):
            encode = _one_hot(transformer)
            if encode is None:
                return None
            parts.append(partial(_encoded_columns, encode=encode, columns=columns))
            continue
        step = _numeric_step(transformer)
        if step is None:
            return None
        parts.append(partial(_numeric_columns, step=step, columns=columns))
    return lambda frame: np.hstack([part(frame) for part in parts])
