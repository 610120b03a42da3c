"""Parsing the date range of a backfill from the command line."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

from harvester.errors import ConfigError

# Classified contacts are a web-era record; this also keeps bucket arithmetic
# far from the calendar's first day.
EARLIEST_YEAR = 1990


def parse_bound(text: str, zone: tzinfo, option: str, is_end: bool) -> datetime:
    """Parse `--from`/`--to`: a bare date is a whole day in `zone`, inclusive.

    A datetime must carry an offset (`Z`, `-03:00`), so that no bound depends on
    the machine's local time.
    """
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_instant(text, option)
    if is_end:
        if day == date.max:
            raise ConfigError(f"{option} {text} is too far in the future")
        day += timedelta(days=1)
    return datetime.combine(day, time(), tzinfo=zone)


def parse_instant(text: str, option: str) -> datetime:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"invalid {option} {text!r}: use a date (2026-11-30) or a datetime "
            "with an offset (2026-11-30T06:00:00-03:00)"
        ) from None
    if instant.tzinfo is None:
        raise ConfigError(
            f"{option} {text!r} has no UTC offset: "
            f"add one, e.g. {text}Z or {text}-03:00"
        )
    return instant


def parse_range(
    from_text: str, to_text: str, zone: tzinfo, now: datetime
) -> tuple[datetime, datetime]:
    """Return [start, end) of a backfill; raise ConfigError for an unusable range."""
    start = parse_bound(from_text, zone, "--from", is_end=False)
    if start.year < EARLIEST_YEAR:
        raise ConfigError(
            f"--from {from_text} is before {EARLIEST_YEAR}: no listing has "
            "contacts that old, so start the range later"
        )
    end = parse_bound(to_text, zone, "--to", is_end=True)
    if end <= start:
        raise ConfigError(
            f"--to {to_text} is not after --from {from_text}: "
            "swap them or widen the range"
        )
    if start > now:
        raise ConfigError(
            f"--from {from_text} is in the future: no contacts exist there yet"
        )
    return start, end
