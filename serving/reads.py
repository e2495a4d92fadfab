"""The read API (GET routes on a FastAPI app the service mounts): history, one prediction, stats.

Routes only translate HTTP to persistence queries and rows to response models; the engine is
the service's own (one per worker), handed in by `build_reads`. Errors are the envelope
(`serving.errors.install_handlers`), routing 404/405 included.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import FastAPI, Query
from fastapi import Path as PathParam

from persistence.engine import session_scope
from persistence.queries import (
    HistoryFilter,
    StatsDimension,
    get_prediction,
    prediction_history,
    prediction_stats,
)
from serving.errors import NotFound, install_handlers
from serving.responses import ErrorBody, HistoryPage, Stats, StatsGroup, StoredPrediction

# BentoML tags: name[:version], letters, digits and - _ . only.
MODEL_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(:[A-Za-z0-9_.-]{1,64})?$"
ModelTag = Annotated[str | None, Query(pattern=MODEL_TAG_PATTERN)]


def build_reads(engine: sa.Engine) -> FastAPI:
    app = FastAPI(
        title="attrition read API",
        responses={status: {"model": ErrorBody} for status in (401, 403, 404, 422, 503)},
    )
    install_handlers(app)

    @app.get("/predictions/{prediction_id}", response_model=StoredPrediction)
    def one_prediction(prediction_id: Annotated[uuid.UUID, PathParam()]) -> StoredPrediction:
        """One stored prediction, as the audit trail holds it."""
        with session_scope(engine) as session:
            record = get_prediction(session, prediction_id)
            if record is None:
                raise NotFound(f"no prediction {prediction_id}")
            return StoredPrediction.model_validate(record)

    @app.get("/history", response_model=HistoryPage)
    def history(
        employee_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        model_tag: ModelTag = None,
        prediction: Annotated[int | None, Query(ge=0, le=1)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> HistoryPage:
        """Stored predictions, newest first, filtered and paged."""
        filters = HistoryFilter(employee_id, model_tag, prediction, since, until)
        with session_scope(engine) as session:
            total, rows = prediction_history(session, filters, offset=offset, limit=limit)
            items = [StoredPrediction.model_validate(r) for r in rows]
        return HistoryPage(total=total, offset=offset, limit=limit, items=items)

    @app.get("/stats", response_model=Stats)
    def stats(
        by: StatsDimension = "departement",
        model_tag: ModelTag = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Stats:
        """Count, positive rate and mean probability per department, job or day."""
        filters = HistoryFilter(model_tag=model_tag, since=since, until=until)
        with session_scope(engine) as session:
            groups = prediction_stats(session, by, filters)
        return Stats(by=by, groups=[StatsGroup(**g) for g in groups])

    return app
