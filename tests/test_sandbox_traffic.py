"""Tests of the synthetic ground truth behind the sandbox API."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from harvester.sandbox import traffic as traffic_module
from harvester.sandbox.traffic import Traffic

DAY_START = datetime(2026, 12, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def sample_counts(traffic: Traffic, items: int, hours: int) -> list[int]:
    counts: list[int] = []
    for item_id in traffic.item_ids()[:items]:
        counts += traffic.hour_counts(item_id, "questions", DAY_START, hours)
    return counts


def test_item_ids_format() -> None:
    traffic = Traffic(seed=1, items=3)
    assert traffic.item_ids() == ["MLA600000000", "MLA600000001", "MLA600000002"]


def test_is_known_rejects_lookalikes() -> None:
    traffic = Traffic(seed=1, items=3)
    assert traffic.is_known("MLA600000002")
    assert not traffic.is_known("MLA600000003")
    assert not traffic.is_known("MLA0600000001")
    assert not traffic.is_known("MLB600000001")
    assert not traffic.is_known("600000001")


def test_seller_of_cycles_through_sellers() -> None:
    traffic = Traffic(seed=1, items=25, sellers=10)
    assert traffic.seller_of("MLA600000000") == "52366166"
    assert traffic.seller_of("MLA600000013") == "52366169"


def test_items_of_seller_lists_its_items() -> None:
    traffic = Traffic(seed=1, items=25, sellers=10)
    expected = ["MLA600000003", "MLA600000013", "MLA600000023"]
    assert traffic.items_of_seller("52366169") == expected


def test_seller_ids_count() -> None:
    traffic = Traffic(seed=1, items=25, sellers=4)
    assert traffic.seller_ids() == ["52366166", "52366167", "52366168", "52366169"]


def test_unknown_seller_raises() -> None:
    traffic = Traffic(seed=1, items=25, sellers=4)
    with pytest.raises(KeyError):
        traffic.items_of_seller("52366170")


def test_counts_equal_across_instances() -> None:
    first = Traffic(seed=42, items=20)
    second = Traffic(seed=42, items=20)
    assert sample_counts(first, 20, 72) == sample_counts(second, 20, 72)


def test_counts_differ_across_seeds() -> None:
    first = Traffic(seed=42, items=20)
    second = Traffic(seed=43, items=20)
    assert sample_counts(first, 20, 72) != sample_counts(second, 20, 72)


def test_counts_equal_across_processes() -> None:
    script = (
        "from datetime import datetime, timezone\n"
        "from harvester.sandbox.traffic import Traffic\n"
        "t = Traffic(seed=42, items=5)\n"
        "start = datetime(2026, 12, 1, tzinfo=timezone.utc)\n"
        "print([t.hour_counts(i, 'phone_views', start, 48) for i in t.item_ids()])\n"
    )
    project_root = Path(traffic_module.__file__).resolve().parents[2]
    python_path = os.pathsep.join([str(project_root), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": python_path}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    traffic = Traffic(seed=42, items=5)
    expected = [
        traffic.hour_counts(item_id, "phone_views", DAY_START, 48)
        for item_id in traffic.item_ids()
    ]
    assert result.stdout.strip() == str(expected)


def test_counts_mostly_zero() -> None:
    counts = sample_counts(Traffic(seed=3, items=200), 200, 24 * 7)
    zero_share = counts.count(0) / len(counts)
    assert zero_share > 0.5


def test_counts_include_busy_hours() -> None:
    counts = sample_counts(Traffic(seed=3, items=200), 200, 24 * 7)
    assert max(counts) >= 8


def test_counts_capped_at_twenty() -> None:
    counts = sample_counts(Traffic(seed=3, items=200), 200, 24 * 7)
    assert max(counts) <= 20


def test_counts_follow_hour_of_day_shape() -> None:
    counts = sample_counts(Traffic(seed=3, items=200), 200, 24 * 7)
    per_hour = [sum(counts[hour::24]) for hour in range(24)]
    night = sum(per_hour[1:6])
    midday = sum(per_hour[10:15])
    assert midday > 5 * night


def test_hour_counts_match_single_hours_across_days() -> None:
    traffic = Traffic(seed=5, items=3)
    first_hour = DAY_START + 20 * HOUR
    run = traffic.hour_counts("MLA600000001", "questions", first_hour, 30)
    single = [
        traffic.hour_count("MLA600000001", "questions", first_hour + k * HOUR)
        for k in range(30)
    ]
    assert run == single


def test_hour_counts_accept_other_offsets() -> None:
    traffic = Traffic(seed=5, items=3)
    minus_three = timezone(timedelta(hours=-3))
    local = datetime(2026, 11, 30, 21, tzinfo=minus_three)
    assert traffic.hour_counts("MLA600000001", "questions", local, 5) == (
        traffic.hour_counts("MLA600000001", "questions", DAY_START, 5)
    )


def test_hour_counts_reject_unaligned_start() -> None:
    traffic = Traffic(seed=5, items=3)
    with pytest.raises(ValueError):
        traffic.hour_counts("MLA600000001", "questions", DAY_START + HOUR / 2, 2)


def test_hour_counts_reject_naive_start() -> None:
    traffic = Traffic(seed=5, items=3)
    with pytest.raises(ValueError):
        traffic.hour_counts("MLA600000001", "questions", datetime(2026, 12, 1), 2)


def test_hour_counts_reject_unknown_metric() -> None:
    traffic = Traffic(seed=5, items=3)
    with pytest.raises(KeyError):
        traffic.hour_counts("MLA600000001", "visits", DAY_START, 2)


def test_day_count_sums_local_day_hours() -> None:
    traffic = Traffic(seed=9, items=5, day_offset_hours=-4)
    local_midnight = datetime(2026, 12, 1, 4, tzinfo=UTC)
    hours = traffic.hour_counts("MLA600000002", "questions", local_midnight, 24)
    assert traffic.day_count("MLA600000002", "questions", date(2026, 12, 1)) == sum(
        hours
    )


def test_day_value_sums_hour_values() -> None:
    traffic = Traffic(seed=9, items=5, day_offset_hours=-4)
    now = datetime(2026, 12, 1, 17, 25, tzinfo=UTC)
    local_midnight = datetime(2026, 12, 1, 4, tzinfo=UTC)
    expected = sum(
        traffic.hour_value("MLA600000002", "questions", local_midnight + k * HOUR, now)
        for k in range(24)
    )
    day_value = traffic.day_value("MLA600000002", "questions", date(2026, 12, 1), now)
    assert day_value == expected


def test_day_value_of_past_day_is_final() -> None:
    traffic = Traffic(seed=9, items=5, day_offset_hours=-4)
    now = datetime(2026, 12, 2, 4, tzinfo=UTC)
    day = date(2026, 12, 1)
    final = traffic.day_count("MLA600000002", "questions", day)
    assert traffic.day_value("MLA600000002", "questions", day, now) == final


def busiest_hour(traffic: Traffic) -> tuple[str, datetime, int]:
    """Return an item, hour start and count with the largest count of one day."""
    best = ("", DAY_START, -1)
    for item_id in traffic.item_ids():
        counts = traffic.hour_counts(item_id, "phone_views", DAY_START, 24)
        top = max(counts)
        if top > best[2]:
            best = (item_id, DAY_START + counts.index(top) * HOUR, top)
    return best


def test_filling_bucket_grows_with_clock() -> None:
    traffic = Traffic(seed=11, items=50)
    item_id, hour_start, count = busiest_hour(traffic)
    seen = [
        traffic.hour_value(item_id, "phone_views", hour_start, hour_start + minutes)
        for minutes in (timedelta(0), timedelta(minutes=15), timedelta(minutes=45))
    ]
    assert seen[0] == 0
    assert seen[1] == count * 900 // 3600
    assert seen[2] == count * 2700 // 3600
    assert seen[1] < seen[2] < count


def test_bucket_final_once_ended() -> None:
    traffic = Traffic(seed=11, items=50)
    item_id, hour_start, count = busiest_hour(traffic)
    now = hour_start + HOUR
    assert traffic.hour_value(item_id, "phone_views", hour_start, now) == count


def test_future_bucket_is_zero() -> None:
    traffic = Traffic(seed=11, items=50)
    item_id, hour_start, _ = busiest_hour(traffic)
    now = hour_start - timedelta(minutes=1)
    assert traffic.hour_value(item_id, "phone_views", hour_start, now) == 0


def test_range_total_includes_end_hour() -> None:
    traffic = Traffic(seed=11, items=50)
    item_id, hour_start, count = busiest_hour(traffic)
    now = DAY_START + timedelta(days=2)
    total = traffic.range_total(item_id, "phone_views", hour_start, hour_start, now)
    assert total == count


def test_range_total_skips_hour_started_before_start() -> None:
    traffic = Traffic(seed=11, items=50)
    item_id, hour_start, _ = busiest_hour(traffic)
    now = DAY_START + timedelta(days=2)
    start = hour_start + timedelta(minutes=1)
    end = hour_start + timedelta(minutes=59)
    assert traffic.range_total(item_id, "phone_views", start, end, now) == 0


def test_seller_values_sum_items() -> None:
    traffic = Traffic(seed=13, items=30, sellers=4)
    now = DAY_START + timedelta(days=1)
    seller_values = traffic.seller_hour_values(
        "52366167", "questions", DAY_START, 24, now
    )
    item_values = [
        traffic.hour_values(item_id, "questions", DAY_START, 24, now)
        for item_id in traffic.items_of_seller("52366167")
    ]
    assert seller_values == [sum(column) for column in zip(*item_values, strict=True)]


def test_revision_changes_share_of_hours() -> None:
    base = sample_counts(Traffic(seed=17, items=100), 100, 24 * 10)
    revised = sample_counts(
        Traffic(seed=17, items=100, revision=2, revision_share=0.1), 100, 24 * 10
    )
    changed = sum(1 for old, new in zip(base, revised, strict=True) if old != new)
    assert 0.08 < changed / len(base) < 0.12


def test_revision_adds_revision_or_one() -> None:
    base = sample_counts(Traffic(seed=17, items=100), 100, 24 * 10)
    revised = sample_counts(Traffic(seed=17, items=100, revision=2), 100, 24 * 10)
    pairs = [(old, new) for old, new in zip(base, revised, strict=True) if old != new]
    assert all(new == (old + 2 if old > 0 else 1) for old, new in pairs)


def test_revisions_differ_from_each_other() -> None:
    first = sample_counts(Traffic(seed=17, items=50, revision=1), 50, 24 * 5)
    second = sample_counts(Traffic(seed=17, items=50, revision=2), 50, 24 * 5)
    assert first != second


def test_traffic_rejects_bad_offset() -> None:
    with pytest.raises(ValueError):
        Traffic(seed=1, items=1, day_offset_hours=30)
