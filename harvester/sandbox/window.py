"""Time windows of series requests: bucket starts, ends and labels."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from harvester.sandbox.isotime import (
    DAY,
    HOUR,
    floor_hour,
    format_day,
    format_utc,
    local_day_of,
    local_day_start,
)
from harvester.sandbox.settings import DayLabel

Unit = Literal["hour", "day"]
UNITS: tuple[Unit, ...] = ("hour", "day")
HOURS_PER_UNIT = {"hour": 1, "day": 24}


@dataclass(frozen=True)
class Window:
    """The `last` buckets of `unit` that end at `date_to`, plus any extra bucket.

    `bucket_starts` runs from `date_from` upward. With the extra bucket it also
    contains the bucket that starts at `date_to`.
    """

    unit: Unit
    last: int
    date_from: datetime
    date_to: datetime
    bucket_starts: tuple[datetime, ...]

    @property
    def hours_per_bucket(self) -> int:
        return HOURS_PER_UNIT[self.unit]

    @property
    def hours(self) -> int:
        return len(self.bucket_starts) * self.hours_per_bucket


def build_window(
    unit: Unit,
    last: int,
    ending: datetime,
    day_offset_hours: int,
    extra_bucket: bool,
) -> Window:
    """Build the window whose newest bucket contains `ending`.

    Hour buckets are UTC hours. Day buckets are local days at
    `day_offset_hours` from UTC, so each one starts at local midnight.
    Raises OverflowError when the window leaves the datetime range.
    """
    step = HOUR if unit == "hour" else DAY
    newest_start = _bucket_start(unit, ending, day_offset_hours)
    date_to = newest_start + step
    date_from = date_to - last * step
    count = last + 1 if extra_bucket else last
    starts = tuple(date_from + index * step for index in range(count))
    return Window(unit, last, date_from, date_to, starts)


def _bucket_start(unit: Unit, instant: datetime, day_offset_hours: int) -> datetime:
    if unit == "hour":
        return floor_hour(instant)
    day = local_day_of(instant, day_offset_hours)
    return local_day_start(day, day_offset_hours)


def bucket_label(
    start: datetime, unit: Unit, day_label: DayLabel, day_offset_hours: int
) -> str:
    """Format a bucket start or window end.

    Hours are labelled by their UTC start. Days are labelled either by their
    local calendar date at midnight `Z` ("utc") or by the UTC instant of local
    midnight ("local").
    """
    if unit == "hour" or day_label == "local":
        return format_utc(start)
    local_date = (start + timedelta(hours=day_offset_hours)).date()
    return format_day(local_date)
