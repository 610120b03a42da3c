"""JSON responses and the API error type with its standard error body."""

from typing import Any

import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"
JSON_CHARSET = "utf-8"


def json_response(data: Any, status: int = 200) -> web.Response:
    """Build a response with the orjson encoding of `data`."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type=JSON_CONTENT_TYPE,
        charset=JSON_CHARSET,
    )


def error_body(status: int, error: str, message: str) -> dict[str, Any]:
    """Build the API's error body: message, error code, status and an empty cause."""
    return {"message": message, "error": error, "status": status, "cause": []}


class ApiError(Exception):
    """An error the API returns as a JSON error body with an HTTP status."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}

    def to_response(self) -> web.Response:
        body = error_body(self.status, self.error, self.message)
        response = json_response(body, status=self.status)
        response.headers.update(self.headers)
        return response


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def too_many_requests(retry_after_s: int | None) -> ApiError:
    """Build the 429 error, with Retry-After only when `retry_after_s` is set."""
    headers = {} if retry_after_s is None else {"Retry-After": str(retry_after_s)}
    return ApiError(429, "too_many_requests", "too many requests", headers)
