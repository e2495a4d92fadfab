"""Errors the service answers with as JSON, never as a stack trace."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return JSONResponse(body, status_code=self.status)


class DatabaseUnavailable(ApiError):
    status = 503
    code = "database_unavailable"


class Overloaded(ApiError):
    status = 503
    code = "overloaded"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class TooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Unprocessable(ApiError):
    status = 422
    code = "validation_error"


def database_error(exc: Exception, unavailable: str) -> ApiError:
    """A value the database cannot take is the caller's 422; anything else is a 503."""
    from sqlalchemy.exc import DataError, StatementError

    if isinstance(exc, DataError) or (
        isinstance(exc, StatementError) and isinstance(exc.orig, ValueError)
    ):
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return Unprocessable(
            f"a value is out of the database's range: {reason}",
            [{"field": "query", "rule": "database_range", "message": reason}],
        )
    return DatabaseUnavailable(unavailable)
