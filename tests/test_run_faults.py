"""Runs that lose their lock or their API midway stop with a clear error."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from harvester import app
from harvester.buckets import Unit
from harvester.errors import ApiError, ApiUnreachableError, StorageError
from harvester.sandbox.server import start_sandbox
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.traffic import Traffic
from tests.conftest import FROZEN_NOW, make_settings

METRICS = ("questions", "phone_views")
UNITS = (Unit.HOUR, Unit.DAY)
RANGE = (FROZEN_NOW - timedelta(days=4), FROZEN_NOW - timedelta(days=1))


def frozen() -> object:
    return FROZEN_NOW


async def count_rows(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        exists = await connection.fetchval("SELECT to_regclass('item_hourly')")
        if exists is None:
            return 0
        return int(await connection.fetchval("SELECT count(*) FROM item_hourly"))
    finally:
        await connection.close()


async def wait_for_rows(url: str, task: asyncio.Task[object]) -> None:
    for _ in range(1000):
        if await count_rows(url) > 0:
            return
        assert not task.done(), "the run ended before any row was written"
        await asyncio.sleep(0.02)
    raise AssertionError("no row was written")


async def test_lost_run_lock_stops_run(database_url: str) -> None:
    traffic = Traffic(seed=2, items=100)
    slow = SandboxSettings(token="test-token", max_ids=10, rate=10.0)
    async with await start_sandbox(slow, traffic, clock=frozen) as sandbox:
        settings = make_settings(sandbox.url, database_url, traffic.item_ids())
        run = asyncio.create_task(
            app.backfill(settings, *RANGE, METRICS, UNITS, clock=frozen)  # type: ignore[arg-type]
        )
        await wait_for_rows(database_url, run)
        admin = await asyncpg.connect(database_url)
        try:
            terminated = await admin.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                   WHERE locktype = 'advisory' AND granted
                     AND database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())"""
            )
        finally:
            await admin.close()

        with pytest.raises(StorageError, match="run lock was closed"):
            await run

    assert terminated == 1
    connection = await asyncpg.connect(database_url)
    try:
        run_row = await connection.fetchrow("SELECT status, error FROM harvest_runs")
    finally:
        await connection.close()
    assert run_row["status"] == "failed"
    assert "run lock was closed" in run_row["error"]


async def test_api_gone_midway_stops_run(database_url: str) -> None:
    traffic = Traffic(seed=2, items=400)
    slow = SandboxSettings(token="test-token", max_ids=10, rate=5.0)
    sandbox = await start_sandbox(slow, traffic, clock=frozen)
    settings = make_settings(sandbox.url, database_url, traffic.item_ids())
    run = asyncio.create_task(
        app.backfill(settings, *RANGE, METRICS, UNITS, clock=frozen)  # type: ignore[arg-type]
    )
    await wait_for_rows(database_url, run)
    await sandbox.close()

    with pytest.raises(ApiUnreachableError, match="stopped responding"):
        await run

    connection = await asyncpg.connect(database_url)
    try:
        status = await connection.fetchval("SELECT status FROM harvest_runs")
    finally:
        await connection.close()
    assert status == "failed"


async def test_wrong_api_path_fails_first(database_url: str) -> None:
    traffic = Traffic(seed=2, items=10)
    async with await start_sandbox(SandboxSettings(), traffic, clock=frozen) as sandbox:
        settings = make_settings(f"{sandbox.url}/api", database_url, traffic.item_ids())

        with pytest.raises(ApiError, match="404 Not Found") as raised:
            await app.backfill(settings, *RANGE, METRICS, UNITS, clock=frozen)  # type: ignore[arg-type]

        requests = sandbox.stats.requests

    assert raised.value.status == 404
    assert requests == 3
    assert await count_rows(database_url) == 0
