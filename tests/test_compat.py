"""Canaries for serving/bentoml_compat.py: one per use of a BentoML internal, so a BentoML
upgrade that moves or changes one fails here, by name, rather than in production.

1. the request deadline (`CancellingTimeoutMiddleware` swapped into BentoML's traffic module);
2. `ListBody` (a list-rooted API input validated from bytes);
3. `disable_unexported_tracing` (reads BentoML's configuration container, and leaves
   OpenTelemetry's middleware out of the app BentoML builds).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import re
import sys
import tomllib
from types import ModuleType

import bentoml
import pytest
from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.server.base_app import BaseAppFactory
from bentoml._internal.server.http import traffic
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from packaging.specifiers import SpecifierSet
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request

import serving.bentoml_compat as compat
from serving.bentoml_compat import (
    CancellingTimeoutMiddleware,
    ListBody,
    disable_unexported_tracing,
)
from settings import get_settings
from tests.support import REPO
from tests.support.payloads import RAW
from training.contract import Employee

EXPORTER = BentoMLContainer.config.tracing.exporter_type


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> ModuleType:
    """The real `service` module, imported (once per process) on a throw-away database."""
    if "service" in sys.modules:
        return sys.modules["service"]
    url = f"sqlite:///{tmp_path_factory.mktemp('compat') / 'compat.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            return importlib.import_module("service")
        finally:
            get_settings.cache_clear()


def test_the_installed_bentoml_is_in_the_checked_range():
    """The module docstring names the versions its internals were checked against; an upgrade
    past them must re-check every piece (and move this range and pyproject's pin together)."""
    checked = re.search(r"Checked with bentoml ([^ .]+\.[^ ]+?)\.\s", compat.__doc__ or "")
    assert checked, "the docstring names the checked range"
    assert bentoml.__version__ in SpecifierSet(checked.group(1))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [pin] = [d for d in project["dependencies"] if d.startswith("bentoml")]
    assert SpecifierSet(pin.removeprefix("bentoml")) == SpecifierSet(checked.group(1))


# --- 1. the request deadline ----------------------------------------------------------------


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


def test_an_answer_in_time_passes_through_and_disarms_the_timer():
    sent = _call(CancellingTimeoutMiddleware(_app(0), timeout=60))
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]
    assert sent[-1]["body"] == b"ok"


def test_no_response_before_the_deadline_is_a_504_envelope():
    sent = _call(CancellingTimeoutMiddleware(_app(5), timeout=0.05))
    assert sent[0]["status"] == 504
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["error"] == "timeout"
    assert "0.05 seconds" in body["message"]


def test_a_handler_that_sends_nothing_does_not_wait_for_the_deadline():
    async def elapsed(middleware) -> float:
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(_message):
            return None

        await middleware({"type": "http", "path": "/"}, receive, send)
        return loop.time() - began

    middleware = CancellingTimeoutMiddleware(_app(0, send_anything=False), timeout=30)
    assert asyncio.run(elapsed(middleware)) < 5


def test_handler_errors_propagate():
    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _call(CancellingTimeoutMiddleware(failing, timeout=60))


def test_lifespan_scopes_pass_straight_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(CancellingTimeoutMiddleware(app, timeout=60)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_bentoml_builds_its_app_with_the_cancelling_middleware(service):
    """`service.py` swaps the class at import; BentoML must still look it up when it builds."""

    class App(BaseAppFactory):
        name = "probe"

    assert traffic.TimeoutMiddleware is CancellingTimeoutMiddleware
    built = [m.cls for m in App(timeout=60).middlewares]
    assert CancellingTimeoutMiddleware in built


def test_the_swapped_class_still_has_what_the_subclass_relies_on():
    base = CancellingTimeoutMiddleware.__mro__[1]
    assert base.__module__ == "bentoml._internal.server.http.traffic"
    assert callable(getattr(base, "_set_timer_out", None))
    middleware = CancellingTimeoutMiddleware(_app(0), timeout=12)
    assert middleware.timeout == 12 and middleware.app is not None


# --- 2. ListBody ------------------------------------------------------------------------------


class Employees(ListBody[Employee]):
    pass


def _json(value) -> str:
    return json.dumps(value)


def test_the_batch_api_takes_a_list_body(service):
    spec = service.Attrition.apis["predict_batch"].input_spec
    assert spec is service.EmployeeList
    assert issubclass(spec, ListBody)
    assert spec.__root_input__ is True


def test_the_openapi_schema_of_predict_batch_is_an_array_of_employees(service):
    document = service.Attrition.openapi_spec.asdict()
    body = document["paths"]["/predict_batch"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    assert schema["items"] == {"$ref": "#/components/schemas/Employee"}
    employee = document["components"]["schemas"]["Employee"]
    assert set(employee["properties"]) == set(Employee.model_fields)


def test_a_list_body_validates_bytes_into_employees():
    parsed = Employees.model_validate_json(f"[{_json(RAW)}, {_json(RAW | {'age': 30})}]")
    assert [type(e) for e in parsed.root] == [Employee, Employee]
    assert [e.age for e in parsed.root] == [41, 30]


@pytest.mark.parametrize(
    ("body", "rule", "location"),
    [
        (b'[{"age": ', "json_invalid", ()),
        (b"", "json_invalid", ()),
        (b'{"age": 41}', "list_type", ()),
        (f"[{_json(RAW)}, {_json(RAW | {'age': 5})}]".encode(), "greater_than_equal", (1, "age")),
    ],
)
def test_a_bad_list_body_is_a_validation_error(body, rule, location):
    with pytest.raises(ValidationError) as caught:
        Employees.model_validate_json(body)
    [error] = caught.value.errors()
    assert error["type"] == rule
    assert tuple(error["loc"]) == location


def test_bentoml_parses_a_json_request_through_the_list_bodys_validator():
    """BentoML must still hand the raw bytes to `model_validate_json`, or the adapter built
    once is bypassed and its own path (a TypeAdapter per request) comes back silently."""
    from _bentoml_impl.serde import ALL_SERDE

    calls: list[bytes] = []

    class Counted(ListBody[Employee]):
        @classmethod
        def model_validate_json(cls, json_data, **kwargs):
            calls.append(bytes(json_data))
            return super().model_validate_json(json_data, **kwargs)

    payload = f"[{_json(RAW)}]".encode()

    async def parse():
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict_batch",
            "headers": [(b"content-type", b"application/json")],
            "query_string": b"",
        }
        serde = ALL_SERDE["application/json"]()
        return await Counted.from_http_request(Request(scope, receive), serde)

    parsed = asyncio.run(parse())
    assert calls == [payload]
    assert isinstance(parsed, Counted)
    assert [e.age for e in parsed.root] == [41]


# --- 3. tracing -------------------------------------------------------------------------------


def test_without_an_exporter_the_sdk_is_switched_off(monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    assert EXPORTER.get() is None
    disable_unexported_tracing()

    assert os.environ["OTEL_SDK_DISABLED"] == "true"


def test_an_operator_setting_wins(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    disable_unexported_tracing()

    assert os.environ["OTEL_SDK_DISABLED"] == "false"


def test_a_configured_exporter_keeps_tracing_on(monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    EXPORTER.set("otlp")
    try:
        disable_unexported_tracing()
    finally:
        EXPORTER.set(None)

    assert "OTEL_SDK_DISABLED" not in os.environ


def test_bentoml_still_adds_the_tracing_middleware_in_the_wrapped_property(service):
    """The wrapped property is BentoML's own, and it is where the middleware comes from."""
    assert isinstance(compat._bentoml_middlewares, property)
    assert "OpenTelemetryMiddleware" in inspect.getsource(compat._bentoml_middlewares.fget)
    assert ServiceAppFactory.middlewares.fget is compat._middlewares


@pytest.mark.parametrize(("disabled", "traced"), [("true", False), ("false", True)])
def test_the_tracing_middleware_is_left_out_only_while_tracing_is_off(
    service, monkeypatch, disabled, traced
):
    """No OpenTelemetry middleware while the SDK is off (it would only make no-op spans);
    BentoML's list, in its order, otherwise."""
    bentoml_list = [
        Middleware(OpenTelemetryMiddleware),
        Middleware(CancellingTimeoutMiddleware, timeout=60),
        Middleware(service.Gate),
    ]
    monkeypatch.setattr(compat, "_bentoml_middlewares", property(lambda _: list(bentoml_list)))
    monkeypatch.setenv("OTEL_SDK_DISABLED", disabled)
    built = [m.cls for m in ServiceAppFactory.middlewares.fget(object())]

    expected = [m.cls for m in bentoml_list]
    assert built == (expected if traced else expected[1:])
