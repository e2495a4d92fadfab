"""Every use of a BentoML internal, in one place. Checked with bentoml >=1.4.30,<1.4.40.

Each piece says why a public API does not do the job; `tests/test_compat.py` holds a canary
for each, so an upgrade that moves or changes one fails there, by name, not in production.

1. `install_request_deadline()`: BentoML's `TimeoutMiddleware`
   (`bentoml._internal.server.http.traffic`) arms `loop.call_later(timeout, ...)` for every
   request and never cancels it, so each request's timer, future and context copy live for the
   full timeout (60 s) after the answer has left. Under load that is tens of thousands of live
   objects per worker; they reach the oldest GC generation and make every full collection long:
   the 16-connection p99 climbed from ~40 to ~100 ms over a minute of steady load (profiled:
   the collections, not the model). The replacement behaves as BentoML's (a 504 when no
   response has started within the timeout, here as the service's error envelope) and cancels
   its timer once the response starts. BentoML imports the class from its module when it
   builds the ASGI app, so the swap must happen before that: `service.py` calls it at import,
   explicitly, and nothing else does.
2. `ListBody`: a `/predict_batch` body (a JSON array) must be an `IORootModel` subclass
   (`_bentoml_sdk.io_models`) for BentoML to take the array as the API's argument. BentoML's
   own path rebuilds a `TypeAdapter` and its JSON schema per request and validates Python
   objects after `json.loads`: for 1,000 employees ~70 ms of a ~300 ms call (py-spy). The
   subclass validates the bytes with an adapter built once (~15 ms); the OpenAPI schema and
   the clients see no difference.
3. `disable_unexported_tracing()`: BentoML's sampler records a span for every request even at
   `sample_rate` 0 (~17 % of a worker's CPU under load, profiled) for spans nobody receives.
   Whether an exporter is configured is only readable from BentoML's configuration container.
   An `OTEL_SDK_DISABLED` set by the operator wins; configuring `tracing.exporter_type` in
   `configuration.yaml` turns tracing back on. With tracing off, BentoML still wraps every
   request in OpenTelemetry's ASGI middleware (no-op spans, header parsing, a wrapped `send`):
   ~11 % of a worker's Python CPU in its own frames at 64 connections (py-spy, issue 17).
   `ServiceAppFactory.middlewares` is a property with no option to leave it out, so it is
   wrapped to drop that middleware whenever `OTEL_SDK_DISABLED` is true when the app is built;
   its only other effect, the `X-BentoML-Request-ID` header, is absent with tracing off either
   way (no span id).
4. `describe_service(name, text)`: the `info.description` of `/docs.json` is BentoML's
   `Service.doc`, which (outside a built Bento, and inside one whose bentofile gives no
   `description`) is a README with badge images from img.shields.io, readthedocs.org and
   badgen.net: the docs page, which renders it, made every visitor's browser fetch from those
   hosts (found by the browser tests' network log). There is no public setting for it outside
   `bentoml build`; the property is replaced on the class with one that answers the given text
   for the named service and defers to BentoML's for any other.
The adaptive batcher used to be BentoML's `CorkDispatcher`; it is now the service's own
(`serving/batcher.py`), so no internal is needed for it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any, Generic, Self, TypeVar

from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.io_models import IORootModel
from _bentoml_sdk.service.factory import Service
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.server.http import traffic
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from pydantic import TypeAdapter
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from serving.errors import envelope

T = TypeVar("T")


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
        handler.add_done_callback(lambda _: None if started.done() else started.set_result(None))
        try:
            await started
        except TimeoutError:
            if handler.cancel():
                body = envelope(
                    "timeout", f"the request was not answered within {self.timeout} seconds"
                )
                await Response(body, 504, media_type="application/json")(scope, receive, send)
        else:
            await handler
        finally:
            timer.cancel()


def install_request_deadline() -> None:
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]


class ListBody(IORootModel[list[T]], Generic[T]):  # type: ignore[misc]
    """Base of a list-rooted API input validated from bytes (see the module docstring, 2)."""

    __root_input__ = True
    _adapter: TypeAdapter[list[Any]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        root = cls.model_fields["root"]
        # The field's constraints too (e.g. `max_length`): pydantic checks a JSON array's length
        # before validating its items, so an oversized batch costs one error, not one per row.
        annotation: Any = root.annotation
        if root.metadata:
            annotation = Annotated[annotation, *root.metadata]
        cls._adapter = TypeAdapter(annotation)

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **_kwargs: Any) -> Self:
        """Malformed JSON fails as a `ValidationError` (`json_invalid`), refused as a 422."""
        body: Self = cls.model_construct(root=cls._adapter.validate_json(json_data))
        return body


_bentoml_middlewares = ServiceAppFactory.middlewares


def _middlewares(factory: ServiceAppFactory) -> list[Middleware]:
    middlewares: list[Middleware] = _bentoml_middlewares.fget(factory)
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
        return middlewares
    return [m for m in middlewares if m.cls is not OpenTelemetryMiddleware]  # type: ignore[comparison-overlap]


def disable_unexported_tracing() -> None:
    """Tracing off without an exporter, and then no tracing middleware (module docstring, 3)."""
    if BentoMLContainer.config.tracing.exporter_type.get() is None:
        os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    ServiceAppFactory.middlewares = property(_middlewares)


_DESCRIPTIONS: dict[str, str] = {}
_bentoml_doc = Service.doc


def _doc(service: Service[Any]) -> str:
    text = _DESCRIPTIONS.get(service.name)
    return text if text is not None else str(_bentoml_doc.fget(service))


def describe_service(name: str, text: str) -> None:
    """The OpenAPI description of the service `name` (see the module docstring, 4)."""
    _DESCRIPTIONS[name] = text
    Service.doc = property(_doc)
