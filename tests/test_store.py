"""The store against a real PostgreSQL: upserts, progress, migrations, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

import asyncpg
import pytest

from harvester.buckets import Unit, day_index, hour_index
from harvester.database import migrate
from harvester.errors import StorageError
from harvester.migrations import migrations_dir
from harvester.store import BucketChunk, ProgressUpdate, Store
from tests.conftest import DatabaseFactory

FETCHED_AT = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
HOUR = hour_index(datetime(2026, 11, 20, 8, tzinfo=UTC))


def hourly_chunk(
    rows: list[tuple[str, int, int, bool]], progress: ProgressUpdate | None = None
) -> BucketChunk:
    return BucketChunk(
        "questions",
        Unit.HOUR,
        FETCHED_AT,
        rows,
        progress or ProgressUpdate(since=HOUR),
    )


async def fetch_all(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def test_write_counts_inserts_and_changes(database_url: str) -> None:
    store = await Store.open(database_url, 2)
    try:
        first = await store.write(hourly_chunk([("MLA1", HOUR, 3, False)]))
        same = await store.write(hourly_chunk([("MLA1", HOUR, 3, False)]))
        grown = await store.write(hourly_chunk([("MLA1", HOUR, 4, False)]))
        settled = await store.write(hourly_chunk([("MLA1", HOUR, 4, True)]))
    finally:
        await store.close()

    assert (first.inserted, first.changed) == (1, 0)
    assert (same.inserted, same.changed) == (0, 0)
    assert (grown.inserted, grown.changed) == (0, 1)
    assert (settled.inserted, settled.changed) == (0, 1)
    rows = await fetch_all(database_url, "SELECT * FROM item_hourly")
    assert len(rows) == 1
    assert rows[0]["total"] == 4
    assert rows[0]["settled"] is True
    assert rows[0]["hour"] == datetime(2026, 11, 20, 8, tzinfo=UTC)


async def test_day_rows_keep_label_date(database_url: str) -> None:
    day = date(2026, 11, 19)
    chunk = BucketChunk(
        "phone_views",
        Unit.DAY,
        FETCHED_AT,
        [("MLA1", day_index(day), 7, True)],
        ProgressUpdate(since=day_index(day)),
    )
    store = await Store.open(database_url, 1)
    try:
        await store.write(chunk)
    finally:
        await store.close()

    rows = await fetch_all(database_url, "SELECT day, total FROM item_daily")
    assert [(row["day"], row["total"]) for row in rows] == [(day, 7)]


async def test_progress_created_then_extended(database_url: str) -> None:
    store = await Store.open(database_url, 1)
    try:
        start = ProgressUpdate(since=HOUR, reach={HOUR + 2: ["MLA1"]}, may_create=True)
        await store.write(hourly_chunk([("MLA1", HOUR, 1, True)], start))
        gap = ProgressUpdate(since=HOUR + 5, reach={HOUR + 9: ["MLA1"]})
        await store.write(hourly_chunk([("MLA1", HOUR + 5, 1, True)], gap))
        after_gap = await store.load_progress("questions", Unit.HOUR, ["MLA1"])
        next_window = ProgressUpdate(since=HOUR + 2, reach={HOUR + 4: ["MLA1"]})
        await store.write(hourly_chunk([("MLA1", HOUR + 2, 1, True)], next_window))
        extended = await store.load_progress("questions", Unit.HOUR, ["MLA1"])
    finally:
        await store.close()

    assert after_gap == {"MLA1": HOUR + 2}
    assert extended == {"MLA1": HOUR + 4}


async def test_progress_not_created_midway(database_url: str) -> None:
    store = await Store.open(database_url, 1)
    try:
        later = ProgressUpdate(since=HOUR + 3, reach={HOUR + 6: ["MLA1"]})
        await store.write(hourly_chunk([("MLA1", HOUR + 3, 1, True)], later))
        progress = await store.load_progress("questions", Unit.HOUR, ["MLA1"])
    finally:
        await store.close()

    assert progress == {}


async def test_concurrent_migrations_apply_once(database_url: str) -> None:
    results = await asyncio.gather(migrate(database_url), migrate(database_url))

    applied = sorted(name for names in results for name in names)
    files = sorted(path.stem for path in migrations_dir().glob("*.sql"))
    assert applied == files
    rows = await fetch_all(database_url, "SELECT version FROM schema_migrations")
    assert sorted(row["version"] for row in rows) == list(range(1, len(files) + 1))


async def test_write_survives_killed_connection(database_url: str) -> None:
    store = await Store.open(database_url, 1)
    name = urlsplit(database_url).path.lstrip("/")
    try:
        await fetch_all(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        counts = await store.write(hourly_chunk([("MLA1", HOUR, 1, True)]))
    finally:
        await store.close()

    assert counts.inserted == 1


async def test_dropped_database_raises_storage_error(
    database_factory: DatabaseFactory, server_url: str
) -> None:
    url = await database_factory()
    store = await Store.open(url, 1)
    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        with pytest.raises(StorageError, match="writing buckets failed"):
            await store.write(hourly_chunk([("MLA1", HOUR, 1, True)]))
    finally:
        await admin.close()
        await store.close()
