"""Synthetic ground truth: items, sellers and their contact counts per hour and day."""

from datetime import date, datetime, timedelta

from harvester.sandbox.counts import HOURS_PER_DAY, CountModel
from harvester.sandbox.isotime import (
    HOUR,
    ceil_hour,
    floor_hour,
    local_day_of,
    local_day_start,
    require_utc,
)

METRICS = ("questions", "phone_views")
FIRST_ITEM_NUMBER = 600_000_000
FIRST_SELLER_NUMBER = 52_366_166
ITEM_PREFIX = "MLA"
MAX_ITEMS = 1 << 32


class Traffic:
    """Deterministic contact counts for `items` items spread over `sellers` sellers.

    Item i (0-based) is `MLA{600000000 + i}` and belongs to seller
    `52366166 + i % sellers`. Hour buckets are UTC hours, and days are local
    calendar days at `day_offset_hours` from UTC.
    """

    def __init__(
        self,
        seed: int,
        items: int,
        sellers: int = 10,
        revision: int = 0,
        revision_share: float = 0.1,
        day_offset_hours: int = 0,
    ) -> None:
        _validate_arguments(items, sellers, revision, revision_share, day_offset_hours)
        self.seed = seed
        self.items = items
        self.sellers = sellers
        self.revision = revision
        self.revision_share = revision_share
        self.day_offset_hours = day_offset_hours
        self._model = CountModel(seed, revision, revision_share, day_offset_hours)

    def __repr__(self) -> str:
        return (
            f"Traffic(seed={self.seed}, items={self.items}, sellers={self.sellers}, "
            f"revision={self.revision}, day_offset_hours={self.day_offset_hours})"
        )

    # Items and sellers

    def item_ids(self) -> list[str]:
        return [_item_id(index) for index in range(self.items)]

    def is_known(self, item_id: str) -> bool:
        return self._item_index_or_none(item_id) is not None

    def seller_of(self, item_id: str) -> str:
        index = self._item_index(item_id)
        return str(FIRST_SELLER_NUMBER + index % self.sellers)

    def seller_ids(self) -> list[str]:
        return [str(FIRST_SELLER_NUMBER + k) for k in range(self.sellers)]

    def is_known_seller(self, seller_id: str) -> bool:
        return self._seller_index_or_none(seller_id) is not None

    def items_of_seller(self, seller_id: str) -> list[str]:
        """Return the seller's item ids, or raise KeyError for an unknown seller."""
        seller_index = self._seller_index_or_none(seller_id)
        if seller_index is None:
            raise KeyError(f"unknown seller id: {seller_id}")
        indexes = range(seller_index, self.items, self.sellers)
        return [_item_id(index) for index in indexes]

    # Local days

    def local_day_of(self, instant: datetime) -> date:
        return local_day_of(instant, self.day_offset_hours)

    def local_day_start(self, day: date) -> datetime:
        return local_day_start(day, self.day_offset_hours)

    # Final counts

    def hour_count(self, item_id: str, metric: str, hour_start: datetime) -> int:
        """Return the final count of the UTC hour that starts at `hour_start`."""
        return self.hour_counts(item_id, metric, hour_start, 1)[0]

    def hour_counts(
        self, item_id: str, metric: str, first_hour: datetime, hours: int
    ) -> list[int]:
        """Return the final counts of `hours` consecutive UTC hours from `first_hour`.

        Raises ValueError unless `first_hour` is an aware UTC hour start, and
        KeyError for an unknown item or metric.
        """
        _require_hour_start(first_hour)
        if hours < 0:
            raise ValueError(f"hours must be non-negative, got {hours}")
        item_index = self._item_index(item_id)
        metric_index = _metric_index(metric)
        utc_start = floor_hour(first_hour)
        day_ordinal = utc_start.toordinal()
        position = utc_start.hour
        counts: list[int] = []
        while len(counts) < hours:
            day = self._model.day_counts(item_index, metric_index, day_ordinal)
            counts.extend(day[position : position + hours - len(counts)])
            day_ordinal += 1
            position = 0
        return counts

    def day_count(self, item_id: str, metric: str, day: date) -> int:
        """Return the final count of the local calendar day."""
        start = self.local_day_start(day)
        return sum(self.hour_counts(item_id, metric, start, HOURS_PER_DAY))

    # Values as seen at `now`, with the current bucket still filling

    def hour_value(
        self, item_id: str, metric: str, hour_start: datetime, now: datetime
    ) -> int:
        """Return the hour's count as seen at `now`, or 0 before the hour starts."""
        return self.hour_values(item_id, metric, hour_start, 1, now)[0]

    def hour_values(
        self, item_id: str, metric: str, first_hour: datetime, hours: int, now: datetime
    ) -> list[int]:
        """Return `hours` consecutive hour values from `first_hour` as seen at `now`."""
        counts = self.hour_counts(item_id, metric, first_hour, hours)
        return _values_at(counts, first_hour, now)

    def day_value(self, item_id: str, metric: str, day: date, now: datetime) -> int:
        """Return the local day's sum of hour values as seen at `now`."""
        start = self.local_day_start(day)
        return sum(self.hour_values(item_id, metric, start, HOURS_PER_DAY, now))

    def range_total(
        self, item_id: str, metric: str, start: datetime, end: datetime, now: datetime
    ) -> int:
        """Return the sum of hour values whose hour start lies in [start, end]."""
        first_hour, hours = _hours_in_range(start, end)
        if hours == 0:
            return 0
        return sum(self.hour_values(item_id, metric, first_hour, hours, now))

    # Seller sums

    def seller_hour_values(
        self,
        seller_id: str,
        metric: str,
        first_hour: datetime,
        hours: int,
        now: datetime,
    ) -> list[int]:
        """Return the element-wise sum of `hour_values` over the seller's items."""
        totals = [0] * hours
        for item_id in self.items_of_seller(seller_id):
            values = self.hour_values(item_id, metric, first_hour, hours, now)
            totals = [a + b for a, b in zip(totals, values, strict=True)]
        return totals

    def seller_day_value(
        self, seller_id: str, metric: str, day: date, now: datetime
    ) -> int:
        start = self.local_day_start(day)
        return sum(
            self.seller_hour_values(seller_id, metric, start, HOURS_PER_DAY, now)
        )

    def seller_range_total(
        self,
        seller_id: str,
        metric: str,
        start: datetime,
        end: datetime,
        now: datetime,
    ) -> int:
        first_hour, hours = _hours_in_range(start, end)
        if hours == 0:
            return 0
        values = self.seller_hour_values(seller_id, metric, first_hour, hours, now)
        return sum(values)

    # Id parsing

    def _item_index(self, item_id: str) -> int:
        index = self._item_index_or_none(item_id)
        if index is None:
            raise KeyError(f"unknown item id: {item_id}")
        return index

    def _item_index_or_none(self, item_id: str) -> int | None:
        digits = item_id.removeprefix(ITEM_PREFIX)
        if digits == item_id or not digits.isdecimal():
            return None
        index = int(digits) - FIRST_ITEM_NUMBER
        if not 0 <= index < self.items or _item_id(index) != item_id:
            return None
        return index

    def _seller_index_or_none(self, seller_id: str) -> int | None:
        if not seller_id.isdecimal():
            return None
        index = int(seller_id) - FIRST_SELLER_NUMBER
        if not 0 <= index < self.sellers or str(int(seller_id)) != seller_id:
            return None
        return index


def _item_id(index: int) -> str:
    return f"{ITEM_PREFIX}{FIRST_ITEM_NUMBER + index}"


def _metric_index(metric: str) -> int:
    if metric not in METRICS:
        raise KeyError(f"unknown metric: {metric}")
    return METRICS.index(metric)


def _require_hour_start(instant: datetime) -> None:
    require_utc(instant)
    if floor_hour(instant) != instant:
        raise ValueError(f"not the start of a UTC hour: {instant.isoformat()}")


def _values_at(counts: list[int], first_hour: datetime, now: datetime) -> list[int]:
    """Scale the counts to what is visible at `now`.

    Hours that start at or after `now` are 0, and the hour that contains `now`
    shows `count * elapsed_seconds // 3600`.
    """
    require_utc(now)
    elapsed = now - first_hour
    full_hours = max(0, min(len(counts), elapsed // HOUR))
    values = counts[:full_hours] + [0] * (len(counts) - full_hours)
    if full_hours < len(counts) and elapsed > timedelta(0):
        partial_seconds = int((elapsed - full_hours * HOUR).total_seconds())
        values[full_hours] = counts[full_hours] * partial_seconds // 3600
    return values


def _hours_in_range(start: datetime, end: datetime) -> tuple[datetime, int]:
    """Return the first hour start in [start, end] and how many hour starts it holds."""
    first_hour = ceil_hour(start)
    last_hour = floor_hour(end)
    if last_hour < first_hour:
        return first_hour, 0
    return first_hour, (last_hour - first_hour) // HOUR + 1


def _validate_arguments(
    items: int,
    sellers: int,
    revision: int,
    revision_share: float,
    day_offset_hours: int,
) -> None:
    if not 0 <= items < MAX_ITEMS:
        raise ValueError(f"items must be in [0, {MAX_ITEMS}), got {items}")
    if sellers < 1:
        raise ValueError(f"sellers must be at least 1, got {sellers}")
    if revision < 0:
        raise ValueError(f"revision must be non-negative, got {revision}")
    if not 0.0 <= revision_share <= 1.0:
        raise ValueError(f"revision_share must be in [0, 1], got {revision_share}")
    if not -23 <= day_offset_hours <= 23:
        raise ValueError(
            f"day_offset_hours must be in [-23, 23], got {day_offset_hours}"
        )
