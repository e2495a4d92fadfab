"""The request deadline keeps BentoML's behaviour but leaves no timer behind."""

from __future__ import annotations

import asyncio

import pytest
from bentoml._internal.server.base_app import BaseAppFactory
from bentoml._internal.server.http import traffic

from serving.timeout import CancellingTimeoutMiddleware


def _app(delay: float, *, send_anything: bool = True):
    async def app(scope, receive, send):
        await asyncio.sleep(delay)
        if send_anything:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    return app


def _call(middleware) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await middleware({"type": "http", "path": "/"}, receive, send)
        await asyncio.sleep(0)  # let a cancelled handler unwind its own sleep
        loop = asyncio.get_running_loop()
        return [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]

    pending = asyncio.run(run())
    assert pending == [], "a timer outlived its request"
    return sent


def test_answer_in_time_passes_through_and_disarms_the_timer():
    sent = _call(CancellingTimeoutMiddleware(_app(0), timeout=60))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1]["body"] == b"ok"


def test_no_response_before_the_deadline_is_a_504():
    sent = _call(CancellingTimeoutMiddleware(_app(5), timeout=0.05))
    assert sent[0]["status"] == 504
    assert b"0.05 seconds" in sent[1]["body"]


def test_handler_that_sends_nothing_does_not_wait_for_the_deadline():
    loop_time = asyncio.run(_elapsed(CancellingTimeoutMiddleware(_app(0, send_anything=False), 30)))
    assert loop_time < 5


async def _elapsed(middleware) -> float:
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(_message):
        return None

    await middleware({"type": "http", "path": "/"}, receive, send)
    return loop.time() - began


def test_handler_errors_propagate():
    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _call(CancellingTimeoutMiddleware(failing, timeout=60))


def test_bentoml_builds_its_app_with_the_cancelling_middleware(trained_tag):
    import service  # noqa: F401  (installs the middleware at import, before any app is built)

    class App(BaseAppFactory):
        name = "probe"

    built = [m.cls for m in App(timeout=60).middlewares]
    assert CancellingTimeoutMiddleware in built
    assert traffic.TimeoutMiddleware is CancellingTimeoutMiddleware
