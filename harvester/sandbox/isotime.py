"""UTC instants, hour and local-day arithmetic, and ISO 8601 parsing and labels."""

import re
from datetime import UTC, date, datetime, time, timedelta, timezone

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# A date and time with optional fraction and an optional `Z` or `±HH:MM` offset.
# A space in the sign position is read as `+`, because an unencoded `+` in a query
# string arrives as a space.
_INSTANT = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>Z|[+\- ]\d{2}:\d{2})?"
)


def parse_instant(text: str, default_offset_hours: int) -> datetime:
    """Parse an ISO 8601 date-time into an aware UTC datetime.

    A value without an offset is read at `default_offset_hours` from UTC.
    Raises ValueError when the text is not a date-time of that form.
    """
    match = _INSTANT.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid ISO 8601 date-time: {text!r}")
    naive = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    micros = _fraction_to_micros(match["fraction"])
    zone = _parse_offset(match["offset"], default_offset_hours)
    local = naive.replace(microsecond=micros, tzinfo=zone)
    return local.astimezone(UTC)


def _fraction_to_micros(fraction: str | None) -> int:
    if fraction is None:
        return 0
    return int(fraction[:6].ljust(6, "0"))


def _parse_offset(offset: str | None, default_offset_hours: int) -> timezone:
    if offset is None:
        return timezone(timedelta(hours=default_offset_hours))
    if offset == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"invalid UTC offset: {offset!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def require_utc(instant: datetime) -> None:
    """Raise ValueError unless the datetime is timezone-aware."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware: {instant!r}")


def floor_hour(instant: datetime) -> datetime:
    """Return the start of the UTC hour that contains the instant."""
    require_utc(instant)
    utc = instant.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    """Return the first UTC hour start at or after the instant."""
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def local_day_of(instant: datetime, offset_hours: int) -> date:
    """Return the calendar date of the instant at `offset_hours` from UTC."""
    require_utc(instant)
    utc = instant.astimezone(UTC)
    return (utc + timedelta(hours=offset_hours)).date()


def local_day_start(day: date, offset_hours: int) -> datetime:
    """Return the UTC instant of local midnight that starts `day`."""
    midnight = datetime.combine(day, time(0), tzinfo=UTC)
    return midnight - timedelta(hours=offset_hours)


def format_utc(instant: datetime) -> str:
    """Format an instant as `YYYY-MM-DDTHH:MM:SSZ` in UTC, without a fraction."""
    utc = instant.astimezone(UTC)
    return f"{utc.date().isoformat()}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"


def format_day(day: date) -> str:
    """Format a calendar date as `YYYY-MM-DDT00:00:00Z`."""
    return f"{day.isoformat()}T00:00:00Z"
