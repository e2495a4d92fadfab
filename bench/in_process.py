"""The work of the service without HTTP, workers or the batcher, and the database's ceiling."""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import log
from persistence.predictions import PredictionRow

DB_CEILING_BATCH = 16  # the mean batch /predict forms at 64 connections


def timed(function: Callable[[], Any], *, min_runs: int = 5, min_seconds: float = 0.5) -> float:
    """Median wall time of `function`, in seconds, over >= min_runs and >= min_seconds."""
    function()  # warm-up
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - began < min_seconds:
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
        if len(times) >= 200:
            break
    return statistics.median(times)


def in_process(
    home: Path, url: str, employee: dict[str, Any], sizes: tuple[int, ...], *, db_writers: int
) -> dict[str, Any]:
    """The work of one batch without HTTP, workers or the batcher: the ceiling per core; then
    the database's ceiling with `db_writers` processes (0 skips it)."""
    os.environ["BENTOML_HOME"] = str(home)  # before anything imports bentoml
    from pydantic import TypeAdapter

    from persistence.engine import build_engine, session_scope
    from persistence.predictions import write_predictions
    from serving.predictor import Predictor, ScoringRequest
    from serving.responses import Prediction
    from training.contract import Employee, employees_frame
    from training.store import load

    stored = load()
    scorer = stored.scorer()
    engine = build_engine(url)
    predictor = Predictor(scorer, stored.tag, engine)
    many = TypeAdapter(list[Employee])
    answers_adapter = TypeAdapter(list[Prediction])
    results: dict[str, Any] = {"model": stored.tag, "explanation": scorer.explanation_method}
    for size in sizes:
        body = json.dumps([employee] * size).encode()
        employees = many.validate_json(body)
        frame = employees_frame(employees)
        requests = [ScoringRequest(e, "bench", "bench", "/predict_batch") for e in employees]
        answers = predictor.score_and_store(requests, "bench")
        steps = {
            "validate": timed(partial(many.validate_json, body)),
            "frame": timed(partial(employees_frame, employees)),
            "predict_proba": timed(partial(stored.pipeline.predict_proba, frame)),
            "score": timed(partial(scorer.score, frame)),
            "score_and_store": timed(partial(predictor.score_and_store, requests, "bench")),
            "serialize": timed(partial(answers_adapter.dump_json, answers)),
        }
        total = steps["validate"] + steps["score_and_store"] + steps["serialize"]
        results[str(size)] = {
            **{f"{k}_ms": round(v * 1000, 3) for k, v in steps.items()},
            "predict_proba_rows_per_s": round(size / steps["predict_proba"], 1),
            "score_rows_per_s": round(size / steps["score"], 1),
            "end_to_end_ms": round(total * 1000, 3),
            "end_to_end_rows_per_s": round(size / total, 1),
        }
        log(f"in-process n={size}: {results[str(size)]}")

    # The batch write alone (COPY on PostgreSQL): 1000 rows shaped as the predictor builds them.
    scores = scorer.score(employees_frame([Employee.model_validate(employee)] * 1000))
    template = Employee.model_validate(employee).model_dump(mode="json", exclude_none=True)

    sample = [
        PredictionRow(
            id=uuid.uuid4(), created_at=datetime.now(UTC), employee_id=None, input=template,
            probability=s.probability, prediction=s.prediction,
            threshold=scorer.threshold, model_tag=stored.tag, top_factors=s.top_factors,
            latency_ms=1.0, request_id="bench", batch_id=uuid.uuid4(), client="bench",
            endpoint="/predict_batch",
        )
        for s in scores
    ]  # fmt: skip

    def rows() -> list[PredictionRow]:
        return renumbered(sample)

    def insert() -> None:
        batch = rows()
        with session_scope(engine) as session:
            write_predictions(session, batch)

    build = timed(rows)
    insert_s = timed(insert, min_runs=5, min_seconds=1.0)
    results["insert_1000"] = {
        "build_rows_ms": round(build * 1000, 2),
        "insert_commit_ms": round((insert_s - build) * 1000, 2),
        "rows_per_s": round(1000 / (insert_s - build), 1),
    }
    log(f"in-process insert of 1000 rows: {results['insert_1000']}")
    engine.dispose()
    if db_writers:
        results["db_ceiling"] = db_ceiling(url, db_writers, sample[:DB_CEILING_BATCH])
    return results


def renumbered(rows: list[PredictionRow]) -> list[PredictionRow]:
    """The same rows as a new batch: fresh prediction ids and batch id."""
    batch_id = uuid.uuid4()
    return [replace(row, id=uuid.uuid4(), batch_id=batch_id) for row in rows]


def _commit_batches(url: str, batch: list[PredictionRow], seconds: float) -> int:
    """One writer process: `batch` again and again, one COPY + COMMIT each, for `seconds`."""
    from persistence.engine import build_engine, session_scope
    from persistence.predictions import write_predictions

    engine = build_engine(url, pool_size=1, max_overflow=0)
    written, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            write_predictions(session, renumbered(batch))
        written += len(batch)
    engine.dispose()
    return written


def db_ceiling(
    url: str, writers: int, batch: list[PredictionRow], seconds: float = 5.0
) -> dict[str, Any]:
    """Rows/s PostgreSQL commits from `writers` processes of 16-row batches on this machine.

    What every replica's workers share: replicas add throughput until their sum reaches this.
    The writers' own Python (rows, CSV) runs on the same two cores, so it is a lower bound.
    """
    began = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        counts = pool.starmap(_commit_batches, [(url, batch, seconds)] * writers)
    took = time.monotonic() - began
    result = {
        "writers": writers,
        "batch": len(batch),
        "rows_per_s": round(sum(counts) / seconds, 1),
        "commits_per_s": round(sum(counts) / len(batch) / seconds, 1),
        "elapsed_s": round(took, 1),
    }
    log(f"database ceiling: {result}")
    return result
