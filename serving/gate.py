"""The gate in front of every route: one ASGI middleware composing the jobs of the gate.

In order, for every HTTP call: authentication and roles (`serving.authentication`), the body
cap on received bytes (`serving.limits`), then the app. Whatever the app answers with an error
status is rewritten into the one envelope (`serving.errors.rewrite`: BentoML's pydantic 400
becomes a 422 naming fields; routing 404/405 become JSON), and refusals are counted in the
refusal log (`serving.refusals`), which writes them off the request path.

One middleware rather than one per job: each ASGI layer costs on every call (issue 17).
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.authentication import CALLER, Authenticator, KeyCache, required_role
from serving.errors import ApiError, rewrite
from serving.limits import ClientGone, has_body, read_capped, replay
from serving.refusals import RefusalGroup, RefusalLog

logger = logging.getLogger(__name__)

# Statuses written to the audit of refusals; routing 404s and server errors are not refusals.
AUDITED = frozenset({400, 401, 403, 413, 422})


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
    ) -> None:
        self.app = app
        self.engine = engine
        self.auth = Authenticator(KeyCache(engine, ttl=key_ttl, size=key_cache_size))
        self.max_body_bytes = max_body_bytes
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client: str | None = None
        try:
            role = required_role(scope["method"], scope["path"])
            if role is not None:
                caller = await self.auth.authenticate(scope["headers"], scope["path"], role)
                client = caller.name
                scope.setdefault("state", {})[CALLER] = caller
            if has_body(scope):
                receive = replay(await read_capped(scope, receive, self.max_body_bytes), receive)
        except ApiError as error:
            await self._answer(scope, send, error.client or client, error.status, error.body())
            return
        except ClientGone:
            logger.info(
                "client left before sending its body: %s %s", scope["method"], scope["path"]
            )
            return
        await self.app(scope, receive, self._enveloping(scope, send, client))

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
        authenticate (`WWW-Authenticate`, RFC 9110)."""
        if status in AUDITED:
            self._audit(scope, client, status, body)
        extra = list(headers or [])
        if status == 401:
            extra.append((b"www-authenticate", b'Bearer realm="attrition"'))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
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
