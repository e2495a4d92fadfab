"""The FastAPI routes the service mounts: history, one prediction and its reviews, stats, the
audit trail. (The predict routes are BentoML APIs in service.py.)

Routes only translate HTTP to persistence calls and rows to response models; the engine is the
service's own (one per worker). Every read that returns person-level scores is logged to the
access log (`serving.access`) after its answer is built, off the request path. Errors are the
envelope (`serving.errors.install_handlers`), routing 404/405 included.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam
from pydantic import AfterValidator

from monitoring.compare import compare_report
from persistence.audit import (
    AuditFilter,
    access_events,
    add_review,
    refusal_events,
    reviews_of,
)
from persistence.engine import session_scope
from persistence.monitoring import (
    AtRiskFilter,
    OutcomeFact,
    at_risk,
    outcome_facts,
    record_outcomes,
    unknown_employees,
)
from persistence.queries import (
    PROTECTED_DIMENSIONS,
    BadCursor,
    HistoryFilter,
    StatsDimension,
    get_prediction,
    history_page,
    prediction_stats,
)
from persistence.shadow import shadow_of, shadow_pairs
from persistence.tables import as_utc
from serving.access import AccessLog
from serving.authentication import Caller, caller_of
from serving.errors import Forbidden, NotFound, install_handlers, invalid
from serving.responses import (
    AccessPage,
    AtRiskItem,
    AtRiskPage,
    ErrorBody,
    HistoryPage,
    OutcomeIn,
    OutcomesRecorded,
    PredictionDetail,
    RefusalPage,
    ReviewIn,
    ReviewOut,
    ShadowScore,
    Stats,
    StatsGroup,
    StoredPrediction,
)
from serving.ui.assets import mount_static
from serving.ui.docs import router as docs_router

# BentoML tags: name[:version], letters, digits and - _ . only.
MODEL_TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}(:[A-Za-z0-9_.-]{1,64})?$"
ModelTag = Annotated[str | None, Query(pattern=MODEL_TAG_PATTERN)]
# PostgreSQL refuses a NUL character in text: refuse it here as a 422 naming the parameter.
NO_NUL = r"^[^\x00]*$"
ClientName = Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)]


Moment = Annotated[datetime | None, AfterValidator(lambda m: None if m is None else as_utc(m))]
EmployeeIdQuery = Annotated[int | None, Query(ge=1, le=2**31 - 1)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=500)]
MAX_OUTCOMES = 10_000


def request_caller(request: Request) -> Caller:
    """Who the gate let in (a key, or an HR-page session): the read routes and the pages."""
    caller = caller_of(request.scope)
    if caller is None:  # the gate lets no one in here without a key
        raise Forbidden("this route needs an API key")
    return caller


def log_read(access: AccessLog, request: Request, employee_ids: list[int | None]) -> None:
    """A read that returned person-level scores goes to the access log (an empty page does
    not: it showed nobody)."""
    if employee_ids:
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)  # `/predictions/{prediction_id}`
        query = {**request.path_params, **request.query_params} or None
        access.record(request_caller(request).name, template, query, employee_ids)


def build_routes(engine: sa.Engine, access: AccessLog) -> FastAPI:
    # One documentation page (serving.ui.docs) on one OpenAPI document (BentoML's /docs.json,
    # which includes these routes): FastAPI's own CDN-loaded pages and partial document are off.
    app = FastAPI(
        title="attrition read API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses={status: {"model": ErrorBody} for status in (401, 403, 404, 422, 503)},
    )
    install_handlers(app)
    mount_static(app)
    app.include_router(docs_router)

    @app.get("/predictions/{prediction_id}", response_model=PredictionDetail)
    def one_prediction(
        request: Request, prediction_id: Annotated[uuid.UUID, PathParam()]
    ) -> PredictionDetail:
        """One stored prediction, as the audit trail holds it, with its reviews."""
        with session_scope(engine) as session:
            record = get_prediction(session, prediction_id)
            if record is None:
                raise NotFound(f"no prediction {prediction_id}")
            reviews = reviews_of(session, [prediction_id]).get(prediction_id, [])
            shadows = shadow_of(session, prediction_id)
            detail = PredictionDetail.model_validate(
                {
                    **StoredPrediction.model_validate(record).model_dump(),
                    "reviews": [ReviewOut.model_validate(r) for r in reviews],
                    "shadow": ShadowScore.model_validate(shadows[-1]) if shadows else None,
                }
            )
        log_read(access, request, [record.employee_id])
        return detail

    @app.post("/predictions/{prediction_id}/reviews", response_model=ReviewOut, status_code=201)
    def review(
        request: Request, prediction_id: Annotated[uuid.UUID, PathParam()], body: ReviewIn
    ) -> ReviewOut:
        """Record what a person decided about a score (role `review`); reviews are never edited."""
        reviewer = request_caller(request).name
        with session_scope(engine) as session:
            stored = add_review(session, prediction_id, body.decision, body.note, reviewer)
            if stored is None:
                raise NotFound(f"no prediction {prediction_id}")
            return ReviewOut.model_validate(stored)

    @app.get("/history", response_model=HistoryPage)
    def history(
        request: Request,
        employee_id: EmployeeIdQuery = None,
        model_tag: ModelTag = None,
        prediction: Annotated[int | None, Query(ge=0, le=1)] = None,
        since: Moment = None,
        until: Moment = None,
        client: ClientName = None,
        reviewed: bool | None = None,
        offset: Offset = 0,
        limit: Limit = 50,
        after: Annotated[str | None, Query(max_length=128)] = None,
    ) -> HistoryPage:
        """Stored predictions, newest first, filtered and paged: `after` = the previous page's
        `next_after` (keyset, cheap at any depth); `total` is exact up to 10,000 rows, an
        estimate beyond (`total_is_estimate`)."""
        filters = HistoryFilter(
            employee_id, model_tag, prediction, since, until, client=client, reviewed=reviewed
        )
        with session_scope(engine) as session:
            try:
                page = history_page(session, filters, offset=offset, limit=limit, after=after)
            except BadCursor as exc:
                raise invalid(
                    [{"field": "after", "rule": "cursor", "message": str(exc)}], "bad cursor"
                ) from exc
            items = [StoredPrediction.model_validate(r) for r in page.rows]
        log_read(access, request, [i.employee_id for i in items])
        return HistoryPage(
            total=page.total,
            total_is_estimate=page.total_is_estimate,
            offset=offset,
            limit=limit,
            items=items,
            next_after=page.next_after,
        )

    @app.get("/stats", response_model=Stats)
    def stats(
        request: Request,
        by: StatsDimension = "departement",
        model_tag: ModelTag = None,
        since: Moment = None,
        until: Moment = None,
    ) -> Stats:
        """Count, positive rate and mean probability per department, job or day; by genre,
        marital status or age band for `audit` keys only."""
        if by in PROTECTED_DIMENSIONS and not request_caller(request).may("audit"):
            raise Forbidden(f"statistics by {by} (a protected attribute) need the 'audit' role")
        filters = HistoryFilter(model_tag=model_tag, since=since, until=until)
        with session_scope(engine) as session:
            groups = prediction_stats(session, by, filters)
        return Stats(by=by, groups=[StatsGroup(**g) for g in groups])

    @app.post("/outcomes", response_model=OutcomesRecorded)
    def outcomes(
        request: Request,
        body: Annotated[list[OutcomeIn], Body(min_length=1, max_length=MAX_OUTCOMES)],
    ) -> OutcomesRecorded:
        """Record who left (and when) or stayed (as of when), role `review`; idempotent."""
        facts = [
            OutcomeFact(o.employee_id, "left" if o.left else "stayed", o.event_date) for o in body
        ]
        client = request_caller(request).name
        with session_scope(engine) as session:
            unknown = unknown_employees(session, [f.employee_id for f in facts])
            if unknown:
                raise invalid(
                    [
                        {
                            "field": f"body[{i}].employee_id",
                            "rule": "unknown_employee",
                            "message": f"no employee with employee_id {f.employee_id}",
                        }
                        for i, f in enumerate(facts)
                        if f.employee_id in unknown
                    ],
                    "unknown employee(s)",
                )
            new = record_outcomes(session, facts, source="api", client=client)
        return OutcomesRecorded(received=len(facts), recorded=new, unchanged=len(facts) - new)

    @app.get("/employees/at-risk", response_model=AtRiskPage)
    def employees_at_risk(
        request: Request,
        departement: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
        poste: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
        band: Literal["low", "medium", "high"] | None = None,
        model_tag: ModelTag = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> AtRiskPage:
        """The latest score of each employee, highest probability first, with the latest review;
        a person-level read, logged."""
        filters = AtRiskFilter(departement, poste, band, model_tag)
        with session_scope(engine) as session:
            total, rows = at_risk(session, filters, offset=offset, limit=limit)
            items = [
                AtRiskItem(
                    **{k: v for k, v in row.items() if k not in ("band", "latest_review")},
                    risk_band=row["band"],
                    latest_review=ReviewOut.model_validate(row["latest_review"])
                    if row["latest_review"]
                    else None,
                )
                for row in rows
            ]
        log_read(access, request, [i.employee_id for i in items])
        return AtRiskPage(total=total, offset=offset, limit=limit, items=items)

    @app.get("/compare")
    def compare(
        since: Moment = None,
        until: Moment = None,
        horizon_days: Annotated[int, Query(ge=1, le=3650)] = 365,
    ) -> dict[str, Any]:
        """The shadow challenger against the champion on the calls both scored: agreement,
        mean |dp|, rank correlation, band flips; with outcomes, ROC-AUC, average precision and
        Brier of each with bootstrap 90 % intervals; a recommendation from a stated rule."""
        with session_scope(engine) as session:
            pairs = shadow_pairs(session, since, until)
            facts = outcome_facts(session, [p["employee_id"] for p in pairs if p["employee_id"]])
        return compare_report(pairs, facts, horizon_days=horizon_days)

    @app.get("/audit/access", response_model=AccessPage)
    def audit_access(
        client: ClientName = None,
        employee_id: EmployeeIdQuery = None,
        route: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
        since: Moment = None,
        until: Moment = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> AccessPage:
        """Who read whose scores (role `audit`), newest first."""
        filters = AuditFilter(client, route, since, until, employee_id)
        with session_scope(engine) as session:
            total, rows = access_events(session, filters, offset=offset, limit=limit)
            return AccessPage.model_validate(
                {"total": total, "offset": offset, "limit": limit, "items": rows}
            )

    @app.get("/audit/refusals", response_model=RefusalPage)
    def audit_refusals(
        client: ClientName = None,
        route: Annotated[str | None, Query(max_length=256, pattern=NO_NUL)] = None,
        since: Moment = None,
        until: Moment = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> RefusalPage:
        """Refused calls, aggregated per address, key, route and error (role `audit`)."""
        filters = AuditFilter(client, route, since, until)
        with session_scope(engine) as session:
            total, rows = refusal_events(session, filters, offset=offset, limit=limit)
            return RefusalPage.model_validate(
                {"total": total, "offset": offset, "limit": limit, "items": rows}
            )

    return app
