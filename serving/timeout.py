"""BentoML's request deadline (`traffic.timeout`), with its timer cancelled when it is moot.

BentoML's `TimeoutMiddleware` arms `loop.call_later(timeout, ...)` for every request and never
cancels it, so each request's timer, future and context copy stay alive for the full timeout
(60 s) after the answer has left. Under load that is tens of thousands of live objects per
worker; they reach the oldest GC generation and make every full collection long: the
16-connection p99 climbed from ~40 to ~100 ms over a minute of steady load (profiled: the
collections, not the model). Behaviour is otherwise BentoML's: a 504 when no response has
started within the timeout. BentoML imports the class from its module when it builds the app,
so `install()` must run before that, i.e. when `service.py` is imported.
"""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, started)

        async def send_and_disarm(message: Message) -> None:
            if not started.done():
                started.set_result(None)
                timer.cancel()
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_and_disarm))
        # A handler that ends (or fails) without sending must not wait for the deadline.
        handler.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except TimeoutError:
            if handler.cancel():
                body = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(body, status_code=504)(scope, receive, send)
        else:
            await handler
        finally:
            timer.cancel()


def install() -> None:
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]
