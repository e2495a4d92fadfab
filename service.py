"""The attrition service: wiring of the stored model, batching, persistence and HTTP.

POST APIs (`/predict`, `/predict_batch`, `/predict_by_id`, `/model`) are BentoML APIs; the read
routes (`GET /history`, `/predictions/{id}`, `/stats`, `/model`) live on a FastAPI app mounted
on the same service, so they share its model, engine and auth.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import bentoml
from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from persistence.engine import session_scope, shared_engine
from persistence.queries import (
    HistoryFilter,
    StatsDimension,
    get_employee,
    get_prediction,
    prediction_history,
    prediction_stats,
)
from persistence.tables import EmployeeRecord
from scoring.scorer import Scorer
from serving.auth import Gatekeeper
from serving.batch_body import EmployeeList, predictions_response
from serving.batcher import AdaptiveBatcher
from serving.errors import ApiError, NotFound, TooLarge, Unprocessable, database_error
from serving.health import database_ready
from serving.predictor import Predictor, ScoringRequest
from serving.responses import (
    EmployeeId,
    ErrorBody,
    HistoryPage,
    ModelCard,
    Prediction,
    Stats,
    StatsGroup,
    StoredPrediction,
)
from serving.runtime import batching_caps, disable_unexported_tracing
from serving.timeout import install as install_request_deadline
from settings import get_settings
from training.contract import Employee
from training.store import from_bento_model

T = TypeVar("T")
SERVICE_NAME = "attrition"
# BentoML tags: name[:version], letters, digits and - _ . only.
MODEL_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(:[A-Za-z0-9_.-]{1,64})?$"
settings = get_settings()
disable_unexported_tracing()
install_request_deadline()
reads = FastAPI(
    title="attrition read API",
    responses={status: {"model": ErrorBody} for status in (401, 403, 404, 422, 503)},
)


def _request_id(ctx: bentoml.Context) -> str:
    return ctx.request.headers.get("x-request-id") or uuid.uuid4().hex


@bentoml.service(name=SERVICE_NAME, traffic={"timeout": 60})
@bentoml.asgi_app(reads, path="/")
class Attrition:
    model = bentoml.models.BentoModel(settings.model_tag)

    def __init__(self) -> None:
        stored = from_bento_model(self.model)
        self.trained_threshold = stored.threshold
        threshold = settings.threshold_override
        self.metadata = stored.metadata
        self.scorer = Scorer(
            stored.pipeline, self.trained_threshold if threshold is None else threshold
        )
        self.engine = shared_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.predictor = Predictor(self.scorer, stored.tag, self.engine)
        max_batch_size, max_latency_ms = batching_caps(SERVICE_NAME)
        self.batcher: AdaptiveBatcher[ScoringRequest, Prediction] = AdaptiveBatcher(
            self._score_batch, max_batch_size=max_batch_size, max_latency_ms=max_latency_ms
        )
        # Every full collection walks what is alive; the ~250k objects of start-up (BentoML,
        # sklearn, the model) never die, so park them outside the collector: profiled full
        # collections fell from 200-300 ms to a few ms, the 16-connection p99 from ~250 ms.
        gc.collect()
        gc.freeze()

    async def _score_batch(self, requests: tuple[ScoringRequest, ...]) -> list[Prediction]:
        return await anyio.to_thread.run_sync(self.predictor.score_and_store, requests, "predict")

    def __is_ready__(self) -> bool:
        """Ready while the database answers: the model is loaded before the worker exists."""
        return database_ready(self.engine)

    @bentoml.api(route="/predict")
    async def predict(self, employee: Employee, /, ctx: bentoml.Context) -> Prediction:
        """Score one employee; concurrent calls are scored together (adaptive batching)."""
        try:
            return await self.batcher(ScoringRequest(employee, _request_id(ctx)))
        except ApiError as error:
            return _refuse(ctx, error)

    @bentoml.api(route="/predict_batch", input_spec=EmployeeList)
    async def predict_batch(
        self, employees: list[Employee], /, ctx: bentoml.Context
    ) -> list[Prediction]:
        """Score a list of employees in one pass; answers come back in the same order."""
        try:
            if not employees:
                raise Unprocessable(
                    "a batch holds at least one employee",
                    [{"field": "body", "rule": "min_length", "message": "empty list"}],
                )
            if len(employees) > settings.max_batch_rows:
                raise TooLarge(
                    f"a batch holds at most {settings.max_batch_rows} employees, "
                    f"got {len(employees)}"
                )
            request_id = _request_id(ctx)
            requests = [ScoringRequest(e, request_id) for e in employees]
            answers = await anyio.to_thread.run_sync(
                self.predictor.score_and_store, requests, "predict_batch"
            )
            return predictions_response(answers)  # type: ignore[return-value]
        except ApiError as error:
            return _refuse(ctx, error)

    @bentoml.api(route="/predict_by_id")
    async def predict_by_id(self, body: EmployeeId, /, ctx: bentoml.Context) -> Prediction:
        """Score an employee from the `employees` table (see `attrition db seed`)."""
        try:
            record = await anyio.to_thread.run_sync(self._employee, body.employee_id)
            employee = Employee.model_validate(record.features)
            request = ScoringRequest(employee, _request_id(ctx), employee_id=record.id)
            return await self.batcher(request)
        except ApiError as error:
            return _refuse(ctx, error)

    def _employee(self, employee_id: int) -> EmployeeRecord:
        with session_scope(self.engine) as session:
            record = _read(lambda: get_employee(session, employee_id))
        if record is None:
            raise NotFound(f"no employee with employee_id {employee_id}")
        return record

    @bentoml.api(route="/model")
    def model_card(self) -> ModelCard:
        """The served model: tag, threshold, metrics, contract and training-data fingerprint."""
        return self._card()

    @reads.get("/model", response_model=ModelCard)
    def get_model(self) -> ModelCard:
        return self._card()

    def _card(self) -> ModelCard:
        return ModelCard(
            tag=self.predictor.model_tag,
            threshold=self.scorer.threshold,
            trained_threshold=self.trained_threshold,
            threshold_overridden=self.scorer.threshold != self.trained_threshold,
            metrics=self.metadata["metrics"],
            contract=self.metadata["contract"],
            training_data=self.metadata["training_data"],
            explanation_method=self.scorer.explanation_method,
        )

    @reads.get("/predictions/{prediction_id}", response_model=StoredPrediction)
    def get_prediction(self, prediction_id: Annotated[uuid.UUID, PathParam()]) -> object:
        with session_scope(self.engine) as session:
            record = _read(lambda: get_prediction(session, prediction_id))
            if record is None:
                raise NotFound(f"no prediction {prediction_id}")
            return StoredPrediction.model_validate(record)

    @reads.get("/history", response_model=HistoryPage)
    def history(
        self,
        employee_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
        model_tag: Annotated[str | None, Query(pattern=MODEL_TAG_PATTERN)] = None,
        prediction: Annotated[int | None, Query(ge=0, le=1)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> object:
        """Stored predictions, newest first, filtered and paged."""
        filters = HistoryFilter(employee_id, model_tag, prediction, since, until)
        with session_scope(self.engine) as session:
            total, rows = _read(
                lambda: prediction_history(session, filters, offset=offset, limit=limit)
            )
            items = [StoredPrediction.model_validate(r) for r in rows]
        return HistoryPage(total=total, offset=offset, limit=limit, items=items)

    @reads.get("/stats", response_model=Stats)
    def stats(
        self,
        by: StatsDimension = "departement",
        model_tag: Annotated[str | None, Query(pattern=MODEL_TAG_PATTERN)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> object:
        """Count, positive rate and mean probability per department, job or day."""
        filters = HistoryFilter(model_tag=model_tag, since=since, until=until)
        with session_scope(self.engine) as session:
            groups = _read(lambda: prediction_stats(session, by, filters))
        return Stats(by=by, groups=[StatsGroup(**g) for g in groups])


def _refuse(ctx: bentoml.Context, error: ApiError) -> Any:
    """BentoML copies the context's status onto a returned response: set both."""
    ctx.response.status_code = error.status
    return error.response()


def _read(query: Callable[[], T]) -> T:
    """Run a read; an unreachable database is a 503, not a stack trace."""
    try:
        return query()
    except SQLAlchemyError as exc:
        raise database_error(exc, "the database cannot be read right now; retry later") from exc


@reads.exception_handler(ApiError)
async def _api_error(_request: object, error: ApiError) -> JSONResponse:
    return error.response()


@reads.exception_handler(RequestValidationError)
async def _invalid_query(_request: object, error: RequestValidationError) -> JSONResponse:
    """The read API refuses bad parameters in the same shape as the predict APIs."""
    detail = [
        {
            "field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
            "rule": e["type"],
            "message": e["msg"],
        }
        for e in error.errors()
    ]
    fields = ", ".join(d["field"] for d in detail)
    return Unprocessable(f"invalid parameter(s): {fields}", detail).response()


Attrition.add_asgi_middleware(
    Gatekeeper,
    engine=shared_engine(settings.database_url, settings.db_pool_size, settings.db_max_overflow),
    key_ttl=settings.key_cache_seconds,
    max_body_bytes=settings.max_body_bytes,
)
