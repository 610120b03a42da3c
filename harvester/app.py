"""The harvest and backfill commands, from settings to a recorded run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import asyncpg

from harvester.auth import FixedToken, OAuthTokens, TokenSource
from harvester.buckets import (
    Unit,
    Window,
    bucket_start,
    current_bucket,
    hour_index,
    utc_now,
)
from harvester.client import ApiClient
from harvester.config import Settings
from harvester.database import CONNECT_TIMEOUT_S, DATABASE_ERRORS, connection_error
from harvester.embedded import EmbeddedPostgres
from harvester.errors import (
    ApiError,
    RejectedRequestError,
    RetryableApiError,
    RunLockedError,
    StorageError,
)
from harvester.planner import (
    Range,
    Stream,
    backfill_bounds,
    harvest_starts,
    plan_streams,
)
from harvester.ratelimit import RateLimiter
from harvester.report import RunReport
from harvester.retry import RetryPolicy
from harvester.runner import Clock, Runner, outcome_of
from harvester.store import Store

logger = logging.getLogger(__name__)

# Held for the whole run on its own connection, so a killed run releases it.
RUN_LOCK_KEY = 0x68617276_0002
LOCK_LOST_MESSAGE = (
    "the connection holding the run lock was closed, so another run could "
    "start: this run stopped; run it again"
)
# Seconds between updates of a running run's counters in harvest_runs.
RUN_COUNTS_INTERVAL_S = 5.0
# Items tried by the first request before a 404 is taken as a wrong API path.
PREFLIGHT_ITEMS = 3


@dataclass
class Api:
    """The API machinery of one run: one rate limit, retry policy and token source."""

    client: ApiClient
    policy: RetryPolicy
    tokens: TokenSource


@dataclass(frozen=True)
class RunSpec:
    """The kind, metrics, units and range of a run.

    `backfill_range` drives a backfill's progress; `recorded_range` is the range
    written to harvest_runs, for a harvest too.
    """

    kind: str
    metrics: Sequence[str]
    units: Sequence[Unit]
    backfill_range: Range | None = None
    recorded_range: Range | None = None


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
async def run_lock(url: str, store: Store) -> AsyncIterator[None]:
    """Hold the database's run lock, or raise RunLockedError at once.

    If the lock's connection ends mid-run (a server restart, or an
    administrator's pg_terminate_backend), the lock is gone and another run
    may start, so this run is cancelled and StorageError raised.
    """
    try:
        connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS as error:
        raise connection_error(url, error) from error
    run = asyncio.current_task()
    lost: list[bool] = []

    def on_lock_lost(_: object) -> None:
        lost.append(True)
        store.lock_lost = True
        if run is not None:
            run.cancel()

    try:
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock($1)", RUN_LOCK_KEY
        )
        if not locked:
            raise RunLockedError(
                "another harvest or backfill is running against this database: "
                "wait for it to finish; harvest_runs shows the run marked running"
            )
        connection.add_termination_listener(on_lock_lost)
        try:
            yield
        except asyncio.CancelledError:
            if lost:
                raise StorageError(LOCK_LOST_MESSAGE) from None
            raise
    finally:
        connection.remove_termination_listener(on_lock_lost)
        await connection.close()


@asynccontextmanager
async def open_run(settings: Settings) -> AsyncIterator[Store]:
    """Open the store and take the run lock; close runs that died holding it."""
    async with database_url(settings) as url:
        store = await Store.open(url, settings.database.pool_size)
        try:
            async with run_lock(url, store):
                abandoned = await store.close_abandoned_runs()
                if abandoned:
                    logger.warning("marked %d runs that died as abandoned", abandoned)
                yield store
        finally:
            await store.close()


@asynccontextmanager
async def open_api(
    settings: Settings, store: Store, clock: Clock = utc_now
) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        policy = RetryPolicy(settings.api)
        tokens: TokenSource = FixedToken(settings.api.access_token)
        if settings.api.uses_oauth:
            tokens = OAuthTokens(settings.api, session, store, policy, clock)
        limiter = RateLimiter(settings.api.rate_per_s)
        client = ApiClient(session, settings.api, limiter, tokens)
        yield Api(client, policy, tokens)


async def preflight(api: Api, settings: Settings, now: datetime) -> None:
    """Send one small request, so a wrong URL or token fails before the run starts.

    A 400 or 403 for the item itself is fine here: the API is reachable. A 404
    may mean a deleted item or a wrong path, so up to PREFLIGHT_ITEMS items are
    tried before a 404 stops the run.
    """
    not_found: RejectedRequestError | None = None
    for item_id in settings.item_ids[:PREFLIGHT_ITEMS]:
        try:
            await probe(api, settings, item_id, now)
            return
        except RejectedRequestError as error:
            if error.status != 404:
                return
            not_found = error
    assert not_found is not None
    raise ApiError(
        f"the API at {settings.api.base_url} returned 404 Not Found for "
        f"{not_found.path} with each of the first items: check [api] base_url "
        "and multi_id_form, or remove items that no longer exist",
        status=404,
        path=not_found.path,
    ) from not_found


async def probe(api: Api, settings: Settings, item_id: str, now: datetime) -> None:
    ending = now.isoformat(timespec="seconds")
    metric = settings.harvest.metrics[0]
    try:
        async for attempt in api.policy.retrying("the first request"):
            with attempt:
                await api.client.fetch_series(
                    metric, Unit.HOUR, [item_id], _one_hour(now), ending
                )
    except RetryableApiError as error:
        raise ApiError(
            f"cannot reach the API at {settings.api.base_url}: {error}; check "
            "[api] base_url or HARVESTER_API_URL and that the API is up"
        ) from error


def _one_hour(now: datetime) -> Window:
    return Window(Unit.HOUR, hour_index(now), 1)


async def harvest(settings: Settings, clock: Clock = utc_now) -> RunReport:
    """Fetch everything since each item's settled history, plus the re-read window."""
    metrics, units = settings.harvest.metrics, settings.harvest.units
    async with open_run(settings) as store, open_api(settings, store, clock) as api:
        await preflight(api, settings, clock())
        now = clock()
        streams = []
        for metric in metrics:
            for unit in units:
                streams += await plan_harvest(store, settings, metric, unit, now)
        zone = settings.harvest.zone
        first = min((bucket_start(s.unit, s.first, zone) for s in streams), default=now)
        spec = RunSpec("harvest", metrics, units, recorded_range=(first, now))
        return await execute(settings, store, api, spec, streams, clock)


async def plan_harvest(
    store: Store, settings: Settings, metric: str, unit: Unit, now: datetime
) -> list[Stream]:
    progress = await store.load_progress(metric, unit, settings.item_ids)
    starts = harvest_starts(unit, settings.item_ids, progress, now, settings.harvest)
    end = current_bucket(unit, now, settings.harvest.zone) + 1
    return plan_streams(metric, unit, starts, end, settings.api.batch_size)


async def backfill(
    settings: Settings,
    range_from: datetime,
    range_to: datetime,
    metrics: Sequence[str],
    units: Sequence[Unit],
    clock: Clock = utc_now,
) -> RunReport:
    """Fetch every bucket of the range, resuming an unfinished run of the same range."""
    requested = (range_from, range_to)
    spec = RunSpec("backfill", metrics, units, requested, requested)
    async with open_run(settings) as store, open_api(settings, store, clock) as api:
        await preflight(api, settings, clock())
        now = clock()
        streams = []
        for metric in metrics:
            for unit in units:
                streams += await plan_backfill(store, settings, spec, metric, unit, now)
        report = await execute(settings, store, api, spec, streams, clock)
        if report.status == "ok":
            await store.forget_backfill((range_from, range_to), metrics, units)
        return report


async def plan_backfill(
    store: Store,
    settings: Settings,
    spec: RunSpec,
    metric: str,
    unit: Unit,
    now: datetime,
) -> list[Stream]:
    assert spec.backfill_range is not None
    range_from, range_to = spec.backfill_range
    zone = settings.harvest.zone
    first, end = backfill_bounds(unit, range_from, range_to, now, zone)
    done = await store.load_backfill_progress(spec.backfill_range, metric, unit)
    if done:
        logger.info(
            "resuming %s/%s: %d items already have part of this range stored",
            metric,
            unit,
            len(done),
        )
    starts = {item_id: done.get(item_id, first) for item_id in settings.item_ids}
    return plan_streams(
        metric,
        unit,
        starts,
        end,
        settings.api.batch_size,
        backfill_range=spec.backfill_range,
        range_first=first,
    )


async def execute(
    settings: Settings,
    store: Store,
    api: Api,
    spec: RunSpec,
    streams: list[Stream],
    clock: Clock,
) -> RunReport:
    """Run the streams and record the run in harvest_runs, whatever its outcome."""
    range_from, range_to = spec.recorded_range or (None, None)
    run_id = await store.start_run(
        spec.kind,
        range_from,
        range_to,
        spec.metrics,
        spec.units,
        len(settings.item_ids),
    )
    logger.info("%s run %d started: %d streams", spec.kind, run_id, len(streams))
    started = time.monotonic()
    runner = Runner(settings, store, api.client, api.policy, clock)
    counting = asyncio.create_task(record_counts(store, run_id, runner, api))
    try:
        totals = await runner.run(streams)
    except BaseException as group:
        counting.cancel()
        error = await record_stop(store, run_id, runner, api, first_error(group))
        raise error from None
    counting.cancel()

    status = run_status(totals.failed_items, len(settings.item_ids))
    outcome = outcome_of(totals, api.client, api.policy, status, None)
    await store.finish_run(run_id, outcome)
    report = RunReport(
        run_id=run_id,
        kind=spec.kind,
        status=status,
        duration_s=time.monotonic() - started,
        items=len(settings.item_ids),
        requests=api.client.counters.requests,
        retries=api.policy.retries,
        rows_inserted=totals.rows_inserted,
        rows_changed=totals.rows_changed,
        failed_items=totals.failed_items,
    )
    logger.info("%s", report.summary())
    return report


async def record_stop(
    store: Store, run_id: int, runner: Runner, api: Api, error: BaseException
) -> BaseException:
    """Record a run that stopped early; return the error to raise for it."""
    stopped = isinstance(error, KeyboardInterrupt | asyncio.CancelledError)
    status = "interrupted" if stopped and not store.lock_lost else "failed"
    if store.lock_lost:
        error = StorageError(LOCK_LOST_MESSAGE)
    outcome = outcome_of(runner.totals, api.client, api.policy, status, str(error))
    try:
        await asyncio.shield(store.finish_run(run_id, outcome))
    except StorageError as storage_error:
        logger.error("run %d could not be recorded: %s", run_id, storage_error)
    return error


async def record_counts(store: Store, run_id: int, runner: Runner, api: Api) -> None:
    """Write the run's counters every few seconds, so a killed run shows its work."""
    while True:
        await asyncio.sleep(RUN_COUNTS_INTERVAL_S)
        outcome = outcome_of(runner.totals, api.client, api.policy, "running", None)
        try:
            await store.record_counts(run_id, outcome)
        except StorageError as error:
            logger.warning("run %d counters not recorded: %s", run_id, error)


def run_status(failed_items: dict[str, list[str]], items: int) -> str:
    if not failed_items:
        return "ok"
    return "failed" if len(failed_items) >= items else "partial"


def first_error(error: BaseException) -> BaseException:
    """Return the first leaf of an exception group, or the error itself."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
