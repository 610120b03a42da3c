"""Planning: which buckets each item needs, grouped into batches of ids."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from harvester.buckets import Unit, current_bucket, day_index, hour_index
from harvester.config import HarvestSettings

Range = tuple[datetime, datetime]


@dataclass(frozen=True)
class Stream:
    """Buckets `first` .. `end - 1` of one metric and unit for a batch of items.

    A stream's windows are fetched oldest first, so that each committed window
    extends the items' progress without gaps. A harvest stream records settled
    history in harvest_progress; a backfill stream records how far it got in
    the range `backfill_range`. Only a window starting at `create_from` may
    start an item's progress; later windows only extend it.
    """

    metric: str
    unit: Unit
    ids: tuple[str, ...]
    first: int
    end: int
    create_from: int
    backfill_range: Range | None = None


def batches(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[start : start + size]) for start in range(0, len(ids), size)]


def plan_streams(
    metric: str,
    unit: Unit,
    starts: Mapping[str, int],
    end: int,
    batch_size: int,
    backfill_range: Range | None = None,
    range_first: int | None = None,
) -> list[Stream]:
    """Group items that start at the same bucket, then cut each group into batches.

    `range_first` is the backfill range's first bucket; harvest streams leave
    it None, so that each starts its items' progress at its own first bucket.
    """
    groups: dict[int, list[str]] = defaultdict(list)
    for item_id, first in starts.items():
        if first < end:
            groups[first].append(item_id)
    streams = []
    for first, ids in sorted(groups.items()):
        create_from = first if range_first is None else range_first
        for batch in batches(sorted(ids), batch_size):
            stream = Stream(
                metric, unit, tuple(batch), first, end, create_from, backfill_range
            )
            streams.append(stream)
    return streams


def harvest_starts(
    unit: Unit,
    ids: Sequence[str],
    progress: Mapping[str, int],
    now: datetime,
    settings: HarvestSettings,
) -> dict[str, int]:
    """Return each item's first bucket for an incremental harvest.

    That is the first bucket not yet settled in the store, or the start of the
    lookback for a new item, and never later than the trailing re-read window.
    """
    current = current_bucket(unit, now, settings.zone)
    if unit is Unit.HOUR:
        reread_start = current - settings.reread_hours
        lookback_start = current - settings.lookback_days * 24
    else:
        reread_start = current - math.ceil(settings.reread_hours / 24)
        lookback_start = current - settings.lookback_days
    return {
        item_id: min(progress.get(item_id, lookback_start), reread_start)
        for item_id in ids
    }


def backfill_bounds(
    unit: Unit, range_from: datetime, range_to: datetime, now: datetime, zone: tzinfo
) -> tuple[int, int]:
    """Return the first and one-past-last bucket of [range_from, range_to).

    Hours are those that overlap the range. Days are the local calendar days
    from the one containing `range_from` to the one containing the range's last
    instant. Nothing past the bucket that contains `now` is requested.
    """
    newest = current_bucket(unit, now, zone)
    last_instant = range_to - timedelta(microseconds=1)
    if unit is Unit.HOUR:
        first, last = hour_index(range_from), hour_index(last_instant)
    else:
        first = day_index(range_from.astimezone(zone).date())
        last = day_index(last_instant.astimezone(zone).date())
    return first, min(last, newest) + 1
