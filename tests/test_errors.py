"""The one error envelope (serving/errors.py): field paths, pydantic detail, the rewriting of
foreign error bodies, and the `refusing` decorator of BentoML APIs."""

from __future__ import annotations

import asyncio
import inspect
import json

import bentoml
import pytest
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request

from persistence.errors import StoreRejected, StoreUnavailable
from serving.errors import (
    NotFound,
    Unavailable,
    Unprocessable,
    envelope,
    field_path,
    invalid,
    pydantic_detail,
    refusing,
    rewrite,
)
from tests.support.payloads import RAW
from training.contract import Employee


class Item(BaseModel):
    age: int = Field(ge=16)
    name: str


class Order(BaseModel):
    items: list[Item]


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (("employees", 3, "age"), "employees[3].age"),
        ((3, "age"), "[3].age"),
        (("root", 0, "age"), "[0].age"),
        (("root",), "body"),
        ((), "body"),
        (("query", "limit"), "query.limit"),
        (("a", "b", 0, 1, "c"), "a.b[0][1].c"),
    ],
)
def test_field_path_is_dotted_with_bracketed_indices(location, path):
    assert field_path(location) == path


def test_pydantic_detail_names_every_field_in_one_format():
    with pytest.raises(ValidationError) as caught:
        Order.model_validate({"items": [{"age": 30, "name": "a"}, {"age": 3}]})
    detail = pydantic_detail(caught.value.errors())
    assert detail == [
        {"field": "items[1].age", "rule": "greater_than_equal", "message": detail[0]["message"]},
        {"field": "items[1].name", "rule": "missing", "message": "Field required"},
    ]
    assert "16" in detail[0]["message"]


def test_pydantic_detail_skips_what_is_not_an_error_dict():
    assert pydantic_detail(["text", {"loc": ("x",), "type": "t", "msg": "m"}]) == [
        {"field": "x", "rule": "t", "message": "m"}
    ]


def test_invalid_lists_each_field_once_in_its_message():
    error = invalid(
        [
            {"field": "age", "rule": "a", "message": "x"},
            {"field": "age", "rule": "b", "message": "y"},
            {"field": "genre", "rule": "c", "message": "z"},
        ]
    )
    assert error.status == 422
    assert error.message.endswith(": age, genre")


def bentoml_400(payload) -> bytes:
    """The body BentoML answers when an API's input fails validation (_bentoml_impl app)."""
    try:
        Employee.model_validate(payload)
    except ValidationError as exc:
        data = {
            "error": f"{exc.error_count()} validation error for {exc.title}",
            "detail": exc.errors(include_context=False, include_input=False),
        }
        return json.dumps(data).encode()
    raise AssertionError("the payload was valid")


def test_bentoml_pydantic_400_becomes_a_422_naming_the_fields():
    status, body = rewrite(400, bentoml_400(RAW | {"age": 5, "genre": "X"}), "POST /predict")
    answer = json.loads(body)
    assert status == 422
    assert answer["error"] == "validation_error"
    assert [d["field"] for d in answer["detail"]] == ["age", "genre"]
    assert {d["rule"] for d in answer["detail"]} == {"greater_than_equal", "literal_error"}
    assert "age" in answer["message"] and "genre" in answer["message"]


@pytest.mark.parametrize(
    ("status", "body", "route", "code", "message"),
    [
        (404, b"Not Found", "GET /nonexistent", "not_found", "GET /nonexistent"),
        (405, b"Method Not Allowed", "GET /predict", "method_not_allowed", "GET /predict"),
        (404, b"Not Found", "", "not_found", "Not Found"),
        (405, b'{"detail":"Method Not Allowed"}', "", "method_not_allowed", "Method Not Allowed"),
        (404, b'{"detail":"Not Found"}', "", "not_found", "Not Found"),
        (400, b'{"detail":"There was an error parsing the body"}', "", "bad_request", "parsing"),
        (400, b'{"error":"bad thing"}', "", "bad_request", "bad thing"),
        (415, b"", "", "unsupported_media_type", "Unsupported Media Type"),
        (504, b"late", "", "timeout", "retry later"),
        (500, b"Traceback: secret internals", "", "internal_error", "retry later"),
        (418, b"", "", "bad_request", "I'm a Teapot"),
    ],
)
def test_foreign_error_bodies_become_the_envelope(status, body, route, code, message):
    new_status, new_body = rewrite(status, body, route)
    answer = json.loads(new_body)
    assert new_status == status
    assert set(answer) == {"error", "message"}
    assert answer["error"] == code
    assert message in answer["message"]
    assert b"secret" not in new_body


def test_a_server_error_never_leaks_its_body():
    _, body = rewrite(500, b'{"detail": "psycopg2.OperationalError: password for x"}')
    assert b"password" not in body


@pytest.mark.parametrize(
    "body",
    [
        envelope("not_found", "no prediction 1"),
        envelope("validation_error", "bad", [{"field": "age", "rule": "r", "message": "m"}]),
        # A 400 envelope with detail stays a 400: only BentoML's pydantic body is reshaped.
        envelope("bad_request", "x", [{"field": "body", "rule": "r", "message": "m"}]),
    ],
)
@pytest.mark.parametrize("status", [400, 404, 413, 422, 503])
def test_envelopes_pass_through_unchanged(status, body):
    assert rewrite(status, body, "GET /x") == (status, body)


def test_envelope_shape():
    assert json.loads(envelope("e", "m")) == {"error": "e", "message": "m"}
    assert json.loads(envelope("e", "é", [])) == {"error": "e", "message": "é", "detail": []}
    assert "é".encode() in envelope("e", "é")  # UTF-8, not \u escapes


def test_store_errors_map_to_503_or_422():
    from serving.errors import from_store

    assert isinstance(from_store(StoreUnavailable("OperationalError")), Unavailable)
    rejected = from_store(StoreRejected("integer out of range"), field="query")
    assert isinstance(rejected, Unprocessable)
    assert rejected.detail == [
        {"field": "query", "rule": "database_range", "message": "integer out of range"}
    ]


class Probe:
    async def api(self, employee: Employee, /, ctx: bentoml.Context) -> dict[str, int]:
        """Docstring kept."""
        if employee.age > 60:
            raise NotFound("no such employee")
        if employee.age > 50:
            raise StoreUnavailable("OperationalError")
        return {"age": employee.age}


def test_refusing_keeps_the_signature_bentoml_inspects():
    wrapped = refusing(Probe.api)
    assert inspect.signature(wrapped) == inspect.signature(Probe.api)
    assert wrapped.__doc__ == "Docstring kept."
    assert wrapped.__name__ == "api"
    assert inspect.iscoroutinefunction(wrapped)


def _call_in_request(age: int):
    """Call the wrapped API as BentoML does: inside a request, with its context."""
    context = bentoml.Context()
    scope = {"type": "http", "method": "POST", "path": "/p", "headers": [], "query_string": b""}
    with context.in_request(Request(scope)):
        result = asyncio.run(
            refusing(Probe.api)(Probe(), Employee.model_validate(RAW | {"age": age}), context)
        )
        return result, context.response.status_code


def test_refusing_answers_the_envelope_and_sets_the_context_status():
    result, status = _call_in_request(65)
    assert status == 404
    assert result.status_code == 404
    assert json.loads(result.body) == {"error": "not_found", "message": "no such employee"}


def test_refusing_turns_a_store_error_into_a_503():
    result, status = _call_in_request(55)
    assert status == 503 == result.status_code
    assert json.loads(result.body)["error"] == "database_unavailable"


def test_refusing_lets_answers_and_other_errors_through():
    result, status = _call_in_request(41)
    assert result == {"age": 41} and status == 200

    async def broken(ctx: bentoml.Context) -> None:
        raise RuntimeError("a bug is a 500, not a refusal")

    with pytest.raises(RuntimeError):
        asyncio.run(refusing(broken)(bentoml.Context()))
