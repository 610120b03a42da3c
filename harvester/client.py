"""The API client: one GET per call, with aiohttp errors translated at this boundary."""

from __future__ import annotations

import asyncio
import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from harvester.buckets import Unit, Window
from harvester.config import ApiSettings
from harvester.errors import (
    ApiUnreachableError,
    AuthError,
    BatchTooLargeError,
    RateLimitedError,
    RejectedRequestError,
    RetryableApiError,
    WindowTooLargeError,
)
from harvester.ratelimit import RateLimiter

if TYPE_CHECKING:
    from harvester.auth import TokenSource

logger = logging.getLogger(__name__)

# Requests in a row without any response (refused, reset or timed out) after
# which the API is taken as down and the run stops, instead of retrying every
# batch to the end.
UNREACHABLE_AFTER = 30
# A longer Retry-After is taken as this: an hourly run cannot wait longer.
MAX_RETRY_AFTER_S = 600.0
HTML_TITLE_PATTERN = re.compile(rb"<title>([^<]{1,100})</title>", re.I)
# A 400 about the request's size rather than an id: its message names `last`,
# or ids/items, and may give the limit as a standalone number.
LAST_WORD = re.compile(r"\blast\b", re.I)
IDS_WORD = re.compile(r"\b(ids|items)\b", re.I)
LIMIT_WORD = re.compile(
    r"\b(max|maximum|at most|exceed|exceeds|too many|limit)\b", re.I
)
STANDALONE_NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
# A 403 from the API's policy layer is how some endpoints report an expired token.
POLICY_AGENT_MARKERS = ("PolicyAgent", "PA_UNAUTHORIZED_RESULT_FROM_POLICIES")


@dataclass
class RequestCounters:
    """Requests sent and statuses seen during a run."""

    requests: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0


class ApiClient:
    """Sends time_window requests under the shared rate limit and concurrency bound."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: ApiSettings,
        limiter: RateLimiter,
        tokens: TokenSource,
    ) -> None:
        self._session = session
        self._settings = settings
        self._limiter = limiter
        self._tokens = tokens
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._silent_in_a_row = 0
        self.counters = RequestCounters()

    def series_path(self, metric: str, ids: list[str]) -> str:
        """Return the multi-id path in the configured form.

        The API's documentation shows questions under an item's own path and
        phone views under the plain path; "guide" follows it per metric.
        """
        form = self._settings.multi_id_form
        if form == "guide":
            form = "prefixed" if metric == "questions" else "plain"
        if form == "prefixed":
            return f"/items/{ids[0]}/contacts/{metric}/time_window"
        return f"/items/contacts/{metric}/time_window"

    async def fetch_series(
        self, metric: str, unit: Unit, ids: list[str], window: Window, ending: str
    ) -> bytes:
        """GET the series of `ids` for `window` and return the raw 200 body."""
        path = self.series_path(metric, ids)
        params = {
            "ids": ",".join(ids),
            "last": str(window.size),
            "unit": unit.value,
            "ending": ending,
        }
        return await self.get(path, params)

    async def get(self, path: str, params: dict[str, str]) -> bytes:
        """GET a path; on a rejected token, refresh it once and send again."""
        async with self._slots:
            token = await self._tokens.token()
            try:
                return await self._send(path, params, token)
            except AuthError as error:
                logger.debug("the API rejected the access token (%s)", error.status)
                token = await self._tokens.refresh(token)
            try:
                return await self._send(path, params, token)
            except AuthError as error:
                raise AuthError(
                    f"the API still rejects the credentials after a token refresh "
                    f"({error}): the application may lack permission for this "
                    "endpoint, or the account must be authorised again",
                    status=error.status,
                    path=path,
                ) from None

    async def _send(self, path: str, params: dict[str, str], token: str) -> bytes:
        await self._limiter.acquire()
        self.counters.requests += 1
        url = self._settings.base_url + path
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with self._session.get(
                url, params=params, headers=bearer_headers(token), timeout=timeout
            ) as response:
                body = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            self.counters.timeouts += 1
            self._count_silence(path)
            raise RetryableApiError(
                f"timed out after {self._settings.timeout_s}s", path=path
            ) from None
        except aiohttp.ClientError as error:
            self._count_silence(path)
            raise RetryableApiError(
                f"connection failed: {type(error).__name__}: {error}", path=path
            ) from error
        self._silent_in_a_row = 0
        if status != 429:
            self._limiter.accepted()
        if status == 200:
            return body
        raise self._status_error(status, body, path, params, retry_after)

    def _count_silence(self, path: str) -> None:
        """Stop the run once too many requests in a row got no response at all."""
        self._silent_in_a_row += 1
        if self._silent_in_a_row >= UNREACHABLE_AFTER:
            raise ApiUnreachableError(
                f"the API at {self._settings.base_url} stopped responding: "
                f"{self._silent_in_a_row} requests in a row failed to connect or "
                "timed out; check that it is up, then run again",
                path=path,
            )

    def _status_error(
        self,
        status: int,
        body: bytes,
        path: str,
        params: dict[str, str],
        retry_after: str | None,
    ) -> Exception:
        message = error_message(body)
        if status == 429:
            self.counters.rate_limited += 1
            self._limiter.throttled()
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                self._limiter.pause(seconds)
            return RateLimitedError(
                f"rate limited (429): {message}", path=path, retry_after_s=seconds
            )
        if status >= 500:
            self.counters.server_errors += 1
            return RetryableApiError(
                f"server error {status}: {message}", status=status, path=path
            )
        if status == 401 or (status == 403 and is_policy_block(body)):
            return AuthError(f"{status}: {message}", status=status, path=path)
        if status == 400 and LIMIT_WORD.search(message):
            size_error = request_size_error(message, path, params)
            if size_error is not None:
                return size_error
        if status in (400, 403, 404):
            return RejectedRequestError(
                f"rejected ({status}): {message}",
                status=status,
                path=path,
                reason=f"http_{status}:{error_code(body)}",
            )
        return RetryableApiError(
            f"unexpected status {status}: {message}", status=status, path=path
        )


def request_size_error(
    message: str, path: str, params: dict[str, str]
) -> BatchTooLargeError | WindowTooLargeError | None:
    """Read a 400 that limits `last` or the number of ids, if it is one.

    The limit is the first standalone number below what was sent; without
    one, the caller halves what it sent.
    """
    sent_last = int(params.get("last", "0") or 0)
    sent_ids = len(params.get("ids", "").split(","))
    numbers = [int(n) for n in STANDALONE_NUMBER.findall(message)]
    if LAST_WORD.search(message):
        limit = next((n for n in numbers if 0 < n < sent_last), sent_last // 2)
        return WindowTooLargeError(
            f"window too large: {message}", path=path, max_last=limit
        )
    if IDS_WORD.search(message) and sent_ids > 1:
        limit = next((n for n in numbers if 0 < n < sent_ids), sent_ids // 2)
        return BatchTooLargeError(
            f"batch too large: {message}", path=path, max_ids=limit
        )
    return None


def bearer_headers(token: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def decode_error(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def error_message(body: bytes) -> str:
    """Return the error's own words from any of the API's error envelopes."""
    document = decode_error(body)
    for key in ("message", "error", "code", "status"):
        if document.get(key):
            return str(document[key])[:200]
    if not body:
        return "empty body"
    title = HTML_TITLE_PATTERN.search(body)
    if title:
        return f"HTML page {title.group(1).decode('utf-8', 'replace')!r}"
    return f"non-JSON body of {len(body)} bytes"


def error_code(body: bytes) -> str:
    document = decode_error(body)
    return str(document.get("error") or document.get("code") or "unknown")


def is_policy_block(body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    return any(marker in text for marker in POLICY_AGENT_MARKERS)


def parse_retry_after(value: str | None) -> float | None:
    """Return Retry-After in seconds; HTTP dates and junk count as absent."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
