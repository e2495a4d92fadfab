"""Scored samples of generated employees and rows written straight into a database, for the
monitoring tests (drift, live performance) of the API and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from persistence.engine import session_scope
from persistence.predictions import PredictionRow, write_predictions
from tests.support.databases import engine_of
from tests.support.rows import prediction_row
from training.contract import Employee, employees_frame
from training.extracts import load_extracts
from training.generator import write_extracts

# The features `shifted` moves.
SHIFTED = {"age", "heure_supplementaires"}


def prediction(
    tag: str,
    created_at: datetime,
    probability: float,
    *,
    employee_id: int | None = None,
    threshold: float = 0.5,
    input: dict[str, Any] | None = None,
    top_factors: list[dict[str, Any]] | None = None,
) -> PredictionRow:
    """A stored prediction of `tag`, its decision at its own threshold."""
    row = prediction_row(
        created_at=created_at,
        employee_id=employee_id,
        input=input if input is not None else {},
        probability=float(probability),
        prediction=int(probability >= threshold),
        threshold=threshold,
        model_tag=tag,
    )
    row.top_factors = top_factors or []
    return row


def write_rows(database_url: str, rows: Sequence[PredictionRow]) -> None:
    with engine_of(database_url) as engine, session_scope(engine) as session:
        write_predictions(session, rows)


@dataclass(frozen=True)
class Sample:
    inputs: list[dict[str, Any]]
    probabilities: list[float]


def score_sample(stored: Any, employees: list[Employee]) -> Sample:
    """Employees as the service stores them, scored by the served model."""
    scores = stored.scorer().score(employees_frame(employees))
    return Sample(
        [e.model_dump(mode="json", exclude_none=True) for e in employees],
        [float(s.probability) for s in scores],
    )


def shifted(sample: Sample, seed: int = 0) -> Sample:
    """The same employees, twelve years older and nearly all on overtime."""
    rng = np.random.default_rng(seed)
    inputs = [
        row | {"age": row["age"] + 12, "heure_supplementaires": bool(rng.random() < 0.9)}
        for row in sample.inputs
    ]
    return Sample(inputs, sample.probabilities)


def scored_samples(
    folder: Path, stored: Any, rows: int, seeds: dict[str, int]
) -> dict[str, Sample]:
    """A generated sample per name (`rows` employees from its seed), scored by `stored`."""
    return {
        name: score_sample(
            stored, load_extracts(write_extracts(folder / name, rows, seed)).employees
        )
        for name, seed in seeds.items()
    }


def anonymous_rows(
    tag: str, sample: Sample, when: datetime, threshold: float
) -> list[PredictionRow]:
    """Rows that name no employee (each counts once), spread over a minute from `when`."""
    return [
        prediction(tag, when + timedelta(seconds=i % 60), p, threshold=threshold, input=row)
        for i, (row, p) in enumerate(zip(sample.inputs, sample.probabilities, strict=True))
    ]
