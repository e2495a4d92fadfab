"""The one error envelope, and every way the service refuses a call.

Every error the service answers has one JSON shape, whoever produced it (a BentoML API, the
read API, the gate, routing):

    {"error": "<code>", "message": "<sentence>", "detail": [{"field", "rule", "message"}]}

`detail` is present when fields are at fault; a field is a dotted path with list indices in
brackets (`employees[3].age`, `query.limit`, `body`). This module owns the envelope, the
conversion of pydantic errors into `detail`, the refusal of a BentoML API (`refusing`), the
read API's handlers and the rewriting of foreign error bodies (BentoML's pydantic 400, Starlette's
plain-text 404/405) into the envelope.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, ParamSpec, TypeVar

import bentoml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from persistence.errors import StoreError, StoreRejected

Detail = list[dict[str, Any]]
P = ParamSpec("P")
R = TypeVar("R")


class ApiError(Exception):
    """A refusal the service answers as the envelope, with its HTTP status."""

    status = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        detail: Detail | None = None,
        *,
        code: str | None = None,
        client: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code is not None:
            self.code = code
        # The key's name when the caller was identified before being refused (for the audit).
        self.client = client

    def body(self) -> bytes:
        return envelope(self.code, self.message, self.detail)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type="application/json")


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class TooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "validation_error"


class Unavailable(ApiError):
    status = 503
    code = "database_unavailable"


class Overloaded(ApiError):
    status = 503
    code = "overloaded"


def envelope(code: str, message: str, detail: Detail | None = None) -> bytes:
    body: dict[str, Any] = {"error": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return json.dumps(body, ensure_ascii=False).encode()


def field_path(location: Sequence[Any]) -> str:
    """`("employees", 3, "age")` -> `employees[3].age`; pydantic's `root` steps are dropped."""
    path = ""
    for step in location:
        if step == "root":
            continue
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    return path.lstrip(".") or "body"


# A refusal names at most this many fields: 5,000 bad rows would otherwise answer (and audit)
# some 135,000 entries, ~19 MB, for one call.
MAX_DETAIL = 100


def pydantic_detail(errors: Sequence[Any]) -> Detail:
    """Pydantic's error list (as dicts) -> `detail` items, one field-path format, capped."""
    detail = [
        {"field": field_path(e.get("loc") or ()), "rule": e.get("type"), "message": e.get("msg")}
        for e in errors[:MAX_DETAIL]
        if isinstance(e, dict)
    ]
    if len(errors) > MAX_DETAIL:
        more = len(errors) - MAX_DETAIL
        detail.append({"field": "body", "rule": "more_errors", "message": f"{more} more"})
    return detail


def invalid(detail: Detail, what: str = "the request does not match the contract") -> Unprocessable:
    fields = ", ".join(dict.fromkeys(d["field"] for d in detail)) or "body"
    return Unprocessable(f"{what}: {fields}", detail)


def from_store(
    exc: StoreError,
    unavailable: str = "the database cannot be reached right now; retry later",
    field: str = "body",
) -> ApiError:
    """A value the database refused is the caller's 422; anything else is a 503."""
    if isinstance(exc, StoreRejected):
        return Unprocessable(
            f"a value is out of the database's range: {exc}",
            [{"field": field, "rule": "database_range", "message": str(exc)}],
        )
    return Unavailable(unavailable)


def refusing(
    api: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Let a BentoML API raise `ApiError` (or a persistence error) and answer the envelope.

    BentoML renders an exception it does not know as a bare 500, so the API's signature keeps
    its true return type and this wrapper turns a refusal into the response. BentoML passes a
    returned `Response` through but copies the context's status onto it, so both are set.
    `functools.wraps` keeps the signature BentoML inspects.
    """

    @functools.wraps(api)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await api(*args, **kwargs)
        except (ApiError, StoreError) as exc:
            error = from_store(exc) if isinstance(exc, StoreError) else exc
            for value in (*args, *kwargs.values()):
                if isinstance(value, bentoml.Context):
                    value.response.status_code = error.status
            return error.response()  # type: ignore[return-value]

    return wrapper


_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
    504: "timeout",
}


def code_for(status: int) -> str:
    return _CODES.get(status, "internal_error" if status >= 500 else "bad_request")


def rewrite(status: int, body: bytes, route: str = "") -> tuple[int, bytes]:
    """A foreign error response as the envelope: BentoML's pydantic 400 becomes a 422 naming
    fields; plain-text or `{"detail": ...}` bodies keep their status. Envelopes pass unchanged.
    `route` ("GET /x") names what routing refused in a 404 or 405.
    """
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and {"error", "message"} <= parsed.keys():
        return status, body
    if status == 400 and isinstance(parsed, dict) and isinstance(parsed.get("detail"), list):
        error = invalid(pydantic_detail(parsed["detail"]))
        return error.status, error.body()
    if status >= 500:
        message = "the service could not answer; retry later"
    elif status == 404 and route:
        message = f"no such route or resource: {route}"
    elif status == 405 and route:
        message = f"method not allowed: {route}"
    elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), str):
        message = parsed["detail"]
    elif isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message = parsed["error"]
    else:
        message = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
    return status, envelope(code_for(status), message)


def install_handlers(app: FastAPI) -> None:
    """The read API answers every refusal, routing 404/405 included, as the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> Response:
        return error.response()

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, error: StoreError) -> Response:
        return from_store(error, field="query").response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> Response:
        return invalid(pydantic_detail(error.errors()), "invalid request").response()

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, error: HTTPException) -> Response:
        status, body = rewrite(error.status_code, json.dumps({"detail": error.detail}).encode())
        return Response(
            body, status_code=status, headers=error.headers, media_type="application/json"
        )
