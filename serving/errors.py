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
