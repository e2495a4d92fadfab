"""The gate in front of every route: one ASGI middleware composing the jobs of the gate.

In order, for every HTTP call: authentication and roles (`serving.authentication`), the body
cap on received bytes (`serving.limits`), then the app. Whatever the app answers with an error
status is rewritten into the one envelope (`serving.errors.rewrite`: BentoML's pydantic 400
becomes a 422 naming fields; routing 404/405 become JSON), and refusals are counted in the
refusal log (`serving.refusals`), which writes them off the request path.

The HR page (`/ui`, when the gate is given `UiOptions`) is admitted by its session cookie
instead of a key; a page without a live session sends the browser to the sign-in form (303);
every unsafe call must carry its CSRF token; the sign-in form is checked here (back-off, CSRF,
key). Its errors are the same envelope, rendered as an HTML page (`UiOptions.error_page`) with
the same status. API routes never accept the cookie and always answer JSON.

One middleware rather than one per job: each ASGI layer costs on every call (issue 17).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from persistence.keys import split_key
from serving.authentication import (
    CALLER,
    KEY_FIELD,
    SAFE_METHODS,
    SIGN_IN_COOKIE,
    SIGN_IN_PATH,
    SIGNED_IN_KEY,
    Authenticator,
    Caller,
    KeyCache,
    SessionAuthenticator,
    SignInBackoff,
    SignInRequired,
    TooManyAttempts,
    check_csrf,
    cookies,
    expired_session_cookie,
    form_fields,
    is_ui,
    required_role,
    session_of,
)
from serving.errors import ApiError, rewrite
from serving.limits import ClientGone, has_body, read_capped, replay
from serving.refusals import RefusalGroup, RefusalLog

logger = logging.getLogger(__name__)

# Statuses written to the audit of refusals; routing 404s and server errors are not refusals.
# 429: a sign-in slowed down by the back-off.
AUDITED = frozenset({400, 401, 403, 413, 422, 429})
Headers = list[tuple[bytes, bytes]]
# (scope, status, envelope) -> (HTML page, extra headers): how the HR page shows an error.
ErrorPage = Callable[[Scope, int, dict[str, Any]], tuple[bytes, Headers]]


@dataclass(frozen=True)
class UiOptions:
    """What the gate needs to admit the HR page: the idle limit of sessions, the sign-in
    back-off (this worker's), and the renderer of its error pages."""

    idle: timedelta
    backoff: SignInBackoff
    error_page: ErrorPage


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: sa.Engine,
        key_ttl: float,
        key_cache_size: int,
        max_body_bytes: int,
        refusals: RefusalLog,
        ui: UiOptions | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.auth = Authenticator(KeyCache(engine, ttl=key_ttl, size=key_cache_size))
        self.max_body_bytes = max_body_bytes
        self.refusals = refusals
        self.ui = ui
        self.sessions = (
            SessionAuthenticator(engine, self.auth.keys, idle=ui.idle) if ui is not None else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client: str | None = None
        try:
            if self.ui is not None and is_ui(scope["path"]):
                receive, client = await self._admit_ui(self.ui, scope, receive)
            else:
                role = required_role(scope["method"], scope["path"])
                if role is not None:
                    caller = await self.auth.authenticate(scope["headers"], scope["path"], role)
                    client = caller.name
                    scope.setdefault("state", {})[CALLER] = caller
                if has_body(scope):
                    body = await read_capped(scope, receive, self.max_body_bytes)
                    receive = replay(body, receive)
        except SignInRequired as missing:
            await self._to_sign_in(scope, send, missing.had_cookie)
            return
        except ApiError as error:
            extra = (
                [(b"retry-after", str(error.retry_after).encode())]
                if isinstance(error, TooManyAttempts)
                else None
            )
            await self._answer(
                scope, send, error.client or client, error.status, error.body(), extra
            )
            return
        except ClientGone:
            logger.info(
                "client left before sending its body: %s %s", scope["method"], scope["path"]
            )
            return
        await self.app(scope, receive, self._enveloping(scope, send, client))

    async def _admit_ui(
        self, ui: UiOptions, scope: Scope, receive: Receive
    ) -> tuple[Receive, str | None]:
        """The HR page: pages need a live session with the route's role (cookie only); unsafe
        calls need the CSRF token (the session's, or the sign-in form's double-submit cookie);
        the sign-in form's key is checked here, slowed down per address after failures."""
        assert self.sessions is not None  # built with `ui`
        method, path = scope["method"], scope["path"]
        role = required_role(method, path)
        caller = await self.sessions.authenticate(scope, role) if role is not None else None
        client = caller.name if caller else None
        if method in SAFE_METHODS:
            return receive, client
        address = scope["client"][0] if scope.get("client") else ""
        if path == SIGN_IN_PATH:
            ui.backoff.check(address)
        body = await read_capped(scope, receive, self.max_body_bytes) if has_body(scope) else b""
        form = form_fields(body)
        live = session_of(scope)
        expected = live.csrf_token if live else cookies(scope).get(SIGN_IN_COOKIE)
        check_csrf(scope, form, expected, client=client)
        if path == SIGN_IN_PATH:
            key = form.get(KEY_FIELD, "").strip()
            client = (await self._sign_in(ui.backoff, scope, key, address)).name
        return replay(body, receive), client

    async def _sign_in(
        self, backoff: SignInBackoff, scope: Scope, key: str, address: str
    ) -> Caller:
        """Check the sign-in form's key (any role may read the pages): a failure counts against
        the address, a success clears it; the route opens the session for the key."""
        try:
            caller = await self.auth.check(key, scope["path"], "read")
        except ApiError as error:
            if error.status == 401:
                backoff.failed(address)
            raise
        backoff.succeeded(address)
        parts = split_key(key)
        state = scope.setdefault("state", {})
        state[CALLER] = caller
        state[SIGNED_IN_KEY] = parts[0] if parts else ""
        return caller

    async def _to_sign_in(self, scope: Scope, send: Send, clear_cookie: bool) -> None:
        """No live session: a 303 to the sign-in form (htmx calls get `HX-Redirect`, which
        reloads the whole page, with 401), clearing a dead session cookie."""
        htmx = any(n.lower() == b"hx-request" for n, _ in scope["headers"])
        headers: Headers = [
            (b"hx-redirect" if htmx else b"location", SIGN_IN_PATH.encode()),
            (b"content-length", b"0"),
        ]
        if clear_cookie:
            headers.append((b"set-cookie", expired_session_cookie()))
        status = 401 if htmx else 303
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def _enveloping(self, scope: Scope, send: Send, client: str | None) -> Send:
        """Pass successes through untouched; buffer an error answer and send it as the envelope."""
        status = 200
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status < 400:
                    await send(message)
                else:
                    headers.extend(
                        (name, value)
                        for name, value in message.get("headers", [])
                        if name.lower() not in (b"content-type", b"content-length")
                    )
                return
            if status < 400:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                route = f"{scope['method']} {scope['path']}"
                new_status, body = rewrite(status, b"".join(chunks), route)
                await self._answer(scope, send, client, new_status, body, headers)

        return wrapped

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        client: str | None,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """The envelope, with the app's other headers (a 405's `Allow`); a 401 says how to
        authenticate (`WWW-Authenticate`, RFC 9110). On the HR page, the envelope's content as
        an HTML page with the same status."""
        if status in AUDITED:
            self._audit(scope, client, status, body)
        extra = list(headers or [])
        if status == 401:
            extra.append((b"www-authenticate", b'Bearer realm="attrition"'))
        content_type = b"application/json"
        if self.ui is not None and is_ui(scope["path"]):
            body, page_headers = self.ui.error_page(scope, status, json.loads(body))
            extra.extend(page_headers)
            content_type = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _audit(self, scope: Scope, client: str | None, status: int, body: bytes) -> None:
        payload = json.loads(body)
        address = scope.get("client")
        group = RefusalGroup(
            address=address[0] if address else None,
            client=client,
            method=scope["method"],
            endpoint=scope["path"],
            status=status,
            error=payload["error"],
        )
        self.refusals.record(group, payload.get("detail"))
