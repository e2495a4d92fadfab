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

The HR page (`/ui`) takes no key header: its sign-in form takes a key once and opens a session
(`persistence.sessions`); its pages accept only the session cookie, which resolves to the key
through the same cache (a revoked key ends its sessions within the TTL) and the same roles
(the page `/ui/audit` needs `audit`, a review needs `review`). The cookie is never accepted on
the API. Failed sign-ins slow their address down (`SignInBackoff`).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

import anyio
import sqlalchemy as sa
from cachetools import TTLCache
from starlette.requests import cookie_parser
from starlette.types import Scope

from persistence.engine import session_scope
from persistence.errors import StoreError
from persistence.keys import KeyRecord, find_key, split_key, touch_key
from persistence.sessions import LiveSession, end_session, resume
from persistence.tables import utcnow
from serving.errors import ApiError, Forbidden, Unauthenticated, Unavailable

UI_PATH = "/ui"
SIGN_IN_PATH = "/ui/sign-in"
UI_AUDIT_PATH = "/ui/audit"
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/docs",
        "/livez",
        "/readyz",
        "/healthz",
        "/metrics",
        "/docs.json",
        "/schema.json",
        SIGN_IN_PATH,
    }
)
PUBLIC_PREFIXES = ("/static_content/", "/assets/", "/ui/static/")
PREDICT_PATHS = frozenset({"/predict", "/predict_batch", "/predict_by_id"})
REVIEW_PATHS = frozenset({"/outcomes"})
AUDIT_PREFIX = "/audit/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The browser's session token (HttpOnly, SameSite=Strict, Path=/ui); never the key.
SESSION_COOKIE = "attrition_session"
# The sign-in form's CSRF token (double submit: this cookie must equal the form's field).
SIGN_IN_COOKIE = "attrition_sign_in"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = b"x-csrf-token"
KEY_FIELD = "key"
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


def is_ui(path: str) -> bool:
    """The HR page's routes (sessions, not keys)."""
    return path == UI_PATH or path.startswith(UI_PATH + "/")


def required_role(method: str, path: str) -> str | None:
    """None for public routes, else the role a key (or a session's key) needs."""
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path in PREDICT_PATHS:
        return "predict"
    if path.startswith(AUDIT_PREFIX) or path == UI_AUDIT_PATH:
        return "audit"
    if method == "POST" and (path in REVIEW_PATHS or path.endswith("/reviews")):
        return "review"
    return "read"


def permitted(caller: Caller, role: str, action: str) -> Caller:
    """The caller, if it holds `role`; else the 403 saying which role `action` needs."""
    if not caller.may(role):
        held = ", ".join(sorted(caller.roles))
        raise Forbidden(
            f"this key ({held}) may not {action}: it needs the {role!r} role", client=caller.name
        )
    return caller


def caller_of(scope: Scope) -> Caller | None:
    """The caller the gate stored in the request's state (None on public routes)."""
    caller: Caller | None = scope.get("state", {}).get(CALLER)
    return caller


def session_of(scope: Scope) -> LiveSession | None:
    """The HR page's session the gate resolved for this request (None elsewhere)."""
    live: LiveSession | None = scope.get("state", {}).get(SESSION)
    return live


CALLER = "attrition.caller"
SESSION = "attrition.ui_session"
# The key id a successful sign-in authenticated (the sign-in route opens its session).
SIGNED_IN_KEY = "attrition.signed_in_key"


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies (Starlette's parser)."""
    for name, value in scope["headers"]:
        if name.lower() == b"cookie":
            return cookie_parser(value.decode("latin-1"))
    return {}


def cookie_header(name: str, value: str, *, path: str, secure: bool, max_age: int | None) -> str:
    """A `Set-Cookie` value: HttpOnly, SameSite=Strict, `Secure` over HTTPS; `max_age` None
    lives with the browser session, 0 deletes it."""
    jar: SimpleCookie = SimpleCookie()
    jar[name] = value
    morsel = jar[name]
    morsel["path"] = path
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if secure:
        morsel["secure"] = True
    if max_age is not None:
        morsel["max-age"] = max_age
    return morsel.OutputString()


def expired_session_cookie() -> bytes:
    """Deletes the browser's session cookie."""
    return cookie_header(SESSION_COOKIE, "", path=UI_PATH, secure=False, max_age=0).encode()


def form_fields(body: bytes) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body's fields (the first value of each)."""
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def check_csrf(
    scope: Scope, form: dict[str, str], expected: str | None, *, client: str | None
) -> None:
    """An unsafe call to the HR page must present the expected CSRF token, as the form field
    `csrf_token` or the header `X-CSRF-Token` (htmx); else 403 `csrf_failed`."""
    presented = form.get(CSRF_FIELD) or next(
        (v.decode("latin-1") for n, v in scope["headers"] if n.lower() == CSRF_HEADER), ""
    )
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden(
            "the form's CSRF token is missing or wrong; reload the page and try again",
            code="csrf_failed",
            client=client,
        )


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
        return await self.check(key, path, role)

    async def check(self, key: str, path: str, role: str) -> Caller:
        """The caller `key` stands for, if it may call `path` with `role`; else the refusal."""
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
        return permitted(Caller(record.name, record.roles), role, f"call {path}")


class SignInRequired(Exception):
    """No live session on an HR page: the gate sends the browser to the sign-in form (and
    clears the cookie when one was presented)."""

    def __init__(self, *, had_cookie: bool) -> None:
        super().__init__("sign in first")
        self.had_cookie = had_cookie


class SessionAuthenticator:
    """`await authenticate(scope, role)`: the HR page's session cookie -> its key's caller.

    One database statement per page (`persistence.sessions.resume`: alive? then seen now); the
    key itself comes from the key cache, so a revoked key ends the session (marked ended) within
    the cache's TTL, and the session gets exactly its key's roles.
    """

    def __init__(self, engine: sa.Engine, keys: KeyCache, *, idle: timedelta) -> None:
        self.engine = engine
        self.keys = keys
        self.idle = idle

    def _resume(self, token: str) -> LiveSession | None:
        with session_scope(self.engine) as session:
            return resume(session, token, idle=self.idle)

    def _end(self, session_id: int) -> None:
        with session_scope(self.engine) as session:
            end_session(session, session_id)

    async def authenticate(self, scope: Scope, role: str) -> Caller:
        token = cookies(scope).get(SESSION_COOKIE)
        if not token:
            raise SignInRequired(had_cookie=False)
        try:
            live = await anyio.to_thread.run_sync(self._resume, token)
            record = await self.keys.lookup(live.key_id) if live is not None else None
            if live is not None and (record is None or record.revoked):
                await anyio.to_thread.run_sync(self._end, live.id)
        except StoreError as exc:
            raise Unavailable("sessions cannot be checked right now; retry later") from exc
        if live is None or record is None or record.revoked:
            raise SignInRequired(had_cookie=True)
        caller = Caller(record.name, record.roles)
        state = scope.setdefault("state", {})
        state[CALLER] = caller
        state[SESSION] = live
        return permitted(caller, role, f"open {scope['path']}")


class TooManyAttempts(ApiError):
    """Sign-in refused for a while after repeated failures from the same address."""

    status = 429
    code = "too_many_requests"

    def __init__(self, wait: float) -> None:
        self.retry_after = max(1, math.ceil(wait))
        super().__init__(
            f"too many failed sign-ins from this address; retry in {self.retry_after} s"
        )


class SignInBackoff:
    """Per-address back-off of the sign-in form, in this worker's memory.

    `free` failures within `window` seconds cost nothing; after that each attempt must wait
    2, 4, 8 ... seconds (at most `cap`) after the previous failure. An address quiet for
    `window` seconds is forgotten, a success forgets it at once, and at most `size` addresses
    are tracked (least recent dropped): slower, never locked out for good.
    """

    def __init__(
        self,
        *,
        free: int,
        window: float,
        cap: float,
        size: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.cap = cap
        self.timer = timer
        # address -> (failures, time of the last one); each failure restarts the window.
        self._failures: TTLCache[str, tuple[int, float]] = TTLCache(
            maxsize=size, ttl=window, timer=timer
        )

    def wait(self, address: str) -> float:
        """Seconds this address must still wait before its next attempt (0: go ahead)."""
        failures, last = self._failures.get(address, (0, 0.0))
        if failures < self.free:
            return 0.0
        delay = min(self.cap, 2.0 ** (failures - self.free + 1))
        return max(0.0, last + delay - self.timer())

    def check(self, address: str) -> None:
        """Raise `TooManyAttempts` while the address must wait."""
        wait = self.wait(address)
        if wait > 0:
            raise TooManyAttempts(wait)

    def failed(self, address: str) -> None:
        failures, _ = self._failures.get(address, (0, 0.0))
        self._failures[address] = (failures + 1, self.timer())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
