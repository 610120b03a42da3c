"""Series objects: bucket values of a window, rendered with the configured quirks."""

import functools
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harvester.sandbox.settings import DayLabel
from harvester.sandbox.traffic import Traffic
from harvester.sandbox.window import Unit, Window, bucket_label


@dataclass(frozen=True)
class SeriesStyle:
    """Rendering options of a series: day labels, order and the response quirks."""

    day_label: DayLabel
    day_offset_hours: int
    sparse: bool
    last_as_string: bool
    descending: bool
    shuffle_rng: random.Random | None


def item_bucket_values(
    traffic: Traffic, item_id: str, metric: str, window: Window, now: datetime
) -> list[int]:
    hours = traffic.hour_values(item_id, metric, window.date_from, window.hours, now)
    return _sum_per_bucket(hours, window.hours_per_bucket)


def seller_bucket_values(
    traffic: Traffic, seller_id: str, metric: str, window: Window, now: datetime
) -> list[int]:
    hours = traffic.seller_hour_values(
        seller_id, metric, window.date_from, window.hours, now
    )
    return _sum_per_bucket(hours, window.hours_per_bucket)


def _sum_per_bucket(hour_values: list[int], hours_per_bucket: int) -> list[int]:
    if hours_per_bucket == 1:
        return hour_values
    return [
        sum(hour_values[start : start + hours_per_bucket])
        for start in range(0, len(hour_values), hours_per_bucket)
    ]


def render_series(
    owner_key: str,
    owner_id: str,
    window: Window,
    values: list[int],
    style: SeriesStyle,
) -> dict[str, Any]:
    """Build one series object keyed by `owner_key` (item_id or user_id).

    The total is the sum of every bucket in the window, including zero buckets
    that the sparse quirk leaves out of `results`.
    """
    return {
        owner_key: owner_id,
        "total": sum(values),
        "date_from": _label(window.date_from, window, style),
        "date_to": _label(window.date_to, window, style),
        "last": str(window.last) if style.last_as_string else window.last,
        "unit": window.unit,
        "results": _results(window, values, style),
    }


def _results(window: Window, values: list[int], style: SeriesStyle) -> list[Any]:
    results = [
        {"date": _label(start, window, style), "total": value}
        for start, value in zip(window.bucket_starts, values, strict=True)
        if value != 0 or not style.sparse
    ]
    if style.descending:
        results.reverse()
    if style.shuffle_rng is not None:
        style.shuffle_rng.shuffle(results)
    return results


@functools.lru_cache(maxsize=65536)
def _cached_label(
    instant: datetime, unit: Unit, day_label: DayLabel, day_offset_hours: int
) -> str:
    return bucket_label(instant, unit, day_label, day_offset_hours)


def _label(instant: datetime, window: Window, style: SeriesStyle) -> str:
    # A multi-id response labels the same buckets once per item.
    return _cached_label(instant, window.unit, style.day_label, style.day_offset_hours)
