"""Bucket arithmetic: hours and days as integer indexes, and windows of them.

An hour bucket is indexed by its start in whole hours since the Unix epoch (UTC).
A day bucket is indexed by the proleptic ordinal of its calendar date, the date
as the API writes it in the label, whatever the label's time and offset.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

SECONDS_PER_HOUR = 3600
METRICS = ("questions", "phone_views")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unit(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"


def utc_now() -> datetime:
    return datetime.now(UTC)


def hour_index(instant: datetime) -> int:
    """Return the index of the hour that contains an aware instant."""
    return int(instant.timestamp()) // SECONDS_PER_HOUR


def hour_start(index: int) -> datetime:
    return EPOCH + timedelta(hours=index)


def day_index(day: date) -> int:
    return day.toordinal()


def day_of(index: int) -> date:
    return date.fromordinal(index)


def local_midnight(day: date, zone: tzinfo) -> datetime:
    """Return the instant at which a calendar day starts in a time zone, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def current_bucket(unit: Unit, now: datetime, zone: tzinfo) -> int:
    """Return the index of the bucket that contains `now` (still filling up)."""
    if unit is Unit.HOUR:
        return hour_index(now)
    return day_index(now.astimezone(zone).date())


def bucket_end(unit: Unit, index: int, zone: tzinfo) -> datetime:
    """Return the instant at which a bucket stops collecting contacts."""
    if unit is Unit.HOUR:
        return hour_start(index + 1)
    return local_midnight(day_of(index + 1), zone)


def bucket_start(unit: Unit, index: int, zone: tzinfo) -> datetime:
    if unit is Unit.HOUR:
        return hour_start(index)
    return local_midnight(day_of(index), zone)


def settled_before(
    unit: Unit, fetched_at: datetime, settle_delay: timedelta, zone: tzinfo
) -> int:
    """Return the first bucket index that was not yet settled at `fetched_at`.

    A bucket is settled once `settle_delay` has passed since its end: the API
    keeps revising recent counts, so younger values may still change.
    """
    return current_bucket(unit, fetched_at - settle_delay, zone)


@dataclass(frozen=True)
class Window:
    """A run of consecutive buckets fetched by one request: `first` .. `last_index`."""

    unit: Unit
    first: int
    size: int

    @property
    def last_index(self) -> int:
        return self.first + self.size - 1

    @property
    def end(self) -> int:
        """Index one past the newest bucket."""
        return self.first + self.size

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.first <= index < self.end

    def ending_param(self, zone: tzinfo) -> str:
        """Format the API's `ending` so that the newest bucket is `last_index`.

        The API floors `ending` to the start of its bucket. For days the server
        floors in the site's own time zone, so the request names local noon,
        which lands in the intended calendar day for any offset from -12 to +11.
        """
        if self.unit is Unit.HOUR:
            return hour_start(self.last_index).isoformat(timespec="seconds")
        day = day_of(self.last_index)
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone)
        return noon.isoformat(timespec="seconds")


def split_windows(unit: Unit, first: int, end: int, max_size: int) -> Iterator[Window]:
    """Cover buckets `first` .. `end - 1` with windows of `max_size` or fewer."""
    start = first
    while start < end:
        size = min(max_size, end - start)
        yield Window(unit, start, size)
        start += size
