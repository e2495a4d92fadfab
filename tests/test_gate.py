"""The gate (serving/gate.py) in process, around a tiny Starlette app, on real SQLite and
PostgreSQL: keys and roles, the bounded key cache, the body cap on received bytes, the
envelope of the app's errors, and the refusal audit written off the request path."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import prometheus_client
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import db
from persistence.engine import build_engine, session_scope
from persistence.keys import create_key, revoke_key
from persistence.tables import AccessEvent, ApiKey, AuditEvent
from serving.access import AccessLog
from serving.authentication import Caller, caller_of, required_role
from serving.gate import Gate
from serving.refusals import RefusalLog
from tests.support import databases

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
CAP = 8 * MiB
UNRECORDED = "attrition_refusals_unrecorded_total"
ACCESS_UNRECORDED = "attrition_access_events_unrecorded_total"
# Nothing listens on port 1: connections are refused at once.
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/attrition_none"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # RefusalLog and the batcher are asyncio code


# --- the app behind the gate -------------------------------------------------------------


@dataclass
class Calls:
    count: int = 0


def tiny_app(calls: Calls) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        calls.count += 1
        body = await request.body()
        return JSONResponse({"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def history(_request: Request) -> JSONResponse:
        calls.count += 1
        return JSONResponse({"items": []}, headers={"x-app": "yes"})

    async def livez(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def invalid(_request: Request) -> JSONResponse:
        # What BentoML answers when an API's input fails pydantic validation.
        detail = [{"type": "greater_than_equal", "loc": ["age"], "msg": "too young"}]
        return JSONResponse({"error": "1 validation error", "detail": detail}, status_code=400)

    async def crash(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("Traceback (most recent call last): secret", status_code=500)

    async def whoami(request: Request) -> JSONResponse:
        calls.count += 1
        caller = caller_of(request.scope)
        if caller is None:
            return JSONResponse({"name": None})
        return JSONResponse({"name": caller.name, "roles": sorted(caller.roles)})

    return Starlette(
        routes=[
            Route("/predict", echo, methods=["POST"]),
            Route("/history", history),
            Route("/livez", livez),
            Route("/invalid", invalid, methods=["POST"]),
            Route("/crash", crash),
            Route("/whoami", whoami),
            Route("/livez/whoami", whoami),
            Route("/predictions/{prediction_id}/reviews", whoami, methods=["GET", "POST"]),
            Route("/outcomes", whoami, methods=["POST"]),
            Route("/audit/access", whoami),
            Route("/stats", whoami),
        ]
    )


# --- databases and keys -------------------------------------------------------------------


@dataclass
class Backend:
    url: str
    engine: sa.Engine
    predict: str
    read: str
    revoked: str


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('gate') / 'gate.db'}"
        yield from _backend(url)
    else:
        server = request.getfixturevalue("postgres_server")
        with databases.fresh_database(server) as url:
            yield from _backend(url)


def _backend(url: str) -> Iterator[Backend]:
    db.upgrade(url)
    engine = build_engine(url)
    with session_scope(engine) as session:
        keys = {role: create_key(session, f"gate-{role}", role) for role in ("predict", "read")}
        revoked = create_key(session, "gate-revoked", "predict")
    with session_scope(engine) as session:
        revoke_key(session, "gate-revoked")
    try:
        yield Backend(url, engine, keys["predict"], keys["read"], revoked)
    finally:
        engine.dispose()


@pytest.fixture
def engine(backend: Backend) -> sa.Engine:
    """The backend's engine with an empty audit table."""
    with session_scope(backend.engine) as session:
        session.execute(sa.delete(AuditEvent))
    return backend.engine


def make_gate(
    engine: sa.Engine,
    calls: Calls | None = None,
    *,
    ttl: float = 5,
    size: int = 100,
    cap: int = CAP,
    flush_seconds: float = 3600,
    max_pending: int = 1000,
) -> Gate:
    refusals = RefusalLog(engine, flush_seconds=flush_seconds, max_pending=max_pending)
    return Gate(
        tiny_app(calls or Calls()),
        engine=engine,
        key_ttl=ttl,
        key_cache_size=size,
        max_body_bytes=cap,
        refusals=refusals,
    )


def client(gate: Gate) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://gate")


def audit_rows(engine: sa.Engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.id)))


def envelope_of(answer: httpx.Response) -> dict[str, Any]:
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert {"error", "message"} <= set(body) <= {"error", "message", "detail"}
    return body


def count_queries(engine: sa.Engine) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", record)


# --- raw ASGI, to count what the gate reads -----------------------------------------------


def http_scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("10.0.0.1", 50000),
        "server": ("gate", 80),
    }


class Stream:
    """A client body: `chunks` messages, then (optionally) a disconnect; counts reads."""

    def __init__(self, chunks: list[bytes], *, disconnect: bool = False) -> None:
        self.chunks = chunks
        self.disconnect = disconnect
        self.consumed = 0

    async def receive(self) -> dict:
        if self.consumed < len(self.chunks):
            chunk = self.chunks[self.consumed]
            self.consumed += 1
            last = self.consumed == len(self.chunks) and not self.disconnect
            return {"type": "http.request", "body": chunk, "more_body": not last}
        if self.disconnect:
            self.consumed += 1
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # a real server's receive waits for the next event
        raise AssertionError("unreachable")


async def drive(gate: Gate, scope: dict, stream: Stream) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(gate(scope, stream.receive, send), 30)
    return sent


def answer_of(sent: list[dict]) -> tuple[int, dict[str, str], bytes]:
    start, *bodies = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in bodies)


# --- authentication and roles --------------------------------------------------------------


async def test_public_routes_need_no_key(engine):
    gate = make_gate(engine)
    async with client(gate) as http:
        answer = await http.get("/livez")
    assert answer.status_code == 200 and answer.text == "ok"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"X-API-Key": ""}, "missing_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
        ({"X-API-Key": "not-a-key"}, "invalid_api_key"),
        ({"X-API-Key": "atk_"}, "invalid_api_key"),
        ({"X-API-Key": "atk_abc."}, "invalid_api_key"),
        ({"X-API-Key": "atk_000000000000.secret"}, "invalid_api_key"),
    ],
)
async def test_missing_and_invalid_keys_are_401_envelopes(engine, headers, code):
    calls = Calls()
    gate = make_gate(engine, calls)
    async with client(gate) as http:
        answer = await http.post("/predict", json={}, headers=headers)
    assert answer.status_code == 401
    assert envelope_of(answer)["error"] == code
    assert calls.count == 0


async def test_a_known_key_id_with_a_wrong_secret_is_401(engine, backend):
    key_id = backend.predict.split(".")[0]
    gate = make_gate(engine)
    async with client(gate) as http:
        answer = await http.post("/predict", json={}, headers={"X-API-Key": f"{key_id}.wrong"})
    assert answer.status_code == 401
    assert envelope_of(answer)["error"] == "invalid_api_key"


async def test_a_revoked_key_is_401_and_names_the_client_in_the_audit(engine, backend):
    gate = make_gate(engine)
    async with client(gate) as http:
        answer = await http.post("/predict", json={}, headers={"X-API-Key": backend.revoked})
    await gate.refusals.close()
    assert answer.status_code == 401
    assert envelope_of(answer)["error"] == "revoked_api_key"
    [row] = audit_rows(engine)
    assert (row.client, row.status, row.error) == ("gate-revoked", 401, "revoked_api_key")


async def test_a_read_key_may_not_predict(engine, backend):
    calls = Calls()
    gate = make_gate(engine, calls)
    async with client(gate) as http:
        refused = await http.post("/predict", json={}, headers={"X-API-Key": backend.read})
        allowed = await http.get("/history", headers={"Authorization": f"Bearer {backend.read}"})
    await gate.refusals.close()
    assert refused.status_code == 403
    assert envelope_of(refused)["error"] == "forbidden"
    assert "/predict" in refused.json()["message"]
    assert allowed.status_code == 200 and allowed.headers["x-app"] == "yes"
    assert calls.count == 1
    [row] = audit_rows(engine)
    assert (row.client, row.status, row.endpoint) == ("gate-read", 403, "/predict")


async def test_a_predict_key_may_read_and_predict_and_is_marked_used(engine, backend):
    gate = make_gate(engine)
    async with client(gate) as http:
        bearer = await http.post(
            "/predict", content=b"{}", headers={"Authorization": f"Bearer {backend.predict}"}
        )
        read = await http.get("/history", headers={"X-API-Key": backend.predict})
    assert bearer.status_code == 200 and read.status_code == 200
    with Session(engine) as session:
        key = session.exec(select(ApiKey).where(ApiKey.name == "gate-predict")).one()
    assert key.last_used_at is not None


async def test_a_revocation_lands_within_the_cache_ttl(engine):
    with session_scope(engine) as session:
        name = f"gate-ttl-{uuid.uuid4().hex[:6]}"
        key = create_key(session, name, "predict")
    gate = make_gate(engine, ttl=1.0)
    headers = {"X-API-Key": key}
    async with client(gate) as http:
        assert (await http.get("/history", headers=headers)).status_code == 200
        with session_scope(engine) as session:
            revoke_key(session, name)
        assert (await http.get("/history", headers=headers)).status_code == 200  # cached
        await asyncio.sleep(1.1)
        late = await http.get("/history", headers=headers)
    await gate.refusals.close()
    assert late.status_code == 401
    assert late.json()["error"] == "revoked_api_key"


async def test_the_key_cache_is_bounded_and_caches_unknown_ids(engine, backend):
    gate = make_gate(engine, size=16)
    cache = gate.auth.keys._entries
    assert cache.maxsize == 16
    seen, stop = count_queries(engine)
    try:
        async with client(gate) as http:
            for _ in range(100):
                key = f"atk_{secrets.token_hex(6)}.{secrets.token_urlsafe(8)}"
                answer = await http.get("/history", headers={"X-API-Key": key})
                assert answer.status_code == 401
            assert len(cache) <= 16
            misses = len(seen)
            assert misses >= 100  # each new id was looked up once

            unknown = f"atk_{secrets.token_hex(6)}.x"
            await http.get("/history", headers={"X-API-Key": unknown})
            assert cache[unknown[4:].split(".")[0]] is None  # the unknown id is cached...
            before = len(seen)
            for _ in range(5):
                again = await http.get("/history", headers={"X-API-Key": unknown})
                assert again.status_code == 401
            assert len(seen) == before  # ...so repeats cost no query

            good = await http.get("/history", headers={"X-API-Key": backend.read})
            assert good.status_code == 200
    finally:
        stop()
        await gate.refusals.close()


async def test_keys_that_cannot_be_checked_are_a_503_not_a_500():
    engine = build_engine(UNREACHABLE)
    gate = make_gate(engine)
    try:
        async with client(gate) as http:
            answer = await http.get("/history", headers={"X-API-Key": "atk_abcdef012345.s"})
        assert answer.status_code == 503
        assert envelope_of(answer)["error"] == "database_unavailable"
    finally:
        await gate.refusals.close()
        engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/livez", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/docs.json", None),
        ("GET", "/static_content/index.css", None),
        ("POST", "/predict", "predict"),
        ("GET", "/predict", "predict"),  # any method: a 405 is for callers who may predict
        ("POST", "/predict_batch", "predict"),
        ("POST", "/predict_by_id", "predict"),
        ("POST", "/predictions/00000000-0000-0000-0000-000000000000/reviews", "review"),
        ("GET", "/predictions/00000000-0000-0000-0000-000000000000/reviews", "read"),
        ("POST", "/outcomes", "review"),
        ("GET", "/audit/access", "audit"),
        ("GET", "/audit/refusals", "audit"),
        ("POST", "/audit/access", "audit"),
        ("GET", "/history", "read"),
        ("GET", "/predictions/00000000-0000-0000-0000-000000000000", "read"),
        ("GET", "/stats", "read"),
        ("GET", "/model", "read"),
        ("POST", "/model", "read"),
        ("GET", "/employees/at-risk", "read"),
        ("GET", "/anything-else", "read"),
        ("GET", "/livez/whoami", "read"),  # a public path's children are not public
        ("GET", "//predict", "read"),  # routing has no such route: 404 for any reader
    ],
)
def test_the_role_each_route_needs(method, path, role):
    assert required_role(method, path) == role


@pytest.mark.parametrize(
    ("roles", "may"),
    [
        ({"read"}, {"read"}),
        ({"predict"}, {"read", "predict"}),
        ({"review"}, {"read", "review"}),
        ({"audit"}, {"read", "audit"}),
        ({"predict", "review"}, {"read", "predict", "review"}),
        ({"predict", "review", "audit"}, {"read", "predict", "review", "audit"}),
    ],
)
def test_every_role_may_read_and_each_adds_only_its_own(roles, may):
    caller = Caller("someone", frozenset(roles))
    assert {r for r in ("read", "predict", "review", "audit") if caller.may(r)} == may


async def test_each_role_reaches_only_its_routes_and_the_app_sees_the_caller(engine):
    suffix = uuid.uuid4().hex[:6]
    held = {
        "review": ("review",),
        "audit": ("audit",),
        "predict+review": ("predict", "review"),
        "all": ("audit", "predict", "review"),
    }
    with session_scope(engine) as session:
        keys = {
            label: create_key(session, f"gate-{label}-{suffix}", *roles)
            for label, roles in held.items()
        }
    calls = Calls()
    gate = make_gate(engine, calls)
    routes = [
        ("POST", "/predict", "predict"),
        ("POST", "/predictions/00000000-0000-0000-0000-000000000000/reviews", "review"),
        ("POST", "/outcomes", "review"),
        ("GET", "/audit/access", "audit"),
        ("GET", "/stats", "read"),
        ("GET", "/whoami", "read"),
    ]
    async with client(gate) as http:
        for label, roles in held.items():
            for method, path, needed in routes:
                answer = await http.request(
                    method, path, headers={"X-API-Key": keys[label]}, content=b"{}"
                )
                context = (label, method, path, answer.text)
                if needed == "read" or needed in roles:
                    assert answer.status_code == 200, context
                    if path != "/predict":  # the echo route; the others say who called
                        assert answer.json() == {
                            "name": f"gate-{label}-{suffix}",
                            "roles": sorted(roles),
                        }, context
                else:
                    assert answer.status_code == 403, context
                    body = envelope_of(answer)
                    assert body["error"] == "forbidden"
                    assert f"{needed!r}" in body["message"] and path in body["message"]
        public = await http.get("/livez")
    await gate.refusals.close()
    assert public.status_code == 200
    refused = audit_rows(engine)
    assert {(r.client, r.status) for r in refused} == {
        (f"gate-{label}-{suffix}", 403) for label in ("review", "audit", "predict+review")
    }


# --- body limits ----------------------------------------------------------------------------


async def test_a_chunked_body_over_the_cap_is_413_without_reading_the_stream(engine, backend):
    calls = Calls()
    gate = make_gate(engine, calls)
    chunk = b"x" * MiB
    stream = Stream([chunk] * 64)
    headers = [(b"transfer-encoding", b"chunked"), (b"x-api-key", backend.predict.encode())]
    sent = await drive(gate, http_scope("/predict", headers), stream)
    await gate.refusals.close()
    status, answer_headers, body = answer_of(sent)
    assert status == 413
    assert answer_headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "payload_too_large"
    # 8 chunks fill the cap exactly; the 9th crosses it and reading stops there.
    assert stream.consumed == CAP // MiB + 1
    assert calls.count == 0
    [row] = audit_rows(engine)
    assert (row.status, row.client, row.client_address) == (413, "gate-predict", "10.0.0.1")


async def test_a_declared_length_over_the_cap_is_413_before_reading(engine, backend):
    calls = Calls()
    gate = make_gate(engine, calls)
    stream = Stream([b"x" * MiB] * 4)
    headers = [
        (b"content-length", str(100 * MiB).encode()),
        (b"x-api-key", backend.predict.encode()),
    ]
    sent = await drive(gate, http_scope("/predict", headers), stream)
    await gate.refusals.close()
    assert answer_of(sent)[0] == 413
    assert stream.consumed == 0
    assert calls.count == 0


async def test_a_body_under_the_cap_reaches_the_app_intact(engine, backend):
    gate = make_gate(engine)
    chunks = [os.urandom(MiB) for _ in range(3)] + [os.urandom(1234)]
    body = b"".join(chunks)
    stream = Stream(chunks)
    headers = [(b"transfer-encoding", b"chunked"), (b"x-api-key", backend.predict.encode())]
    sent = await drive(gate, http_scope("/predict", headers), stream)
    status, _, answer = answer_of(sent)
    assert status == 200
    assert json.loads(answer) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert stream.consumed == len(chunks)


async def test_the_cap_is_inclusive_and_checked_through_http(engine, backend):
    gate = make_gate(engine, cap=1024)
    headers = {"X-API-Key": backend.predict}
    async with client(gate) as http:
        at_cap = await http.post("/predict", content=b"a" * 1024, headers=headers)
        over = await http.post("/predict", content=b"a" * 1025, headers=headers)

        async def streamed():
            for _ in range(4):
                yield b"b" * 300

        chunked = await http.post("/predict", content=streamed(), headers=headers)
        bad_length = await http.post(
            "/predict", content=b"{}", headers=headers | {"Content-Length": "lots"}
        )
    await gate.refusals.close()
    assert at_cap.status_code == 200 and at_cap.json()["bytes"] == 1024
    assert over.status_code == 413 and envelope_of(over)["error"] == "payload_too_large"
    assert chunked.status_code == 413
    assert bad_length.status_code == 400 and envelope_of(bad_length)["error"] == "bad_request"


async def test_a_client_gone_while_sending_gets_no_answer_and_raises_nothing(
    engine, backend, caplog
):
    calls = Calls()
    gate = make_gate(engine, calls)
    stream = Stream([b"x" * 1000, b"y" * 1000], disconnect=True)
    headers = [(b"transfer-encoding", b"chunked"), (b"x-api-key", backend.predict.encode())]
    with caplog.at_level(logging.INFO, logger="serving"):
        sent = await drive(gate, http_scope("/predict", headers), stream)
    await gate.refusals.close()
    assert sent == []
    assert calls.count == 0
    assert stream.consumed == 3
    assert audit_rows(engine) == []
    # One INFO line, no ERROR and no traceback.
    records = [r for r in caplog.records if r.name.startswith("serving")]
    assert [(r.levelno, r.exc_info) for r in records] == [(logging.INFO, None)]
    assert "/predict" in records[0].getMessage()


# --- the app's errors, as the envelope ------------------------------------------------------


async def test_the_apps_errors_become_the_envelope_and_successes_pass_untouched(engine, backend):
    gate = make_gate(engine)
    headers = {"X-API-Key": backend.read}
    async with client(gate) as http:
        invalid = await http.post("/invalid", content=b"{}", headers=headers)
        missing = await http.get("/nowhere", headers=headers)
        method = await http.delete("/history", headers=headers)
        crash = await http.get("/crash", headers=headers)
        fine = await http.get("/history", headers=headers)
    await gate.refusals.close()

    assert invalid.status_code == 422
    body = envelope_of(invalid)
    assert body["error"] == "validation_error"
    assert body["detail"] == [
        {"field": "age", "rule": "greater_than_equal", "message": "too young"}
    ]
    assert missing.status_code == 404
    assert envelope_of(missing) == {
        "error": "not_found",
        "message": "no such route or resource: GET /nowhere",
    }
    assert method.status_code == 405
    assert envelope_of(method)["message"] == "method not allowed: DELETE /history"
    assert crash.status_code == 500 and b"secret" not in crash.content
    assert envelope_of(crash)["error"] == "internal_error"
    assert fine.json() == {"items": []} and fine.headers["x-app"] == "yes"

    # Refusals are audited (with the fields at fault); routing 404/405 and 500s are not.
    [row] = audit_rows(engine)
    assert (row.status, row.error, row.client, row.endpoint) == (
        422,
        "validation_error",
        "gate-read",
        "/invalid",
    )
    assert row.detail == body["detail"]


async def test_a_405_keeps_the_apps_allow_header(engine, backend):
    """RFC 9110 15.5.6: a 405 MUST say which methods are allowed. The envelope replaces the
    body; the app's headers (Allow, Retry-After, ...) must survive the rewrite."""
    gate = make_gate(engine)
    async with client(gate) as http:
        answer = await http.delete("/history", headers={"X-API-Key": backend.read})
    await gate.refusals.close()
    assert answer.status_code == 405
    envelope_of(answer)
    assert "GET" in answer.headers.get("allow", "").replace(" ", "").split(",")


# --- the refusal audit ----------------------------------------------------------------------


async def test_a_flood_of_random_keys_costs_a_few_rows_that_count_every_call(engine):
    gate = make_gate(engine, size=1000)
    total = 10_000
    began = time.monotonic()

    async def refused(i: int) -> int:
        key = f"atk_{secrets.token_hex(6)}.{secrets.token_urlsafe(16)}"
        headers = [(b"x-api-key", key.encode()), (b"content-length", b"0")]
        sent = await drive(gate, http_scope("/predict", headers), Stream([b""]))
        return int(sent[0]["status"])

    statuses: list[int] = []
    for start in range(0, total, 500):
        statuses += await asyncio.gather(*(refused(i) for i in range(start, start + 500)))
    assert statuses == [401] * total
    assert audit_rows(engine) == [], "no refusal is written on the request path"
    await gate.refusals.flush()
    rows = audit_rows(engine)
    await gate.refusals.close()

    assert 1 <= len(rows) <= 3
    assert sum(row.count for row in rows) == total
    assert {(r.status, r.error, r.client_address) for r in rows} == {
        (401, "invalid_api_key", "10.0.0.1")
    }
    assert all(r.last_seen_at >= r.created_at for r in rows)
    assert len(gate.auth.keys._entries) <= 1000
    print(f"{total} refusals in {time.monotonic() - began:.1f} s")


async def test_the_background_task_writes_refusals_by_itself(engine):
    gate = make_gate(engine, flush_seconds=0.05)
    async with client(gate) as http:
        for _ in range(7):
            assert (await http.get("/history")).status_code == 401
        for _ in range(100):
            if audit_rows(engine):
                break
            await asyncio.sleep(0.05)
    await gate.refusals.close()
    rows = audit_rows(engine)
    assert sum(r.count for r in rows) == 7
    assert {r.error for r in rows} == {"missing_api_key"}


async def test_groups_over_max_pending_fold_into_an_overflow_row(engine):
    gate = make_gate(engine, max_pending=3)
    async with client(gate) as http:
        for route in range(10):
            for _ in range(5):
                answer = await http.get(f"/route-{route}")
                assert answer.status_code == 401
    await gate.refusals.flush()
    rows = audit_rows(engine)
    await gate.refusals.close()

    kept = sorted(r.endpoint for r in rows if r.endpoint != "*")
    [overflow] = [r for r in rows if r.endpoint == "*"]
    assert kept == ["/route-0", "/route-1", "/route-2"]
    assert all(r.count == 5 for r in rows if r.endpoint != "*")
    assert overflow.count == 35
    assert (overflow.status, overflow.error) == (401, "missing_api_key")
    assert overflow.method in ("GET", "*")
    assert overflow.client_address is None and overflow.client is None
    assert sum(r.count for r in rows) == 50


async def test_overflow_is_one_group_per_status_and_error_whatever_the_method(engine):
    """The bound holds against the method too: h11 (uvicorn's pure-Python parser) accepts any
    token as a method, so a flood of made-up methods must not grow the pending groups."""
    gate = make_gate(engine, max_pending=2)
    for i in range(100):
        sent = await drive(gate, http_scope(f"/r{i}", [], method=f"M{i}"), Stream([b""]))
        assert sent[0]["status"] == 401
    pending = len(gate.refusals._pending)
    await gate.refusals.flush()
    rows = audit_rows(engine)
    await gate.refusals.close()
    assert sum(r.count for r in rows) == 100
    assert pending <= 3, f"{pending} groups pending for max_pending=2"
    assert len([r for r in rows if r.endpoint == "*"]) == 1


def unrecorded() -> float:
    return prometheus_client.REGISTRY.get_sample_value(UNRECORDED) or 0.0


@pytest.mark.parametrize("outage", ["unreachable", "unmigrated"])
async def test_a_database_outage_while_flushing_is_counted_not_raised(outage, tmp_path: Path):
    url = UNREACHABLE if outage == "unreachable" else f"sqlite:///{tmp_path / 'empty.db'}"
    engine = build_engine(url)
    gate = make_gate(engine)
    before = unrecorded()
    try:
        async with client(gate) as http:
            began = time.monotonic()
            for _ in range(4):
                assert (await http.get("/history")).status_code == 401
            assert time.monotonic() - began < 2  # the refusals did not wait on the database
        await gate.refusals.flush()  # must not raise
        assert unrecorded() == before + 4
        await gate.refusals.flush()  # the lost batch is gone, not retried forever
        assert unrecorded() == before + 4
    finally:
        await gate.refusals.close()
        engine.dispose()


async def test_lifespan_passes_through(engine):
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    gate = Gate(
        app,
        engine=engine,
        key_ttl=1,
        key_cache_size=16,
        max_body_bytes=CAP,
        refusals=RefusalLog(engine, flush_seconds=1, max_pending=10),
    )

    async def nothing() -> dict:
        return {"type": "lifespan.startup"}

    async def ignore(_message) -> None:
        return None

    await gate({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]


# --- the access log (the same batched writer, another kind of row) ------------------------


def access_unrecorded() -> float:
    return prometheus_client.REGISTRY.get_sample_value(ACCESS_UNRECORDED) or 0.0


async def test_the_access_log_writes_what_was_read_when_it_flushes(engine):
    log = AccessLog(engine, flush_seconds=3600, max_pending=100)
    client_name = f"reader-{uuid.uuid4().hex[:6]}"
    log.record(client_name, "/history", {"employee_id": "7"}, [7, 7, None])
    log.record(client_name, "/predictions/x", None, [None])
    many = list(range(1, 301))
    log.record(client_name, "/employees/at-risk", {"limit": "300"}, many)
    mine = select(AccessEvent).where(AccessEvent.client == client_name).order_by(AccessEvent.id)
    with Session(engine) as session:
        assert session.exec(mine).all() == [], "nothing is written before a flush"
    await log.flush()
    await log.close()
    with Session(engine) as session:
        rows = session.exec(mine).all()
    assert [(r.route, r.query, r.employee_ids, r.employee_count) for r in rows] == [
        ("/history", {"employee_id": "7"}, [7], 3),
        ("/predictions/x", None, [], 1),
        ("/employees/at-risk", {"limit": "300"}, many[:100], 300),  # ids capped, count kept
    ]


@pytest.mark.parametrize("outage", ["unreachable", "unmigrated"])
async def test_an_access_log_outage_is_counted_and_logged_not_raised(
    outage, tmp_path: Path, caplog
):
    url = UNREACHABLE if outage == "unreachable" else f"sqlite:///{tmp_path / 'empty.db'}"
    engine = build_engine(url)
    log = AccessLog(engine, flush_seconds=3600, max_pending=100)
    before = access_unrecorded()
    try:
        for i in range(5):
            log.record("reader", "/history", None, [i + 1])
        with caplog.at_level(logging.WARNING, logger="serving"):
            await log.flush()  # must not raise
        assert access_unrecorded() == before + 5
        assert any(
            "could not record 5 person-level reads" in r.getMessage() for r in caplog.records
        )
        await log.flush()  # the lost batch is gone, not retried forever
        assert access_unrecorded() == before + 5
    finally:
        await log.close()
        engine.dispose()


async def test_the_access_log_holds_at_most_max_pending_events(engine):
    log = AccessLog(engine, flush_seconds=3600, max_pending=3)
    client_name = f"flood-{uuid.uuid4().hex[:6]}"
    before = access_unrecorded()
    for i in range(10):
        log.record(client_name, "/history", None, [i + 1])
    assert access_unrecorded() == before + 7
    await log.close()
    with Session(engine) as session:
        rows = session.exec(select(AccessEvent).where(AccessEvent.client == client_name)).all()
    assert sorted(r.employee_ids[0] for r in rows) == [1, 2, 3]


async def test_the_access_log_writes_by_itself_from_a_worker_thread(engine):
    """Sync routes record from worker threads: the task started on the loop writes them."""
    log = AccessLog(engine, flush_seconds=0.05, max_pending=100)
    client_name = f"thread-{uuid.uuid4().hex[:6]}"
    await log.start()
    try:
        await anyio.to_thread.run_sync(lambda: log.record(client_name, "/history", None, [1]))

        def written() -> int:
            with Session(engine) as session:
                found = session.exec(select(AccessEvent).where(AccessEvent.client == client_name))
                return len(found.all())

        for _ in range(100):
            if written():
                break
            await asyncio.sleep(0.05)
        assert written() == 1
    finally:
        await log.close()
