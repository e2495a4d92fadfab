"""The attrition service: wiring of the stored model, batching, persistence and HTTP.

POST APIs (`/predict`, `/predict_batch`, `/predict_by_id`, `/model`) are BentoML APIs; the other
routes (history, one prediction and its reviews, stats, audit, `GET /model`) live on a FastAPI
app mounted on the same service (serving/routes.py), with the HR page (`/ui`, serving/ui). One
engine per worker process (`ENGINE`) serves the APIs, the routes, the pages, the gate and the
audit logs: the connection budget is one pool per worker.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

import anyio
import bentoml
from fastapi import Query
from pydantic import Field

from monitoring.live import live_drift, live_performance
from persistence.engine import build_engine, database_ready, session_scope
from persistence.predictions import REQUEST_ID_LENGTH
from persistence.queries import get_employee
from serving.access import AccessLog
from serving.authentication import SignInBackoff, caller_of
from serving.batcher import AdaptiveBatcher
from serving.bentoml_compat import (
    ListBody,
    describe_service,
    disable_unexported_tracing,
    install_request_deadline,
)
from serving.errors import NotFound, refusing
from serving.gate import Gate, UiOptions
from serving.gauges import GaugeRefresher
from serving.predictor import Predictor, ScoringRequest
from serving.refusals import RefusalLog
from serving.responses import (
    PROBABILITY_UNCALIBRATED,
    ChallengerCard,
    EmployeeId,
    ModelCard,
    Prediction,
    RiskBand,
    ScoringState,
    predictions_response,
)
from serving.routes import ModelTag, Moment, build_routes
from serving.shadow import ShadowScorer
from serving.switch import ScoringSwitchReader
from serving.ui.docs import API_DESCRIPTION
from serving.ui.pages import build_ui
from serving.ui.render import Renderer
from settings import get_settings
from training.contract import Employee
from training.store import StoredModel, from_bento_model

settings = get_settings()
disable_unexported_tracing()
install_request_deadline()
describe_service("attrition", API_DESCRIPTION)
ENGINE = build_engine(
    settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
)
REFUSALS = RefusalLog(
    ENGINE,
    flush_seconds=settings.refusal_flush_seconds,
    max_pending=settings.refusal_max_pending,
)
ACCESS = AccessLog(
    ENGINE, flush_seconds=settings.access_flush_seconds, max_pending=settings.access_max_pending
)
SWITCH = ScoringSwitchReader(ENGINE, ttl=settings.switch_check_seconds)
routes = build_routes(ENGINE, ACCESS)
PAGES = Renderer(settings.ui_time_zone)
# Per worker: each worker slows down the addresses that failed on it (docs/SECURITY.md).
SIGN_IN_BACKOFF = SignInBackoff(
    free=settings.ui_signin_free_failures,
    window=settings.ui_signin_window_seconds,
    cap=settings.ui_signin_max_wait_seconds,
)
routes.include_router(
    build_ui(
        ENGINE,
        ACCESS,
        bentoml.get_current_service,
        renderer=PAGES,
        session_lifetime=timedelta(hours=settings.ui_session_hours),
        time_zone=settings.ui_time_zone,
    )
)


class EmployeeList(ListBody[Employee]):
    """The body of `/predict_batch`: a JSON array of 1 to `ATTRITION_MAX_BATCH_ROWS` employees.

    The bounds are in the schema so that an oversized array is refused (422 `too_long`) before
    a single item is validated.
    """

    root: Annotated[list[Employee], Field(min_length=1, max_length=settings.max_batch_rows)]


def _shadow_scorer(stored: StoredModel) -> ShadowScorer:
    """The challenger scores with its own trained threshold (the override is the champion's)."""
    return ShadowScorer(stored.scorer(), stored.tag, ENGINE)


def _request(ctx: bentoml.Context, employee: Employee, endpoint: str) -> ScoringRequest:
    """Who asked (the gate's caller), through which route, with the caller's `X-Request-ID`
    (cut to the column's 64 characters) or a new one."""
    caller = caller_of(ctx.request.scope)
    request_id = ctx.request.headers.get("x-request-id", "")[:REQUEST_ID_LENGTH]
    return ScoringRequest(
        employee, request_id or uuid.uuid4().hex, caller.name if caller else None, endpoint
    )


def _model_envs() -> list[dict[str, str]]:
    """The model tags the service is declared with, as its envs: `bentoml build` writes them
    into the Bento and its image (`ENV`), so an image that packs a champion and a challenger
    says which is which without its deployment repeating deploy/models.env (an unset
    `ATTRITION_MODEL_TAG` there would load `latest`: the challenger). An environment that
    sets them still wins (`bentoml serve` passes the process's own values to the workers)."""
    tags = {
        "ATTRITION_MODEL_TAG": settings.model_tag,
        "ATTRITION_SHADOW_MODEL_TAG": settings.shadow_model_tag,
    }
    return [{"name": name, "value": tag} for name, tag in tags.items() if tag]


@bentoml.service(name="attrition", envs=_model_envs())
@bentoml.asgi_app(routes, path="/")
class Attrition:
    model = bentoml.models.BentoModel(settings.model_tag)
    # Declared on the class so that `bentoml build` packs it too; loaded at start, never on a call.
    shadow_model = (
        bentoml.models.BentoModel(settings.shadow_model_tag) if settings.shadow_model_tag else None
    )

    def __init__(self) -> None:
        stored = from_bento_model(self.model)
        self.stored = stored
        self.engine = ENGINE
        self.scorer = stored.scorer(settings.threshold_override)
        self.predictor = Predictor(self.scorer, stored.tag, ENGINE)
        self.challenger = from_bento_model(self.shadow_model) if self.shadow_model else None
        self.shadow = _shadow_scorer(self.challenger) if self.challenger else None
        self.gauges = GaugeRefresher(
            ENGINE, stored.tag, SWITCH, interval=settings.gauge_refresh_seconds
        )
        self.batcher: AdaptiveBatcher[ScoringRequest, Prediction] = AdaptiveBatcher(
            self._score_batch,
            max_batch_size=settings.batch_max_size,
            max_latency_ms=settings.batch_max_latency_ms,
        )
        # Every full collection walks what is alive; the ~250k objects of start-up (BentoML,
        # sklearn, the model) never die, so park them outside the collector: profiled full
        # collections fell from 200-300 ms to a few ms, the 16-connection p99 from ~250 ms.
        gc.collect()
        gc.freeze()

    async def _score_batch(self, requests: Sequence[ScoringRequest]) -> list[Prediction]:
        answers = await anyio.to_thread.run_sync(
            self.predictor.score_and_store, requests, "predict"
        )
        if self.shadow is not None:  # scheduled only: the answers leave first
            self.shadow.after(requests, answers)
        return answers

    @bentoml.on_startup
    async def _start_background_tasks(self) -> None:
        await REFUSALS.start()
        await ACCESS.start()
        await self.gauges.start()

    @bentoml.on_shutdown
    async def _stop_background_tasks(self) -> None:
        if self.shadow is not None:
            await self.shadow.drain()
        await self.gauges.close()
        await REFUSALS.close()
        await ACCESS.close()

    def __is_ready__(self) -> bool:
        """Ready while the database answers: the model is loaded before the worker exists."""
        return database_ready(self.engine)

    @bentoml.api(route="/predict")
    @refusing
    async def predict(self, employee: Employee, /, ctx: bentoml.Context) -> Prediction:
        """Score one employee; concurrent calls are scored together (adaptive batching)."""
        await SWITCH.ensure_scoring()
        return await self.batcher(_request(ctx, employee, "/predict"))

    @bentoml.api(route="/predict_batch", input_spec=EmployeeList)
    @refusing
    async def predict_batch(
        self, employees: list[Employee], /, ctx: bentoml.Context
    ) -> list[Prediction]:
        """Score a list of employees in one pass; answers come back in the same order."""
        await SWITCH.ensure_scoring()
        first = _request(ctx, employees[0], "/predict_batch")
        requests = [replace(first, employee=e) for e in employees]
        answers = await anyio.to_thread.run_sync(
            self.predictor.score_and_store, requests, "predict_batch"
        )
        if self.shadow is not None:  # scheduled only: the answers leave first
            self.shadow.after(requests, answers)
        return predictions_response(answers)  # type: ignore[return-value]

    @bentoml.api(route="/predict_by_id")
    @refusing
    async def predict_by_id(self, body: EmployeeId, /, ctx: bentoml.Context) -> Prediction:
        """Score an employee from the `employees` table (see `attrition db seed`); a
        person-level read, so it is logged to the access log."""
        await SWITCH.ensure_scoring()
        features = await anyio.to_thread.run_sync(self._employee_features, body.employee_id)
        request = _request(ctx, Employee.model_validate(features), "/predict_by_id")
        answer = await self.batcher(replace(request, employee_id=body.employee_id))
        ACCESS.record(request.client, "/predict_by_id", None, [body.employee_id])
        return answer

    def _employee_features(self, employee_id: int) -> dict[str, object]:
        with session_scope(self.engine) as session:
            record = get_employee(session, employee_id)
            if record is None:
                raise NotFound(f"no employee with employee_id {employee_id}")
            return record.features

    @bentoml.api(route="/model")
    async def model_card(self) -> ModelCard:
        """The served model: tag, threshold, bands, calibration, fairness, scoring state."""
        return await self.card()

    @routes.get("/model", response_model=ModelCard)
    async def get_model(self) -> ModelCard:
        return await self.card()

    @routes.get("/performance")
    def performance(
        self,
        model_tag: ModelTag = None,
        since: Moment = None,
        until: Moment = None,
        horizon_days: Annotated[int, Query(ge=1, le=3650)] = 365,
    ) -> dict[str, Any]:
        """Live performance against outcomes (horizon rule), overall and per cohort month,
        with the training figures beside it; the served model unless `model_tag` says."""
        with session_scope(self.engine) as session:
            return live_performance(
                session,
                self.stored.metadata,
                model_tag=model_tag or self.stored.tag,
                since=since,
                until=until,
                horizon_days=horizon_days,
                threshold=self.scorer.threshold,
            )

    @routes.get("/drift")
    def drift(
        self,
        model_tag: ModelTag = None,
        since: Moment = None,
        until: Moment = None,
    ) -> dict[str, Any]:
        """Drift of the latest input per employee in the window against the served model's
        training reference: PSI and a chi-square test per feature, the score, a status."""
        with session_scope(self.engine) as session:
            return live_drift(
                session,
                self.stored.metadata,
                model_tag=model_tag or self.stored.tag,
                since=since,
                until=until,
                min_rows=settings.drift_min_rows,
            )

    async def card(self) -> ModelCard:
        """The served model and the scoring switch's state (`/model`, the HR page)."""
        metadata = self.stored.metadata
        switch = await SWITCH.state()
        return ModelCard(
            tag=self.stored.tag,
            threshold=self.scorer.threshold,
            trained_threshold=self.stored.threshold,
            threshold_overridden=self.scorer.threshold != self.stored.threshold,
            metrics=metadata["metrics"],
            contract=metadata["contract"],
            training_data=metadata["training_data"],
            explanation_method=self.scorer.explanation_method,
            probability_meaning=metadata.get("probability_meaning", PROBABILITY_UNCALIBRATED),
            risk_bands=[
                RiskBand(band=b["band"], lower=b["from"], upper=b["to"], meaning=b["meaning"])
                for b in self.scorer.risk_bands
            ],
            features_used=metadata.get("features_used", metadata["contract"]["features"]),
            fairness=metadata.get("fairness"),
            scoring=ScoringState(
                suspended=switch.suspended, reason=switch.reason, since=switch.since, by=switch.by
            ),
            shadow=ChallengerCard(
                tag=self.challenger.tag,
                threshold=self.challenger.threshold,
                training_data=self.challenger.metadata["training_data"],
                metrics=self.challenger.metadata["metrics"],
            )
            if self.challenger
            else None,
        )


# `add_asgi_middleware` is added by `@bentoml.service`, which mypy cannot see.
Attrition.add_asgi_middleware(  # type: ignore[attr-defined]
    Gate,
    engine=ENGINE,
    key_ttl=settings.key_cache_seconds,
    key_cache_size=settings.key_cache_size,
    max_body_bytes=settings.max_body_bytes,
    refusals=REFUSALS,
    ui=UiOptions(
        idle=timedelta(minutes=settings.ui_session_idle_minutes),
        backoff=SIGN_IN_BACKOFF,
        error_page=PAGES.error_page,
    ),
)
