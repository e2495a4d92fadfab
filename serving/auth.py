"""The gate in front of every route: API keys, roles, body size, error shape, refusal audit.

One ASGI middleware, so the BentoML APIs and the mounted read API obey the same rules:
- public: liveness, readiness, metrics, the docs page and its OpenAPI document;
- `predict` role: the three predict routes, and everything a `read` key may call;
- `read` role: every other route (history, stats, model).
A key travels as `X-API-Key: <key>` or `Authorization: Bearer <key>` (what
`bentoml.SyncHTTPClient(url, token=key)` sends). Keys are looked up through a short-TTL
cache, so a call costs no database round trip and a revocation lands within the TTL.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persistence.engine import session_scope
from persistence.keys import KeyRecord, find_key, record_refusal, split_key, touch_key
from persistence.tables import AuditEvent, utcnow

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset(
    {"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"}
)
PUBLIC_PREFIXES = ("/static_content/", "/assets/")
# Refusals the application itself answers (the gate answers the auth ones).
APP_REFUSALS = {413: "payload_too_large", 422: "validation_error"}
PREDICT_PATHS = frozenset({"/predict", "/predict_batch", "/predict_by_id"})


def required_role(path: str) -> str | None:
    """None for public routes, else the role a key needs."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    return "predict" if path in PREDICT_PATHS else "read"


def presented_key(scope: Scope) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if key := headers.get("x-api-key"):
        return key.strip()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class KeyCache:
    """key_id -> key record (or None for unknown ids), each entry trusted for `ttl` seconds."""

    def __init__(self, engine: sa.Engine, ttl: float) -> None:
        self.engine = engine
        self.ttl = ttl
        self._entries: dict[str, tuple[float, KeyRecord | None]] = {}

    def _refresh(self, key_id: str) -> KeyRecord | None:
        with session_scope(self.engine) as session:
            record = find_key(session, key_id)
            if record is not None and not record.revoked:
                touch_key(session, key_id, utcnow())
        return record

    async def lookup(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        cached = self._entries.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await anyio.to_thread.run_sync(self._refresh, key_id)
        self._entries[key_id] = (now + self.ttl, record)
        return record


def _json(status: int, error: str, message: str, detail: Any = None) -> tuple[int, bytes]:
    body: dict[str, Any] = {"error": error, "message": message}
    if detail is not None:
        body["detail"] = detail
    return status, json.dumps(body).encode()


def _validation_detail(body: bytes) -> list[dict[str, Any]]:
    """BentoML's pydantic 400 body -> [{field, rule, message}]."""
    try:
        errors = json.loads(body).get("detail") or []
    except (ValueError, AttributeError):
        return []
    detail = []
    for error in errors if isinstance(errors, list) else []:
        loc = [p for p in error.get("loc") or [] if p != "root"]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        detail.append(
            {"field": field or "body", "rule": error.get("type"), "message": error.get("msg")}
        )
    return detail


class Gatekeeper:
    def __init__(
        self, app: ASGIApp, engine: sa.Engine, key_ttl: float, max_body_bytes: int
    ) -> None:
        self.app = app
        self.engine = engine
        self.keys = KeyCache(engine, key_ttl)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = required_role(scope["path"])
        if role is None:
            await self.app(scope, receive, send)
            return
        client: str | None = None
        try:
            client, refusal = await self._authorise(scope, role)
        except SQLAlchemyError:
            logger.exception("key lookup failed")
            refusal = _json(503, "database_unavailable", "keys cannot be checked; retry later")
        if refusal is None:
            refusal = self._check_size(scope)
        if refusal is not None:
            await self._refuse(scope, send, client, *refusal)
            return
        await self.app(scope, receive, self._reshaping_send(scope, send, client))

    async def _authorise(self, scope: Scope, role: str) -> tuple[str | None, Any]:
        key = presented_key(scope)
        if key is None:
            return None, _json(
                401,
                "missing_api_key",
                "send a key as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
            )
        parts = split_key(key)
        record = await self.keys.lookup(parts[0]) if parts else None
        if record is None or parts is None or not record.matches(parts[1]):
            return None, _json(401, "invalid_api_key", "unknown API key")
        if record.revoked:
            return record.name, _json(401, "revoked_api_key", "this API key has been revoked")
        if role == "predict" and record.role != "predict":
            return record.name, _json(
                403, "forbidden", f"a {record.role!r} key may not call {scope['path']}"
            )
        return record.name, None

    def _check_size(self, scope: Scope) -> tuple[int, bytes] | None:
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return _json(400, "bad_request", "Content-Length is not a number")
                if length > self.max_body_bytes:
                    return _json(
                        413,
                        "payload_too_large",
                        f"the body is {length} bytes; the cap is {self.max_body_bytes}",
                    )
        return None

    def _reshaping_send(self, scope: Scope, send: Send, client: str | None) -> Send:
        """Turn BentoML's 400 for a body that fails the contract into a 422 naming fields."""
        state: dict[str, Any] = {"status": 200, "body": b""}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if state["status"] in APP_REFUSALS:
                    await self._audit(scope, client, state["status"], APP_REFUSALS[state["status"]])
                if state["status"] != 400:
                    await send(message)
                return
            if state["status"] != 400:
                await send(message)
                return
            state["body"] += message.get("body", b"")
            if not message.get("more_body", False):
                detail = _validation_detail(state["body"])
                fields = ", ".join(d["field"] for d in detail) or "body"
                status, body = _json(
                    422,
                    "validation_error",
                    f"the request does not match the contract: {fields}",
                    detail,
                )
                await self._refuse(scope, send, client, status, body)

        return wrapped

    async def _audit(
        self, scope: Scope, client: str | None, status: int, error: str, detail: Any = None
    ) -> None:
        event = AuditEvent(
            client=client,
            method=scope["method"][:8],
            endpoint=scope["path"][:256],
            status=status,
            error=error,
            detail=detail,
        )
        await anyio.to_thread.run_sync(self._record, event)

    async def _refuse(
        self, scope: Scope, send: Send, client: str | None, status: int, body: bytes
    ) -> None:
        payload = json.loads(body)
        await self._audit(scope, client, status, payload["error"], payload.get("detail"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _record(self, event: AuditEvent) -> None:
        """The audit of refusals is best effort: an outage must not turn a 401 into a 500."""
        try:
            with session_scope(self.engine) as session:
                record_refusal(session, event)
        except SQLAlchemyError:
            logger.warning("could not record refused call to %s", event.endpoint)
