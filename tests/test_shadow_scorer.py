"""The shadow challenger in process (serving/shadow.py): it coalesces what the champion
answered into one scoring call and one write, bounds its queue, and never raises.

The end-to-end behaviour (N calls → N champion rows and N shadow rows, a broken challenger
costs no call) is in tests/test_shadow.py against `bentoml serve`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

import db
from persistence.engine import build_engine, session_scope
from persistence.predictions import write_predictions
from persistence.tables import ShadowPrediction
from serving.predictor import ScoringRequest
from serving.responses import Prediction
from serving.shadow import ShadowScorer
from tests.support.payloads import RAW
from tests.support.rows import prediction_row
from training.contract import Employee, employees_frame
from training.store import load


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'shadow.db'}"
    db.upgrade(url)
    built = build_engine(url)
    yield built
    built.dispose()


def answered(engine: sa.Engine, calls: int) -> list[tuple[ScoringRequest, Prediction]]:
    """`calls` champion rows committed, each with the request and answer the champion gave."""
    rows = [prediction_row() for _ in range(calls)]
    with session_scope(engine) as session:
        write_predictions(session, rows)
    employee = Employee.model_validate(RAW)
    return [
        (
            ScoringRequest(employee, f"r{i}", "tests", "/predict"),
            Prediction(
                prediction_id=row.id,
                probability=row.probability,
                prediction=0,
                label="Non",
                threshold=row.threshold,
                risk_band="low",
                model_tag=row.model_tag,
                top_factors=[],
                latency_ms=1.0,
            ),
        )
        for i, row in enumerate(rows)
    ]


def failures() -> float:
    return prometheus_client.REGISTRY.get_sample_value("attrition_shadow_failures_total") or 0.0


def shadow_rows(engine: sa.Engine) -> list[ShadowPrediction]:
    with Session(engine) as session:
        return list(session.exec(select(ShadowPrediction)))


async def feed(shadow: ShadowScorer, calls: list[tuple[ScoringRequest, Prediction]]) -> None:
    for request, answer in calls:  # as the champion does: one `after` per answered batch
        shadow.after([request], [answer])
    await shadow.drain()


def test_batches_queued_meanwhile_are_scored_and_written_together(engine, trained_tag):
    stored = load(trained_tag)
    scorer = stored.scorer()
    calls = answered(engine, 50)
    asyncio.run(feed(ShadowScorer(scorer, stored.tag, engine), calls))

    rows = shadow_rows(engine)
    assert sorted(row.prediction_id for row in rows) == sorted(a.prediction_id for _, a in calls)
    # One commit for the 50 batches queued before the consumer ran: one write time.
    assert len({row.created_at for row in rows}) == 1
    expected = scorer.score(employees_frame([Employee.model_validate(RAW)]))[0].probability
    assert {round(row.probability, 12) for row in rows} == {round(expected, 12)}
    assert {row.prediction for row in rows} == {int(expected >= scorer.threshold)}


def test_past_its_bound_the_queue_drops_batches_instead_of_growing(engine, trained_tag):
    stored = load(trained_tag)
    shadow = ShadowScorer(stored.scorer(), stored.tag, engine, max_pending_rows=10)
    before = failures()
    asyncio.run(feed(shadow, answered(engine, 15)))
    assert len(shadow_rows(engine)) == 10
    assert failures() - before == 5


def test_a_write_that_fails_is_counted_not_raised_and_the_next_batch_is_written(
    engine, trained_tag
):
    stored = load(trained_tag)
    shadow = ShadowScorer(stored.scorer(), stored.tag, engine)
    calls = answered(engine, 4)
    with engine.begin() as connection:  # the challenger's table is gone: its writes fail
        connection.execute(sa.text("ALTER TABLE shadow_predictions RENAME TO parked"))
    before = failures()
    asyncio.run(feed(shadow, calls[:2]))  # no exception reaches the caller
    assert failures() - before == 2
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE parked RENAME TO shadow_predictions"))
    asyncio.run(feed(shadow, calls[2:]))
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(ShadowPrediction)).one() == 2
