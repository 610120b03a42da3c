"""Parsing and validation of query parameters; each failure raises a 400 ApiError."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from harvester.sandbox.isotime import DAY, parse_instant
from harvester.sandbox.responses import bad_request
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.window import UNITS, Unit

ITEM_ID_PATTERN = re.compile(r"[A-Z]{3}\d+")
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class SeriesQuery:
    """The validated parameters of a time_window request."""

    unit: Unit
    last: int
    ending: datetime
    descending: bool


@dataclass(frozen=True)
class RangeQuery:
    """The validated parameters of a range-total request, with the raw strings."""

    date_from_text: str
    date_to_text: str
    start: datetime
    end: datetime


def parse_series_query(
    query: Mapping[str, str],
    settings: SandboxSettings,
    day_offset_hours: int,
    now: datetime,
) -> SeriesQuery:
    unit = _parse_unit(query.get("unit"))
    last = _parse_last(query.get("last"), settings.max_last)
    ending = now
    if "ending" in query:
        ending = _parse_datetime("ending", query["ending"], day_offset_hours)
    descending = _parse_order(query.get("order", "asc")) == "desc"
    return SeriesQuery(unit, last, ending, descending)


def parse_range_query(
    query: Mapping[str, str], settings: SandboxSettings, day_offset_hours: int
) -> RangeQuery:
    from_text = _require(query, "date_from")
    to_text = _require(query, "date_to")
    start = _parse_datetime("date_from", from_text, day_offset_hours)
    end = _parse_datetime("date_to", to_text, day_offset_hours)
    if end < start:
        raise bad_request(f"date_to {to_text} is earlier than date_from {from_text}")
    if end - start > settings.max_range_days * DAY:
        raise bad_request(
            f"the range from date_from to date_to must not exceed "
            f"{settings.max_range_days} days"
        )
    return RangeQuery(from_text, to_text, start, end)


def parse_ids(raw: str, max_ids: int) -> list[str]:
    """Split a comma-separated `ids` value, rejecting empty entries and too many ids."""
    ids = [part.strip() for part in raw.split(",")]
    if ids == [""]:
        raise bad_request("ids is empty: list one or more item ids, comma-separated")
    if "" in ids:
        raise bad_request(f"ids contains an empty item id: {raw!r}")
    if len(ids) > max_ids:
        raise bad_request(f"maximum amount of items to query is {max_ids}")
    return ids


def is_well_formed_item_id(item_id: str) -> bool:
    return ITEM_ID_PATTERN.fullmatch(item_id) is not None


def _require(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if value is None:
        raise bad_request(f"missing required parameter {name}")
    return value


def _parse_unit(raw: str | None) -> Unit:
    for unit in UNITS:
        if raw == unit:
            return unit
    if raw is None:
        raise bad_request("missing required parameter unit: use hour or day")
    raise bad_request(f"invalid unit {raw!r}: use hour or day")


def _parse_last(raw: str | None, max_last: int) -> int:
    if raw is None:
        raise bad_request("missing required parameter last")
    if not (raw.isascii() and raw.isdecimal()) or int(raw) < 1:
        raise bad_request(f"invalid last {raw!r}: must be a positive integer")
    last = int(raw)
    if last > max_last:
        raise bad_request(f"invalid last {last}: the maximum is {max_last}")
    return last


def _parse_order(raw: str) -> str:
    if raw not in ORDERS:
        raise bad_request(f"invalid order {raw!r}: use asc or desc")
    return raw


def _parse_datetime(name: str, raw: str, day_offset_hours: int) -> datetime:
    try:
        return parse_instant(raw, day_offset_hours)
    except (ValueError, OverflowError):
        raise bad_request(
            f"invalid {name} {raw!r}: use ISO 8601 like 2014-05-28T00:00:00.000-03:00"
        ) from None
