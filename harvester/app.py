"""The harvest and backfill commands, from settings to a recorded run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
import asyncpg

from harvester.buckets import Unit, current_bucket
from harvester.client import ApiClient
from harvester.config import Settings
from harvester.embedded import EmbeddedPostgres
from harvester.errors import RunLockedError
from harvester.planner import Stream, backfill_bounds, harvest_starts, plan_streams
from harvester.ratelimit import RateLimiter
from harvester.retry import RetryPolicy
from harvester.runner import Clock, Runner, outcome_of, utc_now
from harvester.store import CONNECT_TIMEOUT_S, Store

logger = logging.getLogger(__name__)

# Held for the whole run on its own connection, so a killed run releases it.
RUN_LOCK_KEY = 0x68617276_0002


@dataclass
class RunReport:
    """The outcome of one harvest or backfill, as printed and recorded."""

    run_id: int
    kind: str
    status: str
    duration_s: float
    requests: int
    retries: int
    rows_inserted: int
    rows_changed: int
    failed_items: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        line = (
            f"{self.kind} run {self.run_id} {self.status} in {self.duration_s:.1f}s: "
            f"{self.requests} requests ({self.retries} retries), "
            f"{self.rows_inserted} rows inserted, {self.rows_changed} changed, "
            f"{len(self.failed_items)} items failed"
        )
        for item_id, reason in sorted(self.failed_items.items())[:20]:
            line += f"\n  {item_id}: {reason}"
        if len(self.failed_items) > 20:
            line += f"\n  ... and {len(self.failed_items) - 20} more in harvest_runs"
        return line


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """Yield the configured database URL, or start the embedded server for the run."""
    if settings.database.url:
        yield settings.database.url
        return
    server = await EmbeddedPostgres.start(settings.database.embedded_dir)
    try:
        yield server.url
    finally:
        await server.stop()


@asynccontextmanager
async def run_lock(url: str) -> AsyncIterator[None]:
    """Hold the database's run lock, or raise RunLockedError at once."""
    connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock($1)", RUN_LOCK_KEY
        )
        if not locked:
            raise RunLockedError(
                "another harvest or backfill is running against this database: "
                "wait for it to finish; harvest_runs shows the run marked running"
            )
        yield
    finally:
        await connection.close()


async def harvest(settings: Settings, clock: Clock = utc_now) -> RunReport:
    """Fetch everything since each item's settled history, plus the re-read window."""
    async with open_run(settings) as store:
        now = clock()
        streams = []
        for metric in settings.harvest.metrics:
            for unit in settings.harvest.units:
                streams += await plan_harvest(store, settings, metric, unit, now)
        return await execute(settings, store, "harvest", streams, None, now, clock)


async def plan_harvest(
    store: Store, settings: Settings, metric: str, unit: Unit, now: datetime
) -> list[Stream]:
    progress = await store.load_progress(metric, unit, settings.item_ids)
    starts = harvest_starts(unit, settings.item_ids, progress, now, settings.harvest)
    end = current_bucket(unit, now, settings.harvest.zone) + 1
    return plan_streams(metric, unit, starts, end, settings.api.batch_size, True)


async def backfill(
    settings: Settings,
    range_from: datetime,
    range_to: datetime,
    metrics: Sequence[str],
    units: Sequence[Unit],
    clock: Clock = utc_now,
) -> RunReport:
    """Fetch every bucket of the range, whatever is stored already."""
    async with open_run(settings) as store:
        now = clock()
        streams = []
        zone = settings.harvest.zone
        for metric in metrics:
            for unit in units:
                first, end = backfill_bounds(unit, range_from, range_to, now, zone)
                starts = dict.fromkeys(settings.item_ids, first)
                streams += plan_streams(
                    metric, unit, starts, end, settings.api.batch_size, False
                )
        return await execute(
            settings,
            store,
            "backfill",
            streams,
            range_from,
            range_to,
            clock,
            metrics=metrics,
            units=units,
        )


@asynccontextmanager
async def open_run(settings: Settings) -> AsyncIterator[Store]:
    async with database_url(settings) as url:
        store = await Store.open(url, settings.database.pool_size)
        try:
            async with run_lock(url):
                yield store
        finally:
            await store.close()


async def execute(
    settings: Settings,
    store: Store,
    kind: str,
    streams: list[Stream],
    range_from: datetime | None,
    range_to: datetime | None,
    clock: Clock,
    metrics: Sequence[str] | None = None,
    units: Sequence[Unit] | None = None,
) -> RunReport:
    """Run the streams and record the run, whatever its outcome."""
    run_id = await store.start_run(
        kind,
        range_from,
        range_to,
        metrics or settings.harvest.metrics,
        units or settings.harvest.units,
        len(settings.item_ids),
    )
    logger.info("%s run %d started: %d streams", kind, run_id, len(streams))
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        limiter = RateLimiter(settings.api.rate_per_s)
        client = ApiClient(session, settings.api, limiter)
        policy = RetryPolicy(settings.api)
        runner = Runner(settings, store, client, policy, clock)
        try:
            totals = await runner.run(streams)
        except BaseException as group:
            error = first_error(group)
            stopped = isinstance(error, KeyboardInterrupt | asyncio.CancelledError)
            status = "interrupted" if stopped else "failed"
            await store.finish_run(
                run_id, outcome_of(runner.totals, client, policy, status, str(error))
            )
            raise error from None
    status = "partial" if totals.failed_items else "ok"
    await store.finish_run(run_id, outcome_of(totals, client, policy, status, None))
    report = RunReport(
        run_id=run_id,
        kind=kind,
        status=status,
        duration_s=time.monotonic() - started,
        requests=client.counters.requests,
        retries=policy.retries,
        rows_inserted=totals.rows_inserted,
        rows_changed=totals.rows_changed,
        failed_items=totals.failed_items,
    )
    logger.info("%s", report.summary())
    return report


def first_error(error: BaseException) -> BaseException:
    """Return the first leaf of an exception group, or the error itself."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
