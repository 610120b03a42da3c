"""The main job against a faulty sandbox: backfill, harvest, re-harvest."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import asyncpg

from harvester import app
from harvester.buckets import Unit
from harvester.sandbox.server import start_sandbox
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.traffic import Traffic
from tests.conftest import FROZEN_NOW, make_settings

ITEMS = 300
DAY_OFFSET_HOURS = -4
METRICS = ("questions", "phone_views")

FAULTY = SandboxSettings(
    token="test-token",
    max_ids=20,
    max_last=24,
    p500=0.05,
    p503=0.03,
    p502=0.03,
    p429=0.05,
    p_slow=0.03,
    slow_s=1.5,
    p_truncate=0.03,
    p_empty=0.02,
    fault_seed=11,
    retry_after_s=0,
    sparse=True,
    extra_bucket=True,
    day_label="local",
    last_as_string=True,
    shuffle=True,
)


def frozen() -> datetime:
    return FROZEN_NOW


Rows = dict[tuple[str, str, object], tuple[int, bool]]


async def stored_rows(url: str, table: str, column: str) -> Rows:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            f"SELECT item_id, metric, {column} AS bucket, total, settled FROM {table}"
        )
    finally:
        await connection.close()
    return {
        (row["item_id"], row["metric"], row["bucket"]): (row["total"], row["settled"])
        for row in rows
    }


def expected_hours(first: datetime, now: datetime) -> list[datetime]:
    hours = []
    hour = first
    while hour <= now:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


async def test_backfill_then_harvest_matches_truth(database_url: str) -> None:
    traffic = Traffic(seed=5, items=ITEMS, day_offset_hours=DAY_OFFSET_HOURS)
    ids = traffic.item_ids()
    async with await start_sandbox(FAULTY, traffic, clock=frozen) as sandbox:
        settings = make_settings(sandbox.url, database_url, ids, timeout_s=1.0)
        settings = replace(
            settings, harvest=replace(settings.harvest, time_zone="UTC-04:00")
        )
        local_today = (FROZEN_NOW + timedelta(hours=DAY_OFFSET_HOURS)).date()
        first_day = local_today - timedelta(days=3)
        zone_start = datetime(
            first_day.year, first_day.month, first_day.day, tzinfo=UTC
        ) - timedelta(hours=DAY_OFFSET_HOURS)
        range_end = zone_start + timedelta(days=3)

        backfill = await app.backfill(
            settings,
            zone_start,
            range_end,
            METRICS,
            (Unit.HOUR, Unit.DAY),
            clock=frozen,
        )
        harvest = await app.harvest(settings, clock=frozen)
        again = await app.harvest(settings, clock=frozen)

    assert backfill.failed_items == {}
    assert backfill.status == "ok"
    assert backfill.failed_items == {}
    assert backfill.retries > 0
    assert harvest.status == "ok"
    assert again.status == "ok"
    assert again.rows_inserted == 0
    assert again.rows_changed == 0

    hourly = await stored_rows(database_url, "item_hourly", "hour")
    current_hour = FROZEN_NOW.replace(minute=0)
    hours = expected_hours(zone_start, current_hour)
    expected_keys = {(i, m, h) for i in ids for m in METRICS for h in hours}
    assert set(hourly) == expected_keys
    for (item_id, metric, hour), (total, settled) in hourly.items():
        if hour == current_hour:
            assert not settled
            assert total == traffic.hour_value(item_id, metric, hour, FROZEN_NOW)
        else:
            assert settled, (item_id, metric, hour)
            assert total == traffic.hour_count(item_id, metric, hour), (
                item_id,
                metric,
                hour,
            )

    daily = await stored_rows(database_url, "item_daily", "day")
    days = [first_day + timedelta(days=n) for n in range(4)]
    assert days[-1] == local_today
    assert set(daily) == {(i, m, d) for i in ids for m in METRICS for d in days}
    for (item_id, metric, day), (total, settled) in daily.items():
        assert isinstance(day, date)
        if day == local_today:
            assert not settled
            assert total == traffic.day_value(item_id, metric, day, FROZEN_NOW)
        else:
            assert settled, (item_id, metric, day)
            assert total == traffic.day_count(item_id, metric, day), (
                item_id,
                metric,
                day,
            )

    connection = await asyncpg.connect(database_url)
    try:
        runs = await connection.fetch("SELECT * FROM harvest_runs ORDER BY run_id")
    finally:
        await connection.close()
    assert [run["kind"] for run in runs] == ["backfill", "harvest", "harvest"]
    assert [run["status"] for run in runs] == ["ok", "ok", "ok"]
    assert runs[0]["rows_inserted"] == backfill.rows_inserted
    assert runs[0]["requests"] == backfill.requests
    assert runs[0]["retries"] == backfill.retries
    assert runs[2]["rows_changed"] == 0
