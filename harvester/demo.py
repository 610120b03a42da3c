"""`harvester demo`: the whole job on this machine, with nothing to set up.

It starts the sandbox API on loopback and the embedded PostgreSQL, backfills a
few days for a few hundred items, runs an incremental harvest, checks every
finished bucket against the sandbox's own counts and prints a summary.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from harvester import app
from harvester.buckets import METRICS, Unit
from harvester.config import ApiSettings, DatabaseSettings, HarvestSettings, Settings
from harvester.embedded import EmbeddedPostgres
from harvester.report import RunReport
from harvester.sandbox.server import RunningSandbox, start_sandbox
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.traffic import Traffic

logger = logging.getLogger(__name__)

DEMO_SEED = 42
DEMO_TOKEN = "demo-token"  # the sandbox's own made-up credential
# A few faults, so the summary shows retries doing their work.
DEMO_SANDBOX = SandboxSettings(
    token=DEMO_TOKEN, rate=100.0, p500=0.02, p429=0.02, p_truncate=0.01, sparse=True
)


async def run_demo(items: int, days: int, data_dir: Path | None) -> int:
    """Run the demo and return the exit code: 0 when every bucket checked is right."""
    if data_dir is not None:
        return await demo_in(items, days, data_dir)
    with tempfile.TemporaryDirectory(prefix="harvester-demo-") as folder:
        return await demo_in(items, days, Path(folder))


async def demo_in(items: int, days: int, data_dir: Path) -> int:
    traffic = Traffic(seed=DEMO_SEED, items=items)
    database = await EmbeddedPostgres.start(data_dir / "pgdata")
    try:
        async with await start_sandbox(DEMO_SANDBOX, traffic) as sandbox:
            settings = demo_settings(sandbox, database.url, traffic)
            reports = await harvest_demo(settings, days)
        print_reports(reports)
        return await summarise(database.url, traffic)
    finally:
        await database.stop()


def demo_settings(sandbox: RunningSandbox, url: str, traffic: Traffic) -> Settings:
    return Settings(
        api=ApiSettings(
            base_url=sandbox.url,
            access_token=DEMO_TOKEN,
            rate_per_s=90.0,
            backoff_initial_s=0.2,
            backoff_max_s=2.0,
        ),
        database=DatabaseSettings(url=url),
        item_ids=tuple(traffic.item_ids()),
        harvest=HarvestSettings(),
    )


async def harvest_demo(settings: Settings, days: int) -> list[RunReport]:
    today = datetime.now(UTC).date()
    start = midnight(today - timedelta(days=days))
    end = midnight(today)
    print(
        f"backfilling {start.date()} to {today - timedelta(days=1)} "
        f"for {len(settings.item_ids)} items ..."
    )
    backfill = await app.backfill(settings, start, end, METRICS, (Unit.HOUR, Unit.DAY))
    print("running an incremental harvest ...")
    harvest = await app.harvest(settings)
    return [backfill, harvest]


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def print_reports(reports: list[RunReport]) -> None:
    for report in reports:
        print(report.summary())


async def summarise(url: str, traffic: Traffic) -> int:
    connection = await asyncpg.connect(url)
    try:
        await print_row_counts(connection)
        await print_busiest(connection)
        wrong = await count_wrong_buckets(connection, traffic)
    finally:
        await connection.close()
    return 0 if wrong == 0 else 1


async def print_row_counts(connection: asyncpg.Connection) -> None:
    print("\nrows stored            rows  settled   contacts")
    for table, unit in (("item_hourly", "hour"), ("item_daily", "day")):
        rows = await connection.fetch(
            f"""SELECT metric, count(*) AS rows,
                       count(*) FILTER (WHERE settled) AS settled,
                       sum(total) AS contacts
                FROM {table} GROUP BY metric ORDER BY metric"""
        )
        for row in rows:
            label = f"{row['metric']}/{unit}"
            print(
                f"{label:<18} {row['rows']:>9} {row['settled']:>8} "
                f"{row['contacts']:>10}"
            )


async def print_busiest(connection: asyncpg.Connection) -> None:
    rows = await connection.fetch(
        """SELECT item_id,
                  sum(total) FILTER (WHERE metric = 'questions') AS questions,
                  sum(total) FILTER (WHERE metric = 'phone_views') AS phone_views
           FROM item_daily GROUP BY item_id
           ORDER BY sum(total) DESC, item_id LIMIT 5"""
    )
    print("\nbusiest items       questions  phone views")
    for row in rows:
        print(f"{row['item_id']:<18} {row['questions']:>10} {row['phone_views']:>11}")


async def count_wrong_buckets(connection: asyncpg.Connection, traffic: Traffic) -> int:
    """Compare every bucket that had ended when fetched with the sandbox's count."""
    hourly = await connection.fetch(
        """SELECT item_id, metric, hour, total FROM item_hourly
           WHERE hour + interval '1 hour' <= fetched_at"""
    )
    daily = await connection.fetch(
        """SELECT item_id, metric, day, total FROM item_daily
           WHERE (day + 1)::timestamp AT TIME ZONE 'UTC' <= fetched_at"""
    )
    wrong = 0
    for row in hourly:
        truth = traffic.hour_count(row["item_id"], row["metric"], row["hour"])
        wrong += int(row["total"] != truth)
    for row in daily:
        truth = traffic.day_count(row["item_id"], row["metric"], row["day"])
        wrong += int(row["total"] != truth)
    checked = len(hourly) + len(daily)
    verdict = "all equal" if wrong == 0 else f"{wrong} DIFFER"
    print(f"\n{checked} finished buckets checked against the sandbox: {verdict}")
    return wrong
