"""The HR page's routes (`/ui`): sign-in and sign-out, and the pages for HR analysts and
auditors, server-rendered (`serving.ui.render`), on the service's own engine.

The gate (serving/gate.py) has already admitted each call: a live session with the route's
role, the CSRF token of every POST, the sign-in form's key. Routes only read (or, for a review,
write) through `persistence` and render. Every page that lists people is a person-level read,
logged with the employee ids it showed (`serving.access`). Errors are the one envelope
(`ApiError`), which the gate renders as an HTML page. Caller and access logging are the read
API's own (`serving.routes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from pydantic import BeforeValidator, Field, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from monitoring.live import DRIFT_DAYS
from persistence.audit import (
    AuditFilter,
    access_events,
    add_review,
    refusal_events,
    reviews_of,
    sign_in_events,
)
from persistence.engine import session_scope
from persistence.monitoring import AtRiskFilter, at_risk, latest_snapshot
from persistence.queries import HistoryFilter, prediction_history, prediction_stats
from persistence.sessions import end_session, open_session
from persistence.tables import MonitoringSnapshot, utcnow
from serving.access import AccessLog
from serving.authentication import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_PATH,
    SIGNED_IN_KEY,
    UI_PATH,
    cookie_header,
    expired_session_cookie,
    session_of,
)
from serving.errors import NotFound
from serving.responses import Decision, ModelCard
from serving.routes import NO_NUL, log_read, request_caller
from serving.ui.render import Renderer

PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50
# Scores drawn on an employee's chart (newest first, then shown oldest first).
HISTORY_POINTS = 200
TREND_WEEKS = 12


def _blank(value: Any) -> Any:
    """An empty form field is an absent filter."""
    return value if value not in ("", None) else None


# Constraints on the inner type: an empty field becomes None before they apply.
Text = Annotated[
    Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)] | None,
    BeforeValidator(_blank),
    Query(),
]
Day = Annotated[date | None, BeforeValidator(_blank), Query()]
EmployeeFilter = Annotated[
    Annotated[int, Field(ge=1, le=2**31 - 1)] | None, BeforeValidator(_blank), Query()
]
BandFilter = Annotated[Literal["low", "medium", "high"] | None, BeforeValidator(_blank), Query()]
Offset = Annotated[int, Query(ge=0, le=10**9)]
EmployeeIdPath = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
AuditView = Literal["refusals", "reads", "sign-ins"]


class ServedModel(Protocol):
    """What the pages need of the service: its model card and monitoring reads."""

    async def card(self) -> ModelCard: ...

    def drift(
        self,
        model_tag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, Any]: ...

    def performance(
        self,
        model_tag: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        horizon_days: int = 365,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Pager:
    """Previous / next links of a paged list, keeping its filters."""

    path: str
    filters: dict[str, Any]
    total: int
    offset: int
    limit: int

    def _link(self, offset: int) -> str:
        query = {k: v for k, v in self.filters.items() if v not in (None, "")}
        return f"{self.path}?{urlencode({**query, 'offset': offset})}"

    @property
    def previous(self) -> str | None:
        return self._link(max(0, self.offset - self.limit)) if self.offset > 0 else None

    @property
    def next(self) -> str | None:
        after = self.offset + self.limit
        return self._link(after) if after < self.total else None

    @property
    def first(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.limit)


def weekly(days: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Daily statistics (`prediction_stats(by="day")`) folded into weeks starting on Monday:
    scores, share flagged and mean probability, weighted by each day's count."""
    weeks: dict[date, dict[str, float]] = {}
    for row in days:
        day = date.fromisoformat(str(row["group"])[:10])
        week = weeks.setdefault(day - timedelta(days=day.weekday()), dict.fromkeys("npm", 0.0))
        week["n"] += row["count"]
        week["p"] += row["positive_rate"] * row["count"]
        week["m"] += row["mean_probability"] * row["count"]
    return [
        {"week": start, "count": int(w["n"]), "flagged": w["p"] / w["n"], "mean": w["m"] / w["n"]}
        for start, w in sorted(weeks.items())
    ]


def build_ui(
    engine: sa.Engine,
    access: AccessLog,
    served: Callable[[], ServedModel],
    *,
    renderer: Renderer,
    session_lifetime: timedelta,
    time_zone: str,
) -> APIRouter:
    """The `/ui` routes; `served()` is the service instance answering the call."""
    router = APIRouter(prefix=UI_PATH, include_in_schema=False)
    zone = ZoneInfo(time_zone)

    def start_of(day: date | None) -> datetime | None:
        """A day picked in the pages' time zone, as the moment it starts."""
        return None if day is None else datetime.combine(day, time(), zone)

    @router.get("/sign-in")
    def sign_in_form(request: Request) -> Response:
        return renderer.respond(*renderer.sign_in(request.scope))

    @router.post("/sign-in")
    def sign_in(request: Request) -> Response:
        """The gate checked the form (back-off, CSRF, key): open the session, set its cookie
        (never the key), forget the sign-in form's token."""
        caller = request_caller(request)
        address = request.client.host if request.client else None
        with session_scope(engine) as session:
            token = open_session(
                session,
                key_id=request.scope["state"][SIGNED_IN_KEY],
                client=caller.name,
                address=address,
                lifetime=session_lifetime,
            )
        secure = request.url.scheme == "https"
        response = RedirectResponse(UI_PATH, status_code=303)
        for cookie in (
            cookie_header(SESSION_COOKIE, token, path=UI_PATH, secure=secure, max_age=None),
            cookie_header(SIGN_IN_COOKIE, "", path=SIGN_IN_PATH, secure=secure, max_age=0),
        ):
            response.raw_headers.append((b"set-cookie", cookie.encode()))
        return response

    @router.post("/sign-out")
    def sign_out(request: Request) -> Response:
        live = session_of(request.scope)
        if live is not None:
            with session_scope(engine) as session:
                end_session(session, live.id)
        response = RedirectResponse(SIGN_IN_PATH, status_code=303)
        response.raw_headers.append((b"set-cookie", expired_session_cookie()))
        return response

    @router.get("")
    async def overview(request: Request) -> Response:
        card = await served().card()

        def read() -> dict[str, Any]:
            # Whole weeks from a Monday, UTC midnight (the daily roll-ups answer that).
            today = utcnow().date()
            monday = today - timedelta(days=today.weekday(), weeks=TREND_WEEKS - 1)
            since = datetime.combine(monday, time(), UTC)
            with session_scope(engine) as session:
                bands = {
                    band: at_risk(session, AtRiskFilter(band=band), offset=0, limit=0)[0]
                    for band in ("high", "medium", "low")
                }
                window = HistoryFilter(since=since)
                departments = prediction_stats(session, "departement", window)
                days = prediction_stats(session, "day", window)
            return {"bands": bands, "departments": departments, "weeks": weekly(days)}

        data = await run_in_threadpool(read)
        return renderer.page(
            "overview.html",
            request.scope,
            active="overview",
            card=card,
            trend_weeks=TREND_WEEKS,
            **data,
        )

    @router.get("/at-risk")
    async def employees_at_risk(
        request: Request,
        departement: Text = None,
        poste: Text = None,
        band: BandFilter = None,
        offset: Offset = 0,
    ) -> Response:
        card = await served().card()
        filters = AtRiskFilter(departement, poste, band)

        def read() -> tuple[int, list[dict[str, Any]]]:
            with session_scope(engine) as session:
                return at_risk(session, filters, offset=offset, limit=PAGE_SIZE)

        total, rows = await run_in_threadpool(read)
        log_read(access, request, [row["employee_id"] for row in rows])
        properties = card.contract["schema"]["properties"]
        chosen = {"departement": departement, "poste": poste, "band": band}
        return renderer.page(
            "at_risk.html",
            request.scope,
            active="at-risk",
            rows=rows,
            chosen=chosen,
            departements=properties["departement"]["enum"],
            postes=properties["poste"]["enum"],
            paging=Pager(f"{UI_PATH}/at-risk", chosen, total, offset, PAGE_SIZE),
        )

    def employee_record(employee_id: int) -> dict[str, Any]:
        with session_scope(engine) as session:
            _, rows = prediction_history(
                session, HistoryFilter(employee_id=employee_id), offset=0, limit=HISTORY_POINTS
            )
            if not rows:
                raise NotFound(f"aucun score enregistré pour l'employé {employee_id}")
            reviews = reviews_of(session, [r.id for r in rows])
            return {
                "latest": rows[0],
                "history": [
                    {"at": r.created_at, "probability": r.probability, "model_tag": r.model_tag}
                    for r in reversed(rows)
                ],
                "reviews": sorted(
                    (r for found in reviews.values() for r in found),
                    key=lambda r: r.created_at,
                    reverse=True,
                ),
            }

    @router.get("/employees/{employee_id}")
    def employee(request: Request, employee_id: EmployeeIdPath, saved: bool = False) -> Response:
        record = employee_record(employee_id)
        log_read(access, request, [employee_id])
        chart = [
            {"at": renderer.env.filters["moment"](p["at"]), "probability": p["probability"]}
            for p in record["history"]
        ]
        return renderer.page(
            "employee.html",
            request.scope,
            active="at-risk",
            employee_id=employee_id,
            chart=chart,
            saved=saved,
            may_review=request_caller(request).may("review"),
            **record,
        )

    @router.post("/employees/{employee_id}/reviews")
    def review(
        request: Request,
        employee_id: EmployeeIdPath,
        decision: Annotated[Decision, Form()],
        note: Annotated[str, Form(max_length=2000, pattern=NO_NUL)] = "",
    ) -> Response:
        """A review (role `review`, checked by the gate) of the employee's latest score."""
        reviewer = request_caller(request).name
        with session_scope(engine) as session:
            _, latest = prediction_history(
                session, HistoryFilter(employee_id=employee_id), offset=0, limit=1
            )
            if not latest:
                raise NotFound(f"aucun score enregistré pour l'employé {employee_id}")
            add_review(session, latest[0].id, decision, note.strip(), reviewer)
        return RedirectResponse(
            f"{UI_PATH}/employees/{employee_id}?saved=true#reviews", status_code=303
        )

    @router.get("/monitoring")
    async def monitoring(request: Request) -> Response:
        """The latest monitoring snapshot of the served model (the daily `attrition monitor
        --record` job's, which the Prometheus gauges and alerts also show), else computed now.
        Computing it takes ~0.7 s at 1,000,000 predictions (bench/reads.py: the cohort months
        of the whole history), reading the snapshot a few ms."""
        service = served()
        card = await service.card()

        def snapshot() -> MonitoringSnapshot | None:
            with session_scope(engine) as session:
                return latest_snapshot(session, card.tag)

        recorded = await run_in_threadpool(snapshot)
        if recorded is not None:
            drift, performance = recorded.drift, recorded.performance
        else:
            since = utcnow() - timedelta(days=DRIFT_DAYS)
            drift = await run_in_threadpool(lambda: service.drift(model_tag=card.tag, since=since))
            performance = await run_in_threadpool(lambda: service.performance(model_tag=card.tag))
        return renderer.page(
            "monitoring.html",
            request.scope,
            active="monitoring",
            card=card,
            drift=drift,
            drift_days=DRIFT_DAYS,
            performance=performance,
            computed_at=recorded.created_at if recorded is not None else None,
        )

    @router.get("/audit")
    def audit(
        request: Request,
        view: AuditView = "refusals",
        client: Text = None,
        employee_id: EmployeeFilter = None,
        since: Day = None,
        until: Day = None,
        offset: Offset = 0,
    ) -> Response:
        """Refusals, person-level reads and sign-ins (role `audit`, checked by the gate)."""
        filters = AuditFilter(
            client,
            since=start_of(since),
            until=start_of(until + timedelta(days=1) if until else None),
            employee_id=employee_id if view == "reads" else None,
        )
        reads = {"refusals": refusal_events, "reads": access_events, "sign-ins": sign_in_events}
        with session_scope(engine) as session:
            total, rows = reads[view](session, filters, offset=offset, limit=AUDIT_PAGE_SIZE)
        chosen = {
            "view": view,
            "client": client,
            "employee_id": employee_id,
            "since": since,
            "until": until,
        }
        return renderer.page(
            "audit.html",
            request.scope,
            active="audit",
            view=view,
            rows=rows,
            chosen=chosen,
            paging=Pager(f"{UI_PATH}/audit", chosen, total, offset, AUDIT_PAGE_SIZE),
        )

    return router
