"""Tests of the sandbox API over HTTP, against a real server on 127.0.0.1."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from harvester.sandbox import RunningSandbox, SandboxSettings, Traffic, start_sandbox

NOW = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
GUIDE_ENDING = "2014-05-28T00:00:00.000-03:00"
ITEM = "MLA600000001"
OTHER_ITEM = "MLA600000002"
SELLER = "52366167"
TRAFFIC = Traffic(seed=7, items=30, sellers=4)
TRAFFIC_MINUS_4 = Traffic(seed=7, items=30, sellers=4, day_offset_hours=-4)
HOUR_SERIES = f"/items/{ITEM}/contacts/questions/time_window"
MULTI_SERIES = "/items/contacts/questions/time_window"


class MutableClock:
    """A clock that tests move by assigning `now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Client:
    sandbox: RunningSandbox
    session: aiohttp.ClientSession

    async def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        async with self.session.get(path, params=params, headers=headers) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)

    async def post_form(self, path: str, form: Mapping[str, str]) -> Reply:
        async with self.session.post(path, data=dict(form)) as response:
            body = await response.read()
            return Reply(response.status, response.headers, body)


@asynccontextmanager
async def serve(
    settings: SandboxSettings | None = None,
    traffic: Traffic = TRAFFIC,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Client]:
    sandbox = await start_sandbox(
        settings or SandboxSettings(), traffic, clock=clock or MutableClock(NOW)
    )
    async with sandbox, aiohttp.ClientSession(base_url=sandbox.url) as session:
        yield Client(sandbox, session)


def window(last: int, unit: str, **extra: str) -> dict[str, str]:
    return {"last": str(last), "unit": unit, **extra}


def dates_of(series: dict[str, Any]) -> list[str]:
    return [bucket["date"] for bucket in series["results"]]


def totals_of(series: dict[str, Any]) -> list[int]:
    return [bucket["total"] for bucket in series["results"]]


def hour(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Hour windows


async def test_hour_window_guide_dates() -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour", ending=GUIDE_ENDING))
    series = reply.json()
    assert series["date_from"] == "2014-05-28T02:00:00Z"
    assert series["date_to"] == "2014-05-28T04:00:00Z"


async def test_hour_window_guide_buckets() -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour", ending=GUIDE_ENDING))
    assert dates_of(reply.json()) == ["2014-05-28T02:00:00Z", "2014-05-28T03:00:00Z"]


async def test_hour_window_shape() -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour", ending=GUIDE_ENDING))
    series = reply.json()
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert series["item_id"] == ITEM
    assert series["last"] == 2
    assert series["unit"] == "hour"
    assert series["total"] == sum(totals_of(series))


async def test_hour_window_values_match_traffic() -> None:
    ending = "2026-12-02T10:20:00Z"
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(30, "hour", ending=ending))
    first_hour = datetime(2026, 12, 1, 5, tzinfo=UTC)
    expected = TRAFFIC.hour_counts(ITEM, "questions", first_hour, 30)
    assert totals_of(reply.json()) == expected


async def test_hour_window_ends_at_now_by_default() -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(3, "hour"))
    assert reply.json()["date_to"] == "2026-12-03T16:00:00Z"


async def test_hour_window_newest_bucket_filling() -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, window(3, "hour"))
    newest = datetime(2026, 12, 3, 15, tzinfo=UTC)
    count = TRAFFIC.hour_count(ITEM, "questions", newest)
    assert totals_of(reply.json())[-1] == count * 1800 // 3600


def busiest_seller_hour() -> tuple[datetime, int]:
    """Return the start and final count of the seller's busiest hour on NOW's day."""
    day_start = datetime(2026, 12, 3, tzinfo=UTC)
    later = day_start + timedelta(days=2)
    counts = TRAFFIC.seller_hour_values(SELLER, "phone_views", day_start, 24, later)
    top = max(counts)
    return day_start + timedelta(hours=counts.index(top)), top


async def test_filling_bucket_grows_with_clock() -> None:
    hour_start, final = busiest_seller_hour()
    clock = MutableClock(hour_start)
    params = window(1, "hour", ending=hour_start.isoformat())
    seen = []
    expected = []
    async with serve(clock=clock) as api:
        for minutes in (10, 40, 60):
            clock.now = hour_start + timedelta(minutes=minutes)
            path = f"/users/{SELLER}/contacts/phone_views/time_window"
            seen.append((await api.get(path, params)).json()["total"])
            expected.append(
                TRAFFIC.seller_hour_values(
                    SELLER, "phone_views", hour_start, 1, clock.now
                )[0]
            )
    assert seen == expected
    assert seen[0] < seen[1] < seen[2]
    assert seen[2] == final


async def test_future_buckets_are_zero() -> None:
    async with serve() as api:
        reply = await api.get(
            HOUR_SERIES, window(5, "hour", ending="2026-12-04T12:00:00Z")
        )
    assert totals_of(reply.json()) == [0, 0, 0, 0, 0]


async def test_order_desc_reverses_results() -> None:
    params = window(4, "hour", ending="2026-12-02T10:00:00Z")
    async with serve() as api:
        ascending = (await api.get(HOUR_SERIES, params)).json()
        descending = (await api.get(HOUR_SERIES, {**params, "order": "desc"})).json()
    assert descending["results"] == list(reversed(ascending["results"]))


async def test_ending_without_offset_uses_local_offset() -> None:
    async with serve(traffic=TRAFFIC_MINUS_4) as api:
        reply = await api.get(
            HOUR_SERIES, window(1, "hour", ending="2026-12-01T22:30:00")
        )
    assert reply.json()["date_to"] == "2026-12-02T03:00:00Z"


# Day windows


async def test_day_window_utc_label_offset_minus_4() -> None:
    params = window(2, "day", ending="2026-12-01T02:00:00Z")
    async with serve(traffic=TRAFFIC_MINUS_4) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert series["date_from"] == "2026-11-29T00:00:00Z"
    assert series["date_to"] == "2026-12-01T00:00:00Z"
    assert dates_of(series) == ["2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z"]


async def test_day_window_local_label_offset_minus_4() -> None:
    params = window(2, "day", ending="2026-12-01T02:00:00Z")
    settings = SandboxSettings(day_label="local")
    async with serve(settings, traffic=TRAFFIC_MINUS_4) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert series["date_from"] == "2026-11-29T04:00:00Z"
    assert series["date_to"] == "2026-12-01T04:00:00Z"
    assert dates_of(series) == ["2026-11-29T04:00:00Z", "2026-11-30T04:00:00Z"]


async def test_day_window_local_label_offset_zero() -> None:
    params = window(2, "day", ending="2026-12-01T02:00:00Z")
    settings = SandboxSettings(day_label="local")
    async with serve(settings) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert dates_of(series) == ["2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"]


async def test_day_window_utc_label_offset_zero() -> None:
    params = window(3, "day", ending="2026-12-01T23:59:59.999Z")
    async with serve() as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert series["date_to"] == "2026-12-02T00:00:00Z"
    assert dates_of(series)[0] == "2026-11-29T00:00:00Z"


async def test_day_values_match_local_days() -> None:
    params = window(3, "day", ending="2026-12-01T02:00:00Z")
    async with serve(traffic=TRAFFIC_MINUS_4) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    days = [date(2026, 11, 28), date(2026, 11, 29), date(2026, 11, 30)]
    expected = [TRAFFIC_MINUS_4.day_value(ITEM, "questions", day, NOW) for day in days]
    assert totals_of(series) == expected


async def test_day_value_equals_its_hour_values() -> None:
    params = window(24, "hour", ending="2026-12-04T03:00:00Z")
    settings = SandboxSettings(day_label="local")
    async with serve(settings, traffic=TRAFFIC_MINUS_4) as api:
        day = await api.get(HOUR_SERIES, window(1, "day"))
        hours = await api.get(HOUR_SERIES, params)
    assert hours.json()["date_from"] == day.json()["date_from"]
    assert day.json()["total"] == hours.json()["total"]


# Multi-id series


async def test_multi_id_guide_array() -> None:
    params = window(2, "hour", ids=f"{ITEM},{OTHER_ITEM}", ending=GUIDE_ENDING)
    async with serve() as api:
        body = (await api.get(MULTI_SERIES, params)).json()
    assert isinstance(body, list)
    assert [series["item_id"] for series in body] == [ITEM, OTHER_ITEM]
    assert body[1]["date_from"] == "2014-05-28T02:00:00Z"
    assert dates_of(body[1]) == ["2014-05-28T02:00:00Z", "2014-05-28T03:00:00Z"]


async def test_multi_id_path_form_ignores_path_id() -> None:
    params = window(2, "hour", ids=OTHER_ITEM, ending=GUIDE_ENDING)
    async with serve() as api:
        body = (
            await api.get("/items/MLA1/contacts/questions/time_window", params)
        ).json()
    assert [series["item_id"] for series in body] == [OTHER_ITEM]


async def test_multi_id_series_equal_single() -> None:
    params = window(5, "day", ending="2026-12-02T00:00:00Z")
    async with serve() as api:
        multi = await api.get(MULTI_SERIES, {**params, "ids": f"{OTHER_ITEM},{ITEM}"})
        single = await api.get(HOUR_SERIES, params)
    assert multi.json()[1] == single.json()


async def test_single_object_for_one_id() -> None:
    params = window(2, "hour", ids=ITEM, ending=GUIDE_ENDING)
    async with serve(SandboxSettings(single_object=True)) as api:
        body = (await api.get(MULTI_SERIES, params)).json()
    assert isinstance(body, dict)
    assert body["item_id"] == ITEM


async def test_single_object_off_returns_array() -> None:
    params = window(2, "hour", ids=ITEM, ending=GUIDE_ENDING)
    async with serve() as api:
        body = (await api.get(MULTI_SERIES, params)).json()
    assert isinstance(body, list)


async def test_max_ids_message() -> None:
    settings = SandboxSettings(max_ids=20)
    ids = ",".join(TRAFFIC.item_ids()[:21])
    async with serve(settings) as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=ids))
    assert reply.status == 400
    assert reply.json() == {
        "message": "maximum amount of items to query is 20",
        "error": "bad_request",
        "status": 400,
        "cause": [],
    }


async def test_max_ids_allows_limit() -> None:
    settings = SandboxSettings(max_ids=20)
    ids = ",".join(TRAFFIC.item_ids()[:20])
    async with serve(settings) as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=ids))
    assert len(reply.json()) == 20


@pytest.mark.parametrize("ids", ["", ",", f"{ITEM},,{OTHER_ITEM}"])
async def test_empty_ids_rejected(ids: str) -> None:
    async with serve() as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=ids))
    assert reply.status == 400
    assert reply.json()["error"] == "bad_request"


async def test_unknown_id_reject_names_id() -> None:
    async with serve() as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=f"{ITEM},MLA999"))
    assert reply.status == 400
    assert "MLA999" in reply.json()["message"]


async def test_malformed_id_reject_names_id() -> None:
    async with serve() as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=f"{ITEM},mla-1"))
    assert reply.status == 400
    assert "mla-1" in reply.json()["message"]


async def test_unknown_id_entry() -> None:
    settings = SandboxSettings(unknown_id="entry")
    async with serve(settings) as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=f"{ITEM},MLA999"))
    body = reply.json()
    assert reply.status == 200
    assert body[0]["item_id"] == ITEM
    assert body[1]["item_id"] == "MLA999"
    assert body[1]["error"] == "not_found"
    assert body[1]["status"] == 404
    assert "message" in body[1]


async def test_malformed_id_entry() -> None:
    settings = SandboxSettings(unknown_id="entry")
    async with serve(settings) as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids="12345"))
    assert reply.json()[0]["error"] == "not_found"


async def test_unknown_id_omit() -> None:
    settings = SandboxSettings(unknown_id="omit")
    ids = f"MLA999,{ITEM},bad"
    async with serve(settings) as api:
        reply = await api.get(MULTI_SERIES, window(2, "hour", ids=ids))
    assert reply.status == 200
    assert [series["item_id"] for series in reply.json()] == [ITEM]


async def test_single_path_unknown_item_404() -> None:
    async with serve() as api:
        reply = await api.get(
            "/items/MLA999/contacts/questions/time_window", window(2, "hour")
        )
    assert reply.status == 404
    assert reply.json() == {
        "message": "item not found",
        "error": "not_found",
        "status": 404,
        "cause": [],
    }


async def test_unknown_metric_404() -> None:
    async with serve() as api:
        reply = await api.get(
            f"/items/{ITEM}/contacts/visits/time_window", window(2, "hour")
        )
    assert reply.status == 404


# Response quirks


async def test_extra_bucket_adds_date_to_bucket() -> None:
    settings = SandboxSettings(extra_bucket=True)
    params = window(2, "hour", ending=GUIDE_ENDING)
    async with serve(settings) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert dates_of(series) == [
        "2014-05-28T02:00:00Z",
        "2014-05-28T03:00:00Z",
        "2014-05-28T04:00:00Z",
    ]
    assert series["date_to"] == "2014-05-28T04:00:00Z"
    assert series["total"] == sum(totals_of(series))


async def test_extra_bucket_day_window() -> None:
    settings = SandboxSettings(extra_bucket=True)
    params = window(3, "day", ending="2026-12-01T12:00:00Z")
    async with serve(settings) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert len(series["results"]) == 4
    assert dates_of(series)[-1] == series["date_to"]


async def test_sparse_drops_zero_buckets() -> None:
    params = window(48, "hour", ending="2026-12-02T23:00:00Z")
    async with serve(SandboxSettings(sparse=True)) as api:
        sparse = (await api.get(HOUR_SERIES, params)).json()
    assert 0 not in totals_of(sparse)


async def test_sparse_keeps_total_and_window() -> None:
    params = window(48, "hour", ending="2026-12-02T23:00:00Z")
    async with serve(SandboxSettings(sparse=True)) as api:
        sparse = (await api.get(HOUR_SERIES, params)).json()
    async with serve() as api:
        dense = (await api.get(HOUR_SERIES, params)).json()
    assert len(sparse["results"]) < len(dense["results"])
    assert sparse["total"] == dense["total"]
    assert sparse["date_from"] == dense["date_from"]
    assert sparse["date_to"] == dense["date_to"]


async def test_last_as_string() -> None:
    params = window(2, "hour", ending=GUIDE_ENDING)
    async with serve(SandboxSettings(last_as_string=True)) as api:
        series = (await api.get(HOUR_SERIES, params)).json()
    assert series["last"] == "2"


async def test_shuffle_keeps_buckets() -> None:
    params = window(48, "hour", ending="2026-12-02T23:00:00Z")
    async with serve(SandboxSettings(shuffle=True)) as api:
        shuffled = (await api.get(HOUR_SERIES, params)).json()
    async with serve() as api:
        ordered = (await api.get(HOUR_SERIES, params)).json()
    assert shuffled["results"] != ordered["results"]
    assert sorted(dates_of(shuffled)) == dates_of(ordered)


# Validation


@pytest.mark.parametrize(
    "params",
    [
        {"last": "2"},
        {"last": "2", "unit": "week"},
        {"unit": "hour"},
        {"last": "0", "unit": "hour"},
        {"last": "-1", "unit": "hour"},
        {"last": "two", "unit": "hour"},
        {"last": "2", "unit": "hour", "ending": "yesterday"},
        {"last": "2", "unit": "hour", "ending": "2014-13-28T00:00:00Z"},
        {"last": "2", "unit": "hour", "order": "sideways"},
    ],
)
async def test_invalid_series_params_400(params: dict[str, str]) -> None:
    async with serve() as api:
        reply = await api.get(HOUR_SERIES, params)
    assert reply.status == 400
    assert reply.json()["error"] == "bad_request"
    assert reply.json()["cause"] == []


async def test_max_last_message() -> None:
    async with serve(SandboxSettings(max_last=48)) as api:
        reply = await api.get(HOUR_SERIES, window(49, "day"))
    assert reply.status == 400
    assert "48" in reply.json()["message"]


async def test_max_last_allows_limit() -> None:
    async with serve(SandboxSettings(max_last=48)) as api:
        reply = await api.get(HOUR_SERIES, window(48, "day"))
    assert len(reply.json()["results"]) == 48


# Seller series and range totals


async def test_seller_series_sums_items() -> None:
    params = window(6, "hour")
    async with serve() as api:
        seller = (
            await api.get(f"/users/{SELLER}/contacts/questions/time_window", params)
        ).json()
        items = [
            (
                await api.get(
                    f"/items/{item_id}/contacts/questions/time_window", params
                )
            ).json()
            for item_id in TRAFFIC.items_of_seller(SELLER)
        ]
    expected = [
        sum(column) for column in zip(*(totals_of(s) for s in items), strict=True)
    ]
    assert seller["user_id"] == SELLER
    assert totals_of(seller) == expected


async def test_unknown_seller_404() -> None:
    async with serve() as api:
        reply = await api.get(
            "/users/123/contacts/questions/time_window", window(2, "hour")
        )
    assert reply.status == 404


async def test_range_total_echoes_dates() -> None:
    params = {
        "date_from": "2026-11-01T00:00:00.000-00:00",
        "date_to": "2026-11-30T23:59:59.999+00:00",
    }
    async with serve() as api:
        body = (await api.get(f"/items/{ITEM}/contacts/phone_views", params)).json()
    assert body["date_from"] == params["date_from"]
    assert body["date_to"] == params["date_to"]
    assert body["item_id"] == ITEM


async def test_range_total_matches_traffic() -> None:
    params = {"date_from": "2026-11-01T00:00:00Z", "date_to": "2026-11-30T23:00:00Z"}
    async with serve() as api:
        body = (await api.get(f"/items/{ITEM}/contacts/phone_views", params)).json()
    expected = TRAFFIC.range_total(
        ITEM, "phone_views", hour(params["date_from"]), hour(params["date_to"]), NOW
    )
    assert body["total"] == expected


async def test_user_range_total_sums_items() -> None:
    params = {"date_from": "2026-11-01T00:00:00Z", "date_to": "2026-11-03T00:00:00Z"}
    async with serve() as api:
        body = (await api.get(f"/users/{SELLER}/contacts/questions", params)).json()
        items = [
            (await api.get(f"/items/{item_id}/contacts/questions", params)).json()
            for item_id in TRAFFIC.items_of_seller(SELLER)
        ]
    assert body["user_id"] == SELLER
    assert body["total"] == sum(item["total"] for item in items)


async def test_range_total_missing_date_400() -> None:
    async with serve() as api:
        reply = await api.get(
            f"/items/{ITEM}/contacts/questions", {"date_from": "2026-11-01T00:00:00Z"}
        )
    assert reply.status == 400


async def test_range_total_reversed_dates_400() -> None:
    params = {"date_from": "2026-11-02T00:00:00Z", "date_to": "2026-11-01T00:00:00Z"}
    async with serve() as api:
        reply = await api.get(f"/items/{ITEM}/contacts/questions", params)
    assert reply.status == 400


# Auth


async def test_missing_token_401() -> None:
    async with serve(SandboxSettings(token="sandbox-token")) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 401
    assert reply.json()["error"] == "unauthorized"


async def test_wrong_token_401() -> None:
    async with serve(SandboxSettings(token="sandbox-token")) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"), token="other")
    assert reply.status == 401
    assert reply.json() == {
        "message": "invalid access token",
        "error": "unauthorized",
        "status": 401,
        "cause": [],
    }


async def test_static_token_accepted() -> None:
    async with serve(SandboxSettings(token="sandbox-token")) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"), token="sandbox-token")
    assert reply.status == 200


OAUTH = SandboxSettings(
    client_id="app-1", client_secret="app-secret", refresh_token="TG-initial"
)


def refresh_form(refresh_token: str, secret: str = "app-secret") -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": "app-1",
        "client_secret": secret,
        "refresh_token": refresh_token,
    }


async def test_oauth_refresh_response() -> None:
    async with serve(OAUTH) as api:
        reply = await api.post_form("/oauth/token", refresh_form("TG-initial"))
    body = reply.json()
    assert reply.status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == OAUTH.token_ttl_s
    assert body["scope"] == "offline_access read"
    assert isinstance(body["user_id"], int)
    assert body["refresh_token"] != "TG-initial"


async def test_oauth_rotation_updates_current_token() -> None:
    async with serve(OAUTH) as api:
        first = (await api.post_form("/oauth/token", refresh_form("TG-initial"))).json()
        current = api.sandbox.state.current_refresh_token
        second = await api.post_form(
            "/oauth/token", refresh_form(first["refresh_token"])
        )
    assert current == first["refresh_token"]
    assert second.status == 200


async def test_oauth_reused_refresh_token_invalid_grant() -> None:
    async with serve(OAUTH) as api:
        await api.post_form("/oauth/token", refresh_form("TG-initial"))
        reply = await api.post_form("/oauth/token", refresh_form("TG-initial"))
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_grant"


async def test_oauth_wrong_secret_invalid_client() -> None:
    async with serve(OAUTH) as api:
        reply = await api.post_form(
            "/oauth/token", refresh_form("TG-initial", secret="nope")
        )
    assert reply.status == 401
    assert reply.json()["error"] == "invalid_client"


async def test_oauth_wrong_secret_keeps_refresh_token() -> None:
    async with serve(OAUTH) as api:
        await api.post_form("/oauth/token", refresh_form("TG-initial", secret="nope"))
        reply = await api.post_form("/oauth/token", refresh_form("TG-initial"))
    assert reply.status == 200


async def test_oauth_access_token_accepted() -> None:
    async with serve(OAUTH) as api:
        tokens = (
            await api.post_form("/oauth/token", refresh_form("TG-initial"))
        ).json()
        reply = await api.get(
            HOUR_SERIES, window(2, "hour"), token=tokens["access_token"]
        )
    assert reply.status == 200


async def test_oauth_expired_access_token_401() -> None:
    clock = MutableClock(NOW)
    async with serve(OAUTH, clock=clock) as api:
        tokens = (
            await api.post_form("/oauth/token", refresh_form("TG-initial"))
        ).json()
        clock.now = NOW + timedelta(seconds=OAUTH.token_ttl_s)
        reply = await api.get(
            HOUR_SERIES, window(2, "hour"), token=tokens["access_token"]
        )
    assert reply.status == 401
    assert reply.json()["message"] == "invalid access token"


async def test_oauth_required_without_token_401() -> None:
    async with serve(OAUTH) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 401


# Rate limits


async def test_rate_limit_429_with_retry_after() -> None:
    settings = SandboxSettings(rate=0.5, retry_after_s=3)
    async with serve(settings) as api:
        first = await api.get(HOUR_SERIES, window(2, "hour"))
        second = await api.get(HOUR_SERIES, window(2, "hour"))
    assert first.status == 200
    assert second.status == 429
    assert second.headers["Retry-After"] == "3"
    assert second.json() == {
        "message": "too many requests",
        "error": "too_many_requests",
        "status": 429,
        "cause": [],
    }


async def test_rate_limit_retry_after_zero() -> None:
    settings = SandboxSettings(rate=0.5, retry_after_s=0)
    async with serve(settings) as api:
        await api.get(HOUR_SERIES, window(2, "hour"))
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.headers["Retry-After"] == "0"


async def test_rate_limit_429_without_retry_after() -> None:
    async with serve(SandboxSettings(rate=0.5)) as api:
        await api.get(HOUR_SERIES, window(2, "hour"))
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 429
    assert "Retry-After" not in reply.headers


async def test_rate_limit_refills() -> None:
    async with serve(SandboxSettings(rate=20)) as api:
        statuses = [
            (await api.get(HOUR_SERIES, window(1, "hour"))).status for _ in range(30)
        ]
        await asyncio.sleep(0.2)
        after_pause = await api.get(HOUR_SERIES, window(1, "hour"))
    assert 429 in statuses
    assert after_pause.status == 200


async def test_stats_not_rate_limited() -> None:
    async with serve(SandboxSettings(rate=0.5)) as api:
        await api.get(HOUR_SERIES, window(2, "hour"))
        replies = [await api.get("/_sandbox/stats") for _ in range(3)]
    assert [reply.status for reply in replies] == [200, 200, 200]


# Faults


async def test_fault_500_json() -> None:
    async with serve(SandboxSettings(p500=1.0)) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 500
    assert reply.json()["status"] == 500


async def test_fault_503_json() -> None:
    async with serve(SandboxSettings(p503=1.0)) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 503
    assert reply.json()["error"] == "service_unavailable"


async def test_fault_502_html() -> None:
    async with serve(SandboxSettings(p502=1.0)) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 502
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.body.startswith(b"<html>")


async def test_fault_429_regardless_of_rate() -> None:
    async with serve(SandboxSettings(p429=1.0, retry_after_s=7)) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "7"


async def test_fault_slow_then_normal_response() -> None:
    settings = SandboxSettings(p_slow=1.0, slow_s=0.3)
    async with serve(settings) as api:
        started = time.monotonic()
        reply = await api.get(HOUR_SERIES, window(2, "hour", ending=GUIDE_ENDING))
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3
    assert reply.status == 200
    assert reply.json()["date_to"] == "2014-05-28T04:00:00Z"


async def test_fault_truncate_cuts_body() -> None:
    params = window(2, "hour", ending=GUIDE_ENDING)
    async with serve() as api:
        full = await api.get(HOUR_SERIES, params)
    async with serve(SandboxSettings(p_truncate=1.0)) as api:
        cut = await api.get(HOUR_SERIES, params)
    assert cut.status == 200
    assert cut.body == full.body[: len(full.body) // 2]
    with pytest.raises(orjson.JSONDecodeError):
        cut.json()


async def test_fault_empty_body() -> None:
    async with serve(SandboxSettings(p_empty=1.0)) as api:
        reply = await api.get(HOUR_SERIES, window(2, "hour"))
    assert reply.status == 200
    assert reply.body == b""


async def test_faults_follow_fault_seed() -> None:
    settings = SandboxSettings(p500=0.5, fault_seed=3)
    runs = []
    for _ in range(2):
        async with serve(settings) as api:
            statuses = [
                (await api.get(HOUR_SERIES, window(1, "hour"))).status
                for _ in range(20)
            ]
        runs.append(statuses)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


# Stats


async def test_stats_count_requests_and_faults() -> None:
    async with serve(SandboxSettings(p503=1.0)) as api:
        await api.get(HOUR_SERIES, window(2, "hour"))
        await api.get(HOUR_SERIES, window(2, "hour"))
        stats = (await api.get("/_sandbox/stats")).json()
    assert stats["requests"] == 2
    assert stats["by_status"] == {"503": 2}
    assert stats["faults"] == {"503": 2}


async def test_stats_count_ids_and_429() -> None:
    settings = SandboxSettings(rate=0.5)
    async with serve(settings) as api:
        await api.get(MULTI_SERIES, window(2, "hour", ids=f"{ITEM},{OTHER_ITEM}"))
        await api.get(HOUR_SERIES, window(2, "hour"))
        stats = api.sandbox.stats.as_dict()
    assert stats["ids_served"] == 2
    assert stats["too_many_requests"] == 1
