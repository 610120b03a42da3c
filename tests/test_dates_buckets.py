"""Backfill ranges, bucket arithmetic, planning starts and the rate limiter."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

import pytest

from harvester.buckets import (
    Unit,
    Window,
    bucket_end,
    current_bucket,
    day_index,
    hour_index,
    settled_before,
    split_windows,
)
from harvester.config import HarvestSettings, parse_time_zone
from harvester.dates import parse_range
from harvester.errors import ConfigError
from harvester.planner import backfill_bounds, harvest_starts
from harvester.ratelimit import RateLimiter

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
MINUS_3 = timezone(-timedelta(hours=3))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# parse_range


def test_range_bare_dates_utc() -> None:
    start, end = parse_range("2026-11-01", "2026-11-03", UTC, NOW)

    assert start == utc(2026, 11, 1)
    assert end == utc(2026, 11, 4)


def test_range_bare_dates_zone() -> None:
    zone = parse_time_zone("UTC-03:00")

    start, end = parse_range("2026-11-01", "2026-11-03", zone, NOW)

    assert start == utc(2026, 11, 1, 3)
    assert end == utc(2026, 11, 4, 3)
    assert start.utcoffset() == -timedelta(hours=3)


def test_range_single_day() -> None:
    start, end = parse_range("2026-11-20", "2026-11-20", UTC, NOW)

    assert start == utc(2026, 11, 20)
    assert end == utc(2026, 11, 21)


def test_range_datetimes_with_offset() -> None:
    start, end = parse_range(
        "2026-11-01T06:00:00-03:00", "2026-11-02T00:00:00Z", MINUS_3, NOW
    )

    assert start == utc(2026, 11, 1, 9)
    # A datetime --to is the exclusive end itself, not the end of its day.
    assert end == utc(2026, 11, 2)


def test_range_date_and_datetime_mixed() -> None:
    start, end = parse_range("2026-11-01", "2026-11-01T12:00:00+00:00", MINUS_3, NOW)

    assert start == utc(2026, 11, 1, 3)
    assert end == utc(2026, 11, 1, 12)


@pytest.mark.parametrize(
    ("from_text", "to_text", "option", "text"),
    [
        ("2026-11-01T06:00:00", "2026-11-03", "--from", "2026-11-01T06:00:00"),
        ("2026-11-01", "2026-11-03T06:00", "--to", "2026-11-03T06:00"),
    ],
)
def test_range_naive_datetime_rejected(
    from_text: str, to_text: str, option: str, text: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_range(from_text, to_text, UTC, NOW)

    message = str(raised.value)
    assert f"{option} {text!r} has no UTC offset" in message
    assert f"{text}Z" in message
    assert f"{text}-03:00" in message


@pytest.mark.parametrize(
    ("from_text", "to_text"),
    [
        ("2026-11-05", "2026-11-03"),
        ("2026-11-03T10:00:00Z", "2026-11-03T10:00:00Z"),
        ("2026-11-03T10:00:00Z", "2026-11-03T09:00:00Z"),
    ],
)
def test_range_inverted_rejected(from_text: str, to_text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_range(from_text, to_text, UTC, NOW)

    message = str(raised.value)
    assert f"--to {to_text} is not after --from {from_text}" in message
    assert "swap them" in message


def test_range_from_future_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_range("2026-11-21", "2026-11-22", UTC, NOW)

    message = str(raised.value)
    assert "--from 2026-11-21 is in the future" in message


def test_range_from_today_local_accepted() -> None:
    # 15:30 UTC on 20 November is 04:30 on 21 November at UTC+13:00.
    zone = timezone(timedelta(hours=13))

    start, end = parse_range("2026-11-21", "2026-11-21", zone, NOW)

    assert start == utc(2026, 11, 20, 11)
    assert end == utc(2026, 11, 21, 11)


@pytest.mark.parametrize(
    ("from_text", "to_text", "option", "text"),
    [
        ("yesterday", "2026-11-03", "--from", "yesterday"),
        ("2026-11-01", "2026-13-01", "--to", "2026-13-01"),
        ("2026-11-01", "", "--to", ""),
    ],
)
def test_range_unparseable_rejected(
    from_text: str, to_text: str, option: str, text: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_range(from_text, to_text, UTC, NOW)

    message = str(raised.value)
    assert f"invalid {option} {text!r}" in message
    assert "2026-11-30T06:00:00-03:00" in message


def test_range_last_date_no_overflow() -> None:
    try:
        start, end = parse_range("2026-11-01", "9999-12-31", UTC, NOW)
    except ConfigError as error:
        assert "--to" in str(error)
    else:
        assert end > start


# Window.ending_param


def test_ending_param_hour_utc_offset() -> None:
    window = Window(Unit.HOUR, hour_index(utc(2026, 11, 20, 0)), 24)

    assert window.last_index == hour_index(utc(2026, 11, 20, 23))
    assert window.ending_param(UTC) == "2026-11-20T23:00:00+00:00"
    # Hours ignore the configured zone.
    assert window.ending_param(MINUS_3) == "2026-11-20T23:00:00+00:00"


@pytest.mark.parametrize(
    ("zone", "ending"),
    [
        (UTC, "2026-11-20T12:00:00+00:00"),
        (MINUS_3, "2026-11-20T12:00:00-03:00"),
        (parse_time_zone("America/Caracas"), "2026-11-20T12:00:00-04:00"),
        (timezone(timedelta(hours=11)), "2026-11-20T12:00:00+11:00"),
    ],
    ids=["utc", "minus 3", "caracas", "plus 11"],
)
def test_ending_param_day_local_noon(zone: tzinfo, ending: str) -> None:
    window = Window(Unit.DAY, day_index(date(2026, 11, 14)), 7)

    assert window.ending_param(zone) == ending


def test_window_bounds_and_membership() -> None:
    window = Window(Unit.HOUR, 100, 5)

    assert window.last_index == 104
    assert window.end == 105
    assert 100 in window
    assert 104 in window
    assert 105 not in window
    assert 99 not in window


# split_windows


@pytest.mark.parametrize(
    ("first", "end", "max_size", "sizes"),
    [
        (100, 1545, 720, [720, 720, 5]),
        (100, 820, 720, [720]),
        (100, 101, 720, [1]),
        (7, 12, 1, [1, 1, 1, 1, 1]),
        (100, 100, 720, []),
    ],
)
def test_split_windows_cover_exactly(
    first: int, end: int, max_size: int, sizes: list[int]
) -> None:
    windows = list(split_windows(Unit.HOUR, first, end, max_size))

    assert [window.size for window in windows] == sizes
    assert all(window.unit is Unit.HOUR for window in windows)
    if windows:
        assert windows[0].first == first
        assert windows[-1].end == end
    for earlier, later in itertools.pairwise(windows):
        assert later.first == earlier.end


# harvest_starts


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({}, -72),
        ({"MLA1": -10}, -48),
        ({"MLA1": -48}, -48),
        ({"MLA1": -100}, -100),
        ({"MLA1": 0}, -48),
    ],
    ids=["new", "recent", "at reread", "behind", "current"],
)
def test_harvest_starts_hours(progress: dict[str, int], expected: int) -> None:
    current = hour_index(NOW)
    stored = {item_id: current + offset for item_id, offset in progress.items()}
    settings = HarvestSettings(lookback_days=3, reread_hours=48)

    starts = harvest_starts(Unit.HOUR, ["MLA1"], stored, NOW, settings)

    assert starts == {"MLA1": current + expected}


def test_harvest_starts_days_mixed() -> None:
    settings = HarvestSettings(lookback_days=5, reread_hours=36, time_zone="UTC-03:00")
    # 01:00 UTC on 21 November is still 20 November at UTC-03:00.
    now = utc(2026, 11, 21, 1)
    today = day_index(date(2026, 11, 20))
    progress = {"MLA2": today - 1, "MLA3": today - 9}

    starts = harvest_starts(Unit.DAY, ["MLA1", "MLA2", "MLA3"], progress, now, settings)

    # The re-read of 36 hours rounds up to two whole days.
    assert starts == {"MLA1": today - 5, "MLA2": today - 2, "MLA3": today - 9}


def test_harvest_starts_no_ids() -> None:
    starts = harvest_starts(Unit.HOUR, [], {"MLA1": 5}, NOW, HarvestSettings())

    assert starts == {}


# backfill_bounds


def test_backfill_hours_overlapping() -> None:
    first, end = backfill_bounds(
        Unit.HOUR, utc(2026, 11, 1, 0, 30), utc(2026, 11, 1, 3), NOW, UTC
    )

    assert first == hour_index(utc(2026, 11, 1, 0))
    assert end == hour_index(utc(2026, 11, 1, 3))


def test_backfill_hours_partial_end() -> None:
    first, end = backfill_bounds(
        Unit.HOUR, utc(2026, 11, 1, 0), utc(2026, 11, 1, 3, 1), NOW, UTC
    )

    assert end - first == 4


def test_backfill_hours_clamped_to_now() -> None:
    first, end = backfill_bounds(
        Unit.HOUR, utc(2026, 11, 20, 10), utc(2026, 11, 25), NOW, UTC
    )

    assert first == hour_index(utc(2026, 11, 20, 10))
    assert end == hour_index(utc(2026, 11, 20, 15)) + 1


def test_backfill_days_in_zone() -> None:
    start, end = parse_range("2026-11-01", "2026-11-03", MINUS_3, NOW)

    first, stop = backfill_bounds(Unit.DAY, start, end, NOW, MINUS_3)

    assert first == day_index(date(2026, 11, 1))
    assert stop == day_index(date(2026, 11, 3)) + 1


def test_backfill_days_clamped_to_now() -> None:
    # 01:00 UTC on 21 November is still 20 November at UTC-03:00.
    now = utc(2026, 11, 21, 1)

    first, stop = backfill_bounds(
        Unit.DAY, utc(2026, 11, 18, 3), utc(2026, 11, 30, 3), now, MINUS_3
    )

    assert first == day_index(date(2026, 11, 18))
    assert stop == day_index(date(2026, 11, 20)) + 1


# settled_before


@pytest.mark.parametrize(
    ("fetched_at", "settled_hour"),
    [
        (utc(2026, 11, 20, 15, 30), utc(2026, 11, 18, 15)),
        (utc(2026, 11, 20, 16, 0), utc(2026, 11, 18, 16)),
        (utc(2026, 11, 20, 15, 59, 59), utc(2026, 11, 18, 15)),
    ],
    ids=["mid hour", "on the hour", "just before"],
)
def test_settled_before_hours(fetched_at: datetime, settled_hour: datetime) -> None:
    index = settled_before(Unit.HOUR, fetched_at, timedelta(hours=48), UTC)

    assert index == hour_index(settled_hour)
    # The newest settled hour ended at least 48 hours before the fetch.
    assert fetched_at - bucket_end(Unit.HOUR, index - 1, UTC) >= timedelta(hours=48)
    assert fetched_at - bucket_end(Unit.HOUR, index, UTC) < timedelta(hours=48)


def test_settled_before_days_in_zone() -> None:
    fetched_at = utc(2026, 11, 20, 15, 30)

    index = settled_before(Unit.DAY, fetched_at, timedelta(hours=48), MINUS_3)

    # 18 November at UTC-03:00 ends at 03:00 UTC on the 19th, 36.5 hours before.
    assert index == day_index(date(2026, 11, 18))
    assert bucket_end(Unit.DAY, index - 1, MINUS_3) == utc(2026, 11, 18, 3)


def test_settled_before_zero_delay() -> None:
    index = settled_before(Unit.DAY, NOW, timedelta(0), MINUS_3)

    assert index == current_bucket(Unit.DAY, NOW, MINUS_3)
    assert index == day_index(date(2026, 11, 20))


# RateLimiter on a fake clock


class FakeClock:
    """A monotonic clock that advances when the limiter sleeps or a test moves it."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()
        self.now += seconds


async def acquire_times(
    limiter: RateLimiter, clock: FakeClock, count: int
) -> list[float]:
    times = []
    for _ in range(count):
        await limiter.acquire()
        times.append(clock.now)
    return times


async def test_limiter_spaces_acquisitions() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)

    times = await acquire_times(limiter, clock, 4)

    assert times == pytest.approx([50.0, 50.25, 50.5, 50.75])
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25])


async def test_limiter_idle_gap_no_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    clock.now += 10.0

    times = await acquire_times(limiter, clock, 3)

    # After a long idle gap, the first acquisition returns at once and the rest
    # are spaced.
    assert times == pytest.approx([60.0, 60.5, 61.0])


async def test_limiter_pause_delays_next() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()

    limiter.pause(3.0)
    times = await acquire_times(limiter, clock, 3)

    assert times == pytest.approx([53.0, 53.25, 53.5])
    assert clock.sleeps[0] == pytest.approx(3.0)


async def test_limiter_shorter_pause_ignored() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)

    limiter.pause(5.0)
    limiter.pause(1.0)
    times = await acquire_times(limiter, clock, 1)

    assert times == pytest.approx([55.0])


async def test_limiter_pause_during_sleep() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    # Another task's 429 arrives while this one waits for its slot.
    clock.on_sleep = lambda: limiter.pause(3.0)

    times = await acquire_times(limiter, clock, 2)

    assert times == pytest.approx([53.0, 53.25])
    assert clock.sleeps == pytest.approx([0.25, 2.75, 0.25])


def test_range_before_1990_rejected() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)

    with pytest.raises(ConfigError, match="before 1990"):
        parse_range("0001-01-01", "0001-01-01", UTC, now)
