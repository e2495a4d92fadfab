"""Who is calling, and may they call this route: API keys, roles, a bounded key cache.

A key holds one or more roles; every role may read. The matrix (docs/SECURITY.md):
- public: liveness, readiness, metrics, the docs page and its OpenAPI document;
- `read`: history, one prediction, stats, model, the monitoring reads;
- `predict`: read + `/predict`, `/predict_batch`, `/predict_by_id`;
- `review`: read + `POST /predictions/{id}/reviews`, `POST /outcomes`;
- `audit`: read + `/audit/*` and statistics by protected attribute (checked by the route).
A key travels as `X-API-Key: <key>` or `Authorization: Bearer <key>` (what
`bentoml.SyncHTTPClient(url, token=key)` sends). Lookups go through a TTL + LRU cache, so a
call costs no database round trip, a revocation lands within the TTL, and a flood of random
key ids costs at most `size` entries of memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import sqlalchemy as sa
from cachetools import TTLCache
from starlette.types import Scope

from persistence.engine import session_scope
from persistence.errors import StoreError
from persistence.keys import KeyRecord, find_key, split_key, touch_key
from persistence.tables import utcnow
from serving.errors import Forbidden, Unauthenticated, Unavailable

PUBLIC_PATHS = frozenset(
    {"/", "/docs", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"}
)
PUBLIC_PREFIXES = ("/static_content/", "/assets/", "/ui/static/")
PREDICT_PATHS = frozenset({"/predict", "/predict_batch", "/predict_by_id"})
REVIEW_PATHS = frozenset({"/outcomes"})
AUDIT_PREFIX = "/audit/"
# Cache misses that may query the database at once: a flood of unknown key ids waits here
# instead of taking every pooled connection from the predict path.
MISS_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the gate let in: the key's name (never the key) and its roles."""

    name: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        return role == "read" or role in self.roles


def required_role(method: str, path: str) -> str | None:
    """None for public routes, else the role a key needs."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path in PREDICT_PATHS:
        return "predict"
    if path.startswith(AUDIT_PREFIX):
        return "audit"
    if method == "POST" and (path in REVIEW_PATHS or path.endswith("/reviews")):
        return "review"
    return "read"


def caller_of(scope: Scope) -> Caller | None:
    """The caller the gate stored in the request's state (None on public routes)."""
    caller: Caller | None = scope.get("state", {}).get(CALLER)
    return caller


CALLER = "attrition.caller"


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of `X-API-Key`, else of `Authorization: Bearer`, else None."""
    bearer: str | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-api-key":
            return value.decode("latin-1").strip() or None
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


class KeyCache:
    """key_id -> key record, or None for an unknown id; each entry trusted for `ttl` seconds."""

    def __init__(self, engine: sa.Engine, *, ttl: float, size: int) -> None:
        self.engine = engine
        self._entries: TTLCache[str, KeyRecord | None] = TTLCache(maxsize=size, ttl=ttl)
        self._misses = anyio.CapacityLimiter(MISS_CONCURRENCY)

    def _fetch(self, key_id: str) -> KeyRecord | None:
        with session_scope(self.engine) as session:
            record = find_key(session, key_id)
            if record is not None and not record.revoked:
                touch_key(session, key_id, utcnow())
        return record

    async def lookup(self, key_id: str) -> KeyRecord | None:
        try:
            return self._entries[key_id]
        except KeyError:
            pass
        record = await anyio.to_thread.run_sync(self._fetch, key_id, limiter=self._misses)
        self._entries[key_id] = record
        return record


class Authenticator:
    """`await authenticate(headers, path, role)` -> the key's name, or raises the refusal."""

    def __init__(self, keys: KeyCache) -> None:
        self.keys = keys

    async def authenticate(
        self, headers: list[tuple[bytes, bytes]], path: str, role: str
    ) -> Caller:
        key = presented_key(headers)
        if key is None:
            raise Unauthenticated(
                "send a key as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
                code="missing_api_key",
            )
        parts = split_key(key)
        try:
            record = await self.keys.lookup(parts[0]) if parts else None
        except StoreError as exc:
            raise Unavailable("keys cannot be checked right now; retry later") from exc
        if record is None or parts is None or not record.matches(parts[1]):
            raise Unauthenticated("unknown API key", code="invalid_api_key")
        if record.revoked:
            raise Unauthenticated(
                "this API key has been revoked", code="revoked_api_key", client=record.name
            )
        caller = Caller(record.name, record.roles)
        if not caller.may(role):
            held = ", ".join(sorted(record.roles))
            raise Forbidden(
                f"this key ({held}) may not call {path}: it needs the {role!r} role",
                client=record.name,
            )
        return caller
