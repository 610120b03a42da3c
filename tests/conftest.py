"""Fixtures: a real PostgreSQL database per test and the sandbox API on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from harvester.buckets import Unit
from harvester.config import (
    ApiSettings,
    DatabaseSettings,
    HarvestSettings,
    Settings,
)
from harvester.embedded import EmbeddedPostgres

# A fixed instant for the sandbox's and the harvester's clocks, so that even the
# bucket still filling up has a known value.
FROZEN_NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Return the URL of a PostgreSQL server to create test databases on.

    HARVESTER_TEST_DATABASE_URL names a running server; without it the embedded
    server starts in a temporary folder for the session.
    """
    configured = os.environ.get("HARVESTER_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    # Not under pytest's tmp_path: the server runs as its own user, which
    # cannot enter pytest's private folders to stop it.
    folder = Path(tempfile.mkdtemp(prefix="harvester-test-"))
    server = asyncio.run(EmbeddedPostgres.start(folder / "pgdata"))
    yield server.url
    asyncio.run(server.stop())
    shutil.rmtree(folder, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


DatabaseFactory = Callable[[], Awaitable[str]]


@pytest.fixture
async def database_factory(server_url: str) -> AsyncIterator[DatabaseFactory]:
    """Return a function that creates an empty database; all are dropped after."""
    names: list[str] = []

    async def create() -> str:
        name = f"harvester_test_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        names.append(name)
        return with_database(server_url, name)

    yield create
    admin = await asyncpg.connect(server_url)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    """Return the URL of an empty database for one test."""
    return await database_factory()


def make_settings(
    api_url: str, database_url: str, item_ids: list[str], **api: object
) -> Settings:
    """Build settings for a test run against the sandbox, with fast retries."""
    api_settings = ApiSettings(
        base_url=api_url,
        access_token="test-token",
        rate_per_s=500.0,
        concurrency=8,
        batch_size=50,
        max_last=720,
        timeout_s=5.0,
        attempts=8,
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
    )
    return Settings(
        api=replace(api_settings, **api),  # type: ignore[arg-type]
        database=DatabaseSettings(url=database_url),
        item_ids=tuple(item_ids),
        harvest=HarvestSettings(units=(Unit.HOUR, Unit.DAY), settle_hours=0),
    )
