"""The project's exception tree.

HarvesterError
 +-- ConfigError        the config, an environment override or an argument is invalid
 +-- StorageError       PostgreSQL is unreachable, rejects the login or fails
 +-- RunLockedError     another harvest or backfill holds the run lock
 +-- ApiError           the API returned an error or an unusable body
      +-- RetryableApiError   worth another attempt: 429, 5xx, timeouts, bad bodies
      |    +-- RateLimitedError    429, with the server's Retry-After if it sent one
      |    +-- InvalidResponseError a 200 whose body is malformed or fails validation
      +-- RejectedRequestError  400, 403 or 404: retrying the same request cannot help
      |    +-- BatchTooLargeError  the API's limit on ids per request was exceeded
      |    +-- WindowTooLargeError the API's limit on `last` was exceeded
      +-- AuthError           the token is missing, invalid or expired
      +-- ApiUnreachableError many requests in a row got no response at all
"""

from __future__ import annotations


class HarvesterError(Exception):
    """Base of every error the harvester raises on purpose."""


class ConfigError(HarvesterError):
    """Raised when configuration or command-line input is invalid."""


class StorageError(HarvesterError):
    """Raised when PostgreSQL cannot be reached or used."""


class RunLockedError(HarvesterError):
    """Raised when another run holds the lock on the same database."""


class ApiError(HarvesterError):
    """Raised when an API request fails; carries the status and request path."""

    def __init__(self, message: str, *, status: int | None = None, path: str = ""):
        super().__init__(message)
        self.status = status
        self.path = path


class RetryableApiError(ApiError):
    """Raised for failures that another attempt may fix."""


class RateLimitedError(RetryableApiError):
    """Raised on a 429; retry_after_s is the server's Retry-After, if any."""

    def __init__(self, message: str, *, path: str, retry_after_s: float | None):
        super().__init__(message, status=429, path=path)
        self.retry_after_s = retry_after_s


class InvalidResponseError(RetryableApiError):
    """Raised when a 200 body is not JSON or fails validation."""


class RejectedRequestError(ApiError):
    """Raised on 400, 403 and 404, which no retry can fix."""

    def __init__(
        self, message: str, *, status: int, path: str, reason: str = "rejected"
    ):
        super().__init__(message, status=status, path=path)
        self.reason = reason


class BatchTooLargeError(RejectedRequestError):
    """Raised when the API rejects a request for carrying too many ids."""

    def __init__(self, message: str, *, path: str, max_ids: int | None):
        super().__init__(message, status=400, path=path, reason="batch_too_large")
        self.max_ids = max_ids


class WindowTooLargeError(RejectedRequestError):
    """Raised when the API rejects a request for asking too many buckets at once."""

    def __init__(self, message: str, *, path: str, max_last: int):
        super().__init__(message, status=400, path=path, reason="window_too_large")
        self.max_last = max_last


class ApiUnreachableError(ApiError):
    """Raised when so many requests in a row got no response that the run stops."""


class AuthError(ApiError):
    """Raised when the API rejects the credentials."""
