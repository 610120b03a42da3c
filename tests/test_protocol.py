"""Protocol corners of the time_window API through ApiClient and BatchFetcher.

aioresponses replaces the API's HTTP server. The rate limiter and the retry
policy run on a fake clock whose sleeps return at once and are recorded.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, cast

import aiohttp
import orjson
import pytest
from aiohttp.abc import AbstractStreamWriter
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from harvester.auth import FixedToken, TokenSource
from harvester.buckets import Unit, Window, day_index, hour_index, hour_start
from harvester.client import ApiClient, parse_retry_after
from harvester.config import ApiSettings, parse_time_zone
from harvester.errors import (
    AuthError,
    InvalidResponseError,
    RetryableApiError,
    WindowTooLargeError,
)
from harvester.fetch import BatchFetcher
from harvester.ratelimit import RateLimiter
from harvester.responses import BatchResponse, parse_batch
from harvester.retry import RetryPolicy

API_URL = "http://127.0.0.1:8080"
ITEMS_PATTERN = re.compile(r"^http://127\.0\.0\.1:8080/items/")
METRIC = "questions"
FIRST = hour_index(datetime(2026, 11, 20, 0, tzinfo=UTC))
WINDOW = Window(Unit.HOUR, FIRST, 4)
ENDING = WINDOW.ending_param(UTC)
IDS = ["MLA1", "MLA2", "MLA3", "MLA4"]
# Bucket totals that every item of the fake API reports over WINDOW.
TOTALS = {FIRST: 3, FIRST + 1: 0, FIRST + 2: 5, FIRST + 3: 1}

API_SETTINGS = ApiSettings(
    base_url=API_URL,
    access_token="test-token",
    rate_per_s=1000.0,
    concurrency=4,
    batch_size=4,
    max_last=720,
    timeout_s=5.0,
    attempts=5,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    multi_id_form="plain",
)


def hour_label(index: int) -> str:
    return hour_start(index).strftime("%Y-%m-%dT%H:%M:%SZ")


def series(
    item_id: str,
    totals: dict[int, int],
    first: int = FIRST,
    end: int = FIRST + 4,
    label: Callable[[int], str] = hour_label,
    unit: str = "hour",
) -> dict[str, Any]:
    """Build one series object as the API sends it, with a row per entry of totals."""
    return {
        "item_id": item_id,
        "total": sum(totals.values()),
        "date_from": label(first),
        "date_to": label(end),
        "last": end - first,
        "unit": unit,
        "results": [
            {"date": label(index), "total": total}
            for index, total in sorted(totals.items())
        ],
    }


class SentRequestWriter:
    """A placeholder stream writer for a request that has already been sent."""

    output_size = 0


class MockedResponse(aiohttp.ClientResponse):
    """A ClientResponse that aioresponses can build under aiohttp 3.14.

    NOTE: aioresponses 0.7.9 omits the `stream_writer` argument that aiohttp 3.14
    requires, so every mocked response must use this class until it is fixed.
    """

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        writer = cast(AbstractStreamWriter, SentRequestWriter())
        super().__init__(method, url, stream_writer=writer, **kwargs)


def result(
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> CallbackResult:
    return CallbackResult(
        status=status,
        body=body,
        content_type=content_type,
        headers=headers or {},
        response_class=MockedResponse,
    )


def json_result(
    document: object, status: int = 200, headers: dict[str, str] | None = None
) -> CallbackResult:
    return result(status, orjson.dumps(document), headers=headers)


def series_result(ids: list[str]) -> CallbackResult:
    return json_result([series(item_id, TOTALS) for item_id in ids])


def api_error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> CallbackResult:
    document = {"message": message, "error": error, "status": status, "cause": []}
    return json_result(document, status=status, headers=headers)


def rate_limited(retry_after: str) -> CallbackResult:
    headers = {"Retry-After": retry_after}
    return api_error(429, "too_many_requests", "slow down", headers)


@dataclass
class SentRequest:
    url: URL
    ids: list[str]
    headers: dict[str, str]


@dataclass
class FakeApi:
    """A fake API that returns `handler(ids)` for each request and records it."""

    handler: Callable[[list[str]], CallbackResult]
    requests: list[SentRequest] = field(default_factory=list)

    def callback(self, url: URL, **kwargs: Any) -> CallbackResult:
        ids = url.query["ids"].split(",")
        headers = dict(kwargs.get("headers") or {})
        self.requests.append(SentRequest(url, ids, headers))
        return self.handler(ids)

    def sent_ids(self) -> list[list[str]]:
        return [request.ids for request in self.requests]


def scripted(*results: CallbackResult) -> Callable[[list[str]], CallbackResult]:
    """Return a handler that sends `results` in order, then series for every id."""
    queue = list(results)

    def handle(ids: list[str]) -> CallbackResult:
        if queue:
            return queue.pop(0)
        return series_result(ids)

    return handle


@dataclass
class FakeTime:
    """A clock that only moves when the limiter or the retry policy sleeps."""

    now: float = 1000.0
    limiter_sleeps: list[float] = field(default_factory=list)
    retry_sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def limiter_sleep(self, seconds: float) -> None:
        self.limiter_sleeps.append(seconds)
        self.now += seconds

    async def retry_sleep(self, seconds: float) -> None:
        self.retry_sleeps.append(seconds)
        self.now += seconds


@dataclass
class Harness:
    api: FakeApi
    client: ApiClient
    policy: RetryPolicy
    fetcher: BatchFetcher
    time: FakeTime

    async def fetch(
        self, ids: list[str] = IDS, window: Window = WINDOW, ending: str = ENDING
    ) -> BatchResponse:
        return await self.fetcher.fetch(METRIC, window.unit, ids, window, ending)


@asynccontextmanager
async def running(
    handler: Callable[[list[str]], CallbackResult],
    tokens: TokenSource | None = None,
    **api: Any,
) -> AsyncIterator[Harness]:
    """Run a client and fetcher against a fake API that responds with `handler`.

    Without `tokens` the client sends the fixed access token of the settings.
    """
    settings = replace(API_SETTINGS, **api)
    fake_time = FakeTime()
    fake_api = FakeApi(handler)
    with aioresponses() as mocked:
        mocked.get(ITEMS_PATTERN, callback=fake_api.callback, repeat=True)
        async with aiohttp.ClientSession() as session:
            limiter = RateLimiter(
                settings.rate_per_s,
                clock=fake_time.clock,
                sleep=fake_time.limiter_sleep,
            )
            source = tokens or FixedToken(settings.access_token)
            client = ApiClient(session, settings, limiter, source)
            policy = RetryPolicy(
                settings, sleep=fake_time.retry_sleep, rng=random.Random(7)
            )
            fetcher = BatchFetcher(client, policy, settings.batch_size)
            yield Harness(fake_api, client, policy, fetcher, fake_time)


# Requests as sent.


async def test_request_hour_parameters() -> None:
    async with running(series_result) as harness:
        await harness.fetch()

    assert len(harness.api.requests) == 1
    request = harness.api.requests[0]
    assert request.url.path == "/items/contacts/questions/time_window"
    assert request.url.query["ids"] == "MLA1,MLA2,MLA3,MLA4"
    assert request.url.query["last"] == "4"
    assert request.url.query["unit"] == "hour"
    assert request.url.query["ending"] == "2026-11-20T03:00:00+00:00"
    assert "ending=2026-11-20T03:00:00%2B00:00" in request.url.raw_query_string
    assert request.headers["Authorization"] == "Bearer test-token"


async def test_request_day_parameters() -> None:
    zone = parse_time_zone("UTC-03:00")
    first_day = day_index(date(2026, 11, 17))
    window = Window(Unit.DAY, first_day, 3)

    def handle(ids: list[str]) -> CallbackResult:
        totals = {first_day: 1, first_day + 1: 2, first_day + 2: 3}
        return json_result(
            [series(i, totals, first_day, first_day + 3, day_label, "day") for i in ids]
        )

    async with running(handle) as harness:
        answer = await harness.fetch(["MLA1"], window, window.ending_param(zone))

    request = harness.api.requests[0]
    assert request.url.query["unit"] == "day"
    assert request.url.query["last"] == "3"
    assert request.url.query["ending"] == "2026-11-19T12:00:00-03:00"
    assert answer.totals == {"MLA1": {first_day: 1, first_day + 1: 2, first_day + 2: 3}}


async def test_request_prefixed_form_path() -> None:
    async with running(series_result, multi_id_form="prefixed") as harness:
        await harness.fetch(["MLA1", "MLA2"])

    request = harness.api.requests[0]
    assert request.url.path == "/items/MLA1/contacts/questions/time_window"
    assert request.url.query["ids"] == "MLA1,MLA2"


@pytest.mark.parametrize(
    ("metric", "path"),
    [
        ("questions", "/items/MLA1/contacts/questions/time_window"),
        ("phone_views", "/items/contacts/phone_views/time_window"),
    ],
)
async def test_request_guide_form_path(metric: str, path: str) -> None:
    async with running(series_result, multi_id_form="guide") as harness:
        await harness.fetcher.fetch(metric, Unit.HOUR, ["MLA1", "MLA2"], WINDOW, ENDING)

    assert harness.api.requests[0].url.path == path


async def test_request_without_token_no_authorization() -> None:
    async with running(series_result, access_token="") as harness:
        await harness.fetch(["MLA1"])

    assert "Authorization" not in harness.api.requests[0].headers


# Response bodies in the shapes that the API sends in practice.


async def test_answer_single_object_accepted() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return json_result(series("MLA1", TOTALS))

    async with running(handle) as harness:
        alone = await harness.fetch(["MLA1"])
        paired = await harness.fetch(["MLA1", "MLA2"])

    assert alone.totals == {"MLA1": TOTALS}
    assert alone.failed == {}
    assert paired.totals == {"MLA1": TOTALS}
    assert paired.failed == {"MLA2": "not_returned"}


async def test_answer_sparse_results() -> None:
    # The response covers FIRST + 1 .. FIRST + 3 and reports only FIRST + 2.
    sparse = series("MLA1", {FIRST + 2: 6}, first=FIRST + 1, end=FIRST + 4)

    async with running(lambda ids: json_result([sparse])) as harness:
        answer = await harness.fetch(["MLA1"])

    totals = answer.totals["MLA1"]
    assert totals == {FIRST + 1: 0, FIRST + 2: 6, FIRST + 3: 0}
    assert FIRST not in totals


async def test_answer_extra_bucket_dropped() -> None:
    # A fifth row labelled date_to (FIRST + 4), counted in the answer's total.
    extended = series("MLA1", {**TOTALS, FIRST + 4: 7})

    async with running(lambda ids: json_result([extended])) as harness:
        answer = await harness.fetch(["MLA1"])

    assert answer.totals == {"MLA1": TOTALS}
    assert answer.failed == {}


async def test_answer_results_out_of_order() -> None:
    shuffled = series("MLA1", TOTALS)
    shuffled["results"] = [shuffled["results"][i] for i in (2, 0, 3, 1)]
    entries = [series("MLA2", TOTALS), shuffled]

    async with running(lambda ids: json_result(entries)) as harness:
        answer = await harness.fetch(["MLA1", "MLA2"])

    assert answer.totals["MLA1"] == TOTALS
    assert answer.totals["MLA2"] == TOTALS


async def test_answer_last_as_string() -> None:
    window = Window(Unit.HOUR, FIRST, 2)
    entry = series("MLA1", {FIRST: 4, FIRST + 1: 9}, end=FIRST + 2)
    entry["last"] = "2"

    async with running(lambda ids: json_result([entry])) as harness:
        answer = await harness.fetch(["MLA1"], window, window.ending_param(UTC))

    assert answer.totals == {"MLA1": {FIRST: 4, FIRST + 1: 9}}


def day_label(index: int) -> str:
    return f"{date.fromordinal(index).isoformat()}T00:00:00Z"


def local_day_label(index: int) -> str:
    """Label a day by the UTC instant of its midnight at UTC-04:00."""
    return f"{date.fromordinal(index).isoformat()}T04:00:00Z"


@pytest.mark.parametrize("label", [day_label, local_day_label])
async def test_answer_day_label_styles(label: Callable[[int], str]) -> None:
    first_day = day_index(date(2026, 11, 18))
    window = Window(Unit.DAY, first_day, 3)
    totals = {first_day: 2, first_day + 1: 0, first_day + 2: 8}
    entry = series("MLA1", totals, first_day, first_day + 3, label, "day")
    ending = window.ending_param(parse_time_zone("UTC-04:00"))

    async with running(lambda ids: json_result([entry])) as harness:
        answer = await harness.fetch(["MLA1"], window, ending)

    assert answer.totals == {"MLA1": totals}


# Rejected requests and per-item failures.


async def test_bad_id_isolated_by_splitting() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        if "MLA3" in ids:
            return api_error(400, "bad_request", "invalid item id MLA3")
        return series_result(ids)

    async with running(handle) as harness:
        answer = await harness.fetch()

    assert set(answer.failed) == {"MLA3"}
    assert answer.failed["MLA3"].startswith("http_400")
    assert answer.failed["MLA3"] == "http_400:bad_request"
    assert answer.totals == {"MLA1": TOTALS, "MLA2": TOTALS, "MLA4": TOTALS}
    assert harness.api.sent_ids() == [
        ["MLA1", "MLA2", "MLA3", "MLA4"],
        ["MLA1", "MLA2"],
        ["MLA3", "MLA4"],
        ["MLA3"],
        ["MLA4"],
    ]
    assert harness.client.counters.requests == 5
    assert harness.policy.retries == 0


async def test_item_error_entry_failed() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        missing = {"item_id": "MLA2", "error": "not_found", "status": 404}
        return json_result([series("MLA1", TOTALS), missing])

    async with running(handle) as harness:
        answer = await harness.fetch(["MLA1", "MLA2"])

    assert answer.totals == {"MLA1": TOTALS}
    assert answer.failed == {"MLA2": "api_error:not_found"}
    assert len(harness.api.requests) == 1


async def test_item_absent_not_returned() -> None:
    async with running(lambda ids: series_result(ids[:2])) as harness:
        answer = await harness.fetch()

    assert answer.totals == {"MLA1": TOTALS, "MLA2": TOTALS}
    assert answer.failed == {"MLA3": "not_returned", "MLA4": "not_returned"}
    assert len(harness.api.requests) == 1


async def test_batch_too_large_shrinks() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        if len(ids) > 2:
            return api_error(
                400, "bad_request", "maximum amount of items to query is 2"
            )
        return series_result(ids)

    async with running(handle) as harness:
        answer = await harness.fetch()

    assert harness.fetcher.batch_size == 2
    assert answer.totals == {item_id: TOTALS for item_id in IDS}
    assert answer.failed == {}
    assert harness.api.sent_ids() == [IDS, ["MLA1", "MLA2"], ["MLA3", "MLA4"]]


async def test_window_too_large_raised() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(400, "bad_request", "invalid last 4: the maximum is 2")

    async with running(handle) as harness:
        with pytest.raises(WindowTooLargeError) as raised:
            await harness.fetch()

    assert raised.value.max_last == 2
    assert len(harness.api.requests) == 1


async def test_not_found_single_id() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(404, "not_found", "item MLA1 not found")

    async with running(handle) as harness:
        answer = await harness.fetch(["MLA1"])

    assert answer.totals == {}
    assert answer.failed == {"MLA1": "http_404:not_found"}
    assert len(harness.api.requests) == 1


async def test_forbidden_without_policy_rejected() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(403, "forbidden", "item MLA1 is not visible")

    async with running(handle) as harness:
        answer = await harness.fetch(["MLA1"])

    assert answer.failed == {"MLA1": "http_403:forbidden"}
    assert len(harness.api.requests) == 1


# Authentication.


async def test_unauthorized_raises_without_retry() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(401, "unauthorized", "invalid access token")

    async with running(handle) as harness:
        with pytest.raises(AuthError) as raised:
            await harness.fetch()

    assert "access_token" in str(raised.value)
    assert "HARVESTER_ACCESS_TOKEN" in str(raised.value)
    assert len(harness.api.requests) == 1
    assert harness.time.retry_sleeps == []


async def test_policy_agent_forbidden_auth_error() -> None:
    document = {
        "message": "At least one policy returned UNAUTHORIZED.",
        "error": "PA_UNAUTHORIZED_RESULT_FROM_POLICIES",
        "status": 403,
        "blocked_by": "PolicyAgent",
    }

    async with running(lambda ids: json_result(document, status=403)) as harness:
        with pytest.raises(AuthError) as raised:
            await harness.fetch()

    assert "access_token" in str(raised.value)
    assert len(harness.api.requests) == 1
    assert harness.time.retry_sleeps == []


class RotatingTokens:
    """A token source whose every refresh returns the next numbered token."""

    def __init__(self) -> None:
        self.current = "token-1"
        self.rejected: list[str] = []

    async def token(self) -> str:
        return self.current

    async def refresh(self, rejected: str) -> str:
        self.rejected.append(rejected)
        self.current = f"token-{len(self.rejected) + 1}"
        return self.current


async def test_rejected_token_refreshed_once() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        token = harness.api.requests[-1].headers.get("Authorization")
        if token == "Bearer token-2":
            return series_result(ids)
        return api_error(401, "unauthorized", "invalid access token")

    tokens = RotatingTokens()

    async with running(handle, tokens=tokens) as harness:
        answer = await harness.fetch()

    assert answer.totals == {item_id: TOTALS for item_id in IDS}
    assert tokens.rejected == ["token-1"]
    assert [r.headers["Authorization"] for r in harness.api.requests] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_refreshed_token_still_rejected() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(403, "forbidden", "blocked by PolicyAgent")

    tokens = RotatingTokens()

    async with running(handle, tokens=tokens) as harness:
        with pytest.raises(AuthError) as raised:
            await harness.fetch()

    assert "after a token refresh" in str(raised.value)
    assert raised.value.status == 403
    assert tokens.rejected == ["token-1"]
    assert len(harness.api.requests) == 2


# Retries.


async def test_rate_limited_honours_retry_after() -> None:
    limited = rate_limited("7")

    async with running(scripted(limited)) as harness:
        answer = await harness.fetch()

    assert answer.totals == {item_id: TOTALS for item_id in IDS}
    assert len(harness.api.requests) == 2
    assert len(harness.time.retry_sleeps) == 1
    assert harness.time.retry_sleeps[0] >= 7.0
    assert harness.client.counters.rate_limited == 1
    assert harness.policy.retries == 1


async def test_retry_after_zero_still_waits() -> None:
    limited = rate_limited("0")

    async with running(scripted(limited)) as harness:
        answer = await harness.fetch()

    assert answer.failed == {}
    assert len(harness.api.requests) == 2
    assert len(harness.time.retry_sleeps) == 1
    assert harness.time.retry_sleeps[0] >= 0.2


async def test_rate_limited_pauses_limiter() -> None:
    limited = rate_limited("30")

    async with running(scripted(limited)) as harness:
        with pytest.raises(RetryableApiError):
            await harness.client.fetch_series(METRIC, Unit.HOUR, IDS, WINDOW, ENDING)
        await harness.client.fetch_series(METRIC, Unit.HOUR, IDS, WINDOW, ENDING)

    # The second request waited out the pause in the rate limiter.
    assert harness.time.now >= 1030.0
    assert sum(harness.time.limiter_sleeps) >= 30.0


async def test_server_errors_then_success() -> None:
    bad_gateway = result(
        502,
        b"<html><head><title>502 Bad Gateway</title></head></html>",
        content_type="text/html",
    )
    handler = scripted(
        api_error(500, "internal_error", "internal error"),
        bad_gateway,
        api_error(503, "service_unavailable", "try again"),
    )

    async with running(handler) as harness:
        answer = await harness.fetch()

    assert answer.totals == {item_id: TOTALS for item_id in IDS}
    assert len(harness.api.requests) == 4
    assert harness.client.counters.server_errors == 3
    assert harness.policy.retries == 3
    assert len(harness.time.retry_sleeps) == 3


@pytest.mark.parametrize(
    "body",
    [b'[{"item_id": "MLA1", "total": 9, "date_from"', b""],
    ids=["truncated", "empty"],
)
async def test_bad_body_then_success(body: bytes) -> None:
    async with running(scripted(result(200, body))) as harness:
        answer = await harness.fetch()

    assert answer.totals == {item_id: TOTALS for item_id in IDS}
    assert len(harness.api.requests) == 2
    assert harness.policy.retries == 1


async def test_timeout_then_success() -> None:
    calls = []

    def handle(ids: list[str]) -> CallbackResult:
        calls.append(ids)
        if len(calls) == 1:
            raise TimeoutError
        return series_result(ids)

    async with running(handle) as harness:
        answer = await harness.fetch()

    assert answer.failed == {}
    assert len(calls) == 2
    assert harness.client.counters.timeouts == 1


async def test_attempts_exhausted_raises() -> None:
    def handle(ids: list[str]) -> CallbackResult:
        return api_error(503, "service_unavailable", "try again")

    async with running(handle, attempts=3) as harness:
        with pytest.raises(RetryableApiError) as raised:
            await harness.fetch()

    assert raised.value.status == 503
    assert len(harness.api.requests) == 3
    assert len(harness.time.retry_sleeps) == 2


def test_retry_after_parsing() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None


@pytest.mark.parametrize("value", ["inf", "nan", "Infinity"])
def test_retry_after_non_finite_absent(value: str) -> None:
    assert parse_retry_after(value) is None


# Validation of a 200 body, straight through parse_batch.


def valid_entry() -> dict[str, Any]:
    return series("MLA1", TOTALS)


def changed_entry() -> dict[str, Any]:
    return series("MLA1", {**TOTALS, FIRST + 1: 4})


def parse_one(entry: object) -> BatchResponse:
    return parse_batch(orjson.dumps([entry]), ["MLA1"], Unit.HOUR, WINDOW)


def test_parse_valid_entry() -> None:
    answer = parse_one(valid_entry())

    assert answer.totals == {"MLA1": TOTALS}
    assert answer.failed == {}


def series_total(value: object, summed: int) -> Callable[[dict[str, Any]], None]:
    """Set the series total to `value` over one row whose total is `summed`."""

    def mutate(entry: dict[str, Any]) -> None:
        entry["total"] = value
        entry["results"] = [{"date": hour_label(FIRST), "total": summed}]

    return mutate


def row_total(value: object) -> Callable[[dict[str, Any]], None]:
    """Set the total of one row to `value`, keeping the series total a count."""

    def mutate(entry: dict[str, Any]) -> None:
        entry["total"] = 3
        entry["results"] = [{"date": hour_label(FIRST), "total": value}]

    return mutate


def test_parse_identical_repeat_accepted() -> None:
    body = orjson.dumps([valid_entry(), valid_entry()])

    answer = parse_batch(body, ["MLA1"], Unit.HOUR, WINDOW)

    assert answer.totals == {"MLA1": TOTALS}
    assert answer.failed == {}


def set_key(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        entry[key] = value

    return mutate


def drop_key(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        del entry[key]

    return mutate


def add_row(label: str, total: int) -> Callable[[dict[str, Any]], None]:
    def mutate(entry: dict[str, Any]) -> None:
        entry["results"].append({"date": label, "total": total})
        entry["total"] += total

    return mutate


INVALID_ENTRIES = {
    "item not requested": (set_key("item_id", "MLA9"), "not requested"),
    "item id missing": (drop_key("item_id"), "not requested"),
    "wrong unit": (set_key("unit", "day"), "unit 'day'"),
    "negative total": (series_total(-1, 0), "invalid total -1"),
    "string total": (series_total("3", 3), "invalid total '3'"),
    "float total": (series_total(2.5, 2), "invalid total 2.5"),
    "boolean total": (series_total(True, 1), "invalid total True"),
    "negative row total": (row_total(-1), "invalid total -1"),
    "string row total": (row_total("3"), "invalid total '3'"),
    "float row total": (row_total(2.5), "invalid total 2.5"),
    "boolean row total": (row_total(True), "invalid total True"),
    "total not sum": (set_key("total", 10), "add up to 9"),
    "duplicate date": (add_row(hour_label(FIRST + 1), 2), "repeats"),
    "date before window": (add_row(hour_label(FIRST - 1), 2), "outside"),
    "date after window": (add_row(hour_label(FIRST + 5), 2), "outside"),
    "date off the hour": (add_row("2026-11-20T01:30:00Z", 2), "whole hour"),
    "date without offset": (add_row("2026-11-20T05:00:00", 2), "offset"),
    "date as list": (add_row(["2026-11-20T05:00:00Z"], 2), "invalid date"),  # type: ignore[arg-type]
    "date as number": (add_row(1764000000, 2), "invalid date"),  # type: ignore[arg-type]
    "results missing": (drop_key("results"), "no results list"),
    "results not list": (set_key("results", {}), "no results list"),
    "date_from missing": (drop_key("date_from"), "invalid date None"),
    "date_to missing": (drop_key("date_to"), "invalid date None"),
    "date_to before date_from": (
        set_key("date_to", hour_label(FIRST - 1)),
        "date_to before date_from",
    ),
    "last negative": (set_key("last", -4), "invalid last"),
    "last not digits": (set_key("last", "four"), "invalid last"),
    "last boolean": (set_key("last", True), "invalid last"),
}


@pytest.mark.parametrize(
    ("mutate", "message"), INVALID_ENTRIES.values(), ids=INVALID_ENTRIES.keys()
)
def test_parse_invalid_entry_rejected(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    entry = valid_entry()
    mutate(entry)

    with pytest.raises(InvalidResponseError, match=re.escape(message)):
        parse_one(entry)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"<html></html>", "not valid JSON"),
        (b"[1]", "not an object"),
        (orjson.dumps([valid_entry(), changed_entry()]), "repeats item"),
    ],
    ids=["empty", "html", "number entry", "repeated item changed"],
)
def test_parse_invalid_body_rejected(body: bytes, message: str) -> None:
    with pytest.raises(InvalidResponseError, match=message):
        parse_batch(body, ["MLA1"], Unit.HOUR, WINDOW)
