"""PostgreSQL storage: bulk upserts of buckets, harvest progress and the runs table."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from harvester.buckets import Unit, day_of, hour_start
from harvester.config import mask_url
from harvester.database import (
    CONNECT_TIMEOUT_S,
    CONNECTION_ERRORS,
    DATABASE_ERRORS,
    connection_error,
    is_superuser,
    migrate,
    session_settings,
    translate_errors,
)
from harvester.errors import StorageError

logger = logging.getLogger(__name__)

TABLES = {Unit.HOUR: ("item_hourly", "hour"), Unit.DAY: ("item_daily", "day")}
# item id, bucket index, total, settled
Row = tuple[str, int, int, bool]
# item id, metric, hour or day, total, settled, fetched at
BucketRecord = tuple[str, str, datetime | date, int, bool, datetime]
# item id -> bucket index -> (total, settled)
StoredBuckets = dict[str, dict[int, tuple[int, bool]]]
# SQL for the bucket index of a row, as harvester.buckets counts it.
INDEX_SQL = {
    Unit.HOUR: "(extract(epoch FROM hour)::bigint / 3600)::int",
    Unit.DAY: "(day - DATE '0001-01-01') + 1",
}


@dataclass
class ProgressUpdate:
    """How far a written window moves its items' progress.

    `reach` maps a bucket index (exclusive) to the items whose progress moves
    to it, provided their stored progress already reaches `since`, the window's
    first bucket. With `may_create`, an item with no progress row gets one.
    Progress goes to harvest_progress, or with `backfill_range` set to
    backfill_progress.
    """

    since: int
    reach: dict[int, list[str]] = field(default_factory=dict)
    may_create: bool = False
    backfill_range: tuple[datetime, datetime] | None = None


@dataclass
class BucketChunk:
    """Validated totals of one window for some items, ready to be written together."""

    metric: str
    unit: Unit
    fetched_at: datetime
    rows: list[Row]
    progress: ProgressUpdate


@dataclass(frozen=True)
class TokenPair:
    """An OAuth access token, its expiry and the refresh token that replaces it."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime


class LockedTokens:
    """The stored token pair of one client, locked until the transaction ends."""

    def __init__(self, connection: asyncpg.Connection, client_id: str, pair: TokenPair):
        self._connection = connection
        self._client_id = client_id
        self.pair = pair

    @translate_errors("saving the refreshed token pair")
    async def save(self, pair: TokenPair) -> None:
        await self._connection.execute(
            """UPDATE oauth_tokens SET access_token = $2, refresh_token = $3,
                   expires_at = $4, updated_at = now()
               WHERE client_id = $1""",
            self._client_id,
            pair.access_token,
            pair.refresh_token,
            pair.expires_at,
        )
        self.pair = pair


@dataclass
class WriteCounts:
    inserted: int = 0
    changed: int = 0


def bucket_value(unit: Unit, index: int) -> datetime | date:
    return hour_start(index) if unit is Unit.HOUR else day_of(index)


def changed_rows(rows: list[Row], stored: StoredBuckets) -> list[Row]:
    """Return the rows that are new or differ from the stored bucket."""
    changed = []
    for row in rows:
        known = stored.get(row[0])
        if known is None or known.get(row[1]) != (row[2], row[3]):
            changed.append(row)
    return changed


def bucket_records(chunk: BucketChunk, rows: list[Row]) -> list[BucketRecord]:
    """Return COPY records of rows; each bucket's value is built once."""
    values: dict[int, datetime | date] = {}
    records: list[BucketRecord] = []
    for item_id, index, total, settled in rows:
        value = values.get(index)
        if value is None:
            value = values[index] = bucket_value(chunk.unit, index)
        records.append((item_id, chunk.metric, value, total, settled, chunk.fetched_at))
    return records


def progress_instant(unit: Unit, index: int) -> datetime:
    """Return the instant stored in harvest_progress for a bucket index."""
    if unit is Unit.HOUR:
        return hour_start(index)
    day = day_of(index)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def progress_index(unit: Unit, instant: datetime) -> int:
    if unit is Unit.HOUR:
        return int(instant.timestamp()) // 3600
    return instant.astimezone(UTC).date().toordinal()


def upsert_sql(unit: Unit) -> str:
    """Write the staged rows, which the caller chose as new or changed.

    Because only such rows are staged, ON CONFLICT never locks an unchanged
    row, which would cost a WAL record. The WHERE leaves an equal row alone
    even so.
    """
    table, column = TABLES[unit]
    return f"""
        INSERT INTO {table} AS t
            (item_id, metric, {column}, total, settled, fetched_at)
        SELECT item_id, metric, {column}, total, settled, fetched_at
        FROM staging_{table}
        ON CONFLICT (item_id, metric, {column}) DO UPDATE
        SET total = EXCLUDED.total,
            settled = EXCLUDED.settled,
            fetched_at = EXCLUDED.fetched_at
        WHERE (t.total, t.settled) IS DISTINCT FROM (EXCLUDED.total, EXCLUDED.settled)
    """


EXTEND_HARVEST_SQL = """
    UPDATE harvest_progress SET settled_until = $4
    WHERE item_id = ANY($1::text[]) AND metric = $2 AND unit = $3
      AND settled_until >= $5 AND settled_until < $4
"""

CREATE_HARVEST_SQL = """
    INSERT INTO harvest_progress (item_id, metric, unit, settled_until)
    SELECT unnest($1::text[]), $2, $3, $4
    ON CONFLICT (item_id, metric, unit) DO UPDATE
    SET settled_until = EXCLUDED.settled_until
    WHERE harvest_progress.settled_until >= $5
      AND harvest_progress.settled_until < EXCLUDED.settled_until
"""

EXTEND_BACKFILL_SQL = """
    UPDATE backfill_progress SET done_until = $4
    WHERE item_id = ANY($1::text[]) AND metric = $2 AND unit = $3
      AND range_from = $6 AND range_to = $7
      AND done_until >= $5 AND done_until < $4
"""

CREATE_BACKFILL_SQL = """
    INSERT INTO backfill_progress
        (range_from, range_to, item_id, metric, unit, done_until)
    SELECT $6, $7, unnest($1::text[]), $2, $3, $4
    ON CONFLICT (range_from, range_to, item_id, metric, unit) DO UPDATE
    SET done_until = EXCLUDED.done_until
    WHERE backfill_progress.done_until >= $5
      AND backfill_progress.done_until < EXCLUDED.done_until
"""


def progress_statement(update: ProgressUpdate) -> tuple[str, tuple[datetime, ...]]:
    """Return the SQL that moves progress, and its range arguments ($6, $7)."""
    if update.backfill_range is None:
        sql = CREATE_HARVEST_SQL if update.may_create else EXTEND_HARVEST_SQL
        return sql, ()
    sql = CREATE_BACKFILL_SQL if update.may_create else EXTEND_BACKFILL_SQL
    return sql, update.backfill_range


async def prepare_connection(connection: asyncpg.Connection) -> None:
    """Create this connection's staging tables, emptied at every commit."""
    for table, column in TABLES.values():
        kind = "timestamptz" if column == "hour" else "date"
        await connection.execute(
            f"""CREATE TEMP TABLE IF NOT EXISTS staging_{table} (
                    item_id text, metric text, {column} {kind},
                    total integer, settled boolean, fetched_at timestamptz
                ) ON COMMIT DELETE ROWS"""
        )


class Store:
    """The harvester's tables in one PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self.url = url
        # Set when the run lock's connection ends; the run then stops.
        self.lock_lost = False

    def __repr__(self) -> str:
        return f"Store(url={mask_url(self.url)!r})"

    @classmethod
    async def open(cls, url: str, pool_size: int) -> Store:
        """Connect, apply pending migrations and prepare the connection pool."""
        await migrate(url)
        try:
            superuser = await is_superuser(url)
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=CONNECT_TIMEOUT_S,
                init=prepare_connection,
                server_settings=session_settings(superuser),
            )
        except DATABASE_ERRORS as error:
            raise connection_error(url, error) from error
        return cls(pool, url)

    async def close(self) -> None:
        await self._pool.close()

    @translate_errors("writing buckets")
    async def write(self, chunk: BucketChunk) -> WriteCounts:
        """Write a chunk's new and changed buckets and its progress in one transaction.

        A connection lost before the commit rolls the transaction back, so the
        write is tried once more on a new connection.
        """
        try:
            return await self._write_once(chunk)
        except CONNECTION_ERRORS as error:
            logger.warning("connection lost while writing, writing again: %s", error)
            return await self._write_once(chunk)

    async def _write_once(self, chunk: BucketChunk) -> WriteCounts:
        table, column = TABLES[chunk.unit]
        columns = ["item_id", "metric", column, "total", "settled", "fetched_at"]
        async with self._pool.acquire() as connection, connection.transaction():
            stored = await self._stored_buckets(connection, chunk)
            rows = changed_rows(chunk.rows, stored)
            records = bucket_records(chunk, rows)
            if records and not stored:
                # Nothing to conflict with: COPY straight into the table.
                await connection.copy_records_to_table(
                    table, records=records, columns=columns
                )
            elif records:
                await connection.copy_records_to_table(
                    f"staging_{table}", records=records, columns=columns
                )
                await connection.execute(upsert_sql(chunk.unit))
            await self._extend_progress(connection, chunk)
        inserted = sum(row[1] not in stored.get(row[0], {}) for row in rows)
        return WriteCounts(inserted=inserted, changed=len(rows) - inserted)

    async def _stored_buckets(
        self, connection: asyncpg.Connection, chunk: BucketChunk
    ) -> StoredBuckets:
        """Return the stored total and settled flag of the chunk's buckets, by item.

        Each item's buckets come back as arrays, which asyncpg decodes far
        faster than one record per bucket. Only one run writes at a time (the
        run lock), so they stay current until the transaction commits.
        """
        if not chunk.rows:
            return {}
        table, column = TABLES[chunk.unit]
        records = await connection.fetch(
            f"""SELECT item_id, array_agg({INDEX_SQL[chunk.unit]}),
                       array_agg(total), array_agg(settled)
                FROM {table}
                WHERE item_id = ANY($1::text[]) AND metric = $2
                  AND {column} BETWEEN $3 AND $4
                GROUP BY item_id""",
            list({row[0] for row in chunk.rows}),
            chunk.metric,
            bucket_value(chunk.unit, min(row[1] for row in chunk.rows)),
            bucket_value(chunk.unit, max(row[1] for row in chunk.rows)),
        )
        return {
            item_id: dict(zip(indexes, zip(totals, flags, strict=True), strict=True))
            for item_id, indexes, totals, flags in records
        }

    async def _extend_progress(
        self, connection: asyncpg.Connection, chunk: BucketChunk
    ) -> None:
        update = chunk.progress
        sql, range_args = progress_statement(update)
        since = progress_instant(chunk.unit, update.since)
        for until_index, ids in update.reach.items():
            until = progress_instant(chunk.unit, until_index)
            await connection.execute(
                sql, ids, chunk.metric, chunk.unit.value, until, since, *range_args
            )

    @translate_errors("reading harvest progress")
    async def load_progress(
        self, metric: str, unit: Unit, ids: Sequence[str]
    ) -> dict[str, int]:
        """Return, per item, the first bucket index not yet settled in the store."""
        rows = await self._pool.fetch(
            """SELECT item_id, settled_until AS until FROM harvest_progress
               WHERE metric = $1 AND unit = $2 AND item_id = ANY($3::text[])""",
            metric,
            unit.value,
            list(ids),
        )
        return {row["item_id"]: progress_index(unit, row["until"]) for row in rows}

    @translate_errors("reading backfill progress")
    async def load_backfill_progress(
        self, backfill_range: tuple[datetime, datetime], metric: str, unit: Unit
    ) -> dict[str, int]:
        """Return, per item, where an unfinished backfill of the same range stopped."""
        rows = await self._pool.fetch(
            """SELECT item_id, done_until AS until FROM backfill_progress
               WHERE range_from = $1 AND range_to = $2 AND metric = $3
                 AND unit = $4""",
            *backfill_range,
            metric,
            unit.value,
        )
        return {row["item_id"]: progress_index(unit, row["until"]) for row in rows}

    @translate_errors("clearing backfill progress")
    async def forget_backfill(
        self,
        backfill_range: tuple[datetime, datetime],
        metrics: Sequence[str],
        units: Sequence[Unit],
    ) -> None:
        """Drop the progress of a backfill that finished, so a rerun fetches anew."""
        await self._pool.execute(
            """DELETE FROM backfill_progress
               WHERE range_from = $1 AND range_to = $2
                 AND metric = ANY($3::text[]) AND unit = ANY($4::text[])""",
            *backfill_range,
            list(metrics),
            [unit.value for unit in units],
        )

    @translate_errors("reading the stored token pair")
    async def read_tokens(self, client_id: str) -> TokenPair | None:
        row = await self._pool.fetchrow(
            """SELECT access_token, refresh_token, expires_at FROM oauth_tokens
               WHERE client_id = $1""",
            client_id,
        )
        return None if row is None else TokenPair(*row.values())

    @asynccontextmanager
    async def lock_tokens(
        self, client_id: str, seed_refresh_token: str
    ) -> AsyncIterator[LockedTokens]:
        """Lock the client's token row, created from the config if missing.

        Other processes wait at this lock while one refreshes, then read the
        pair it stored. The pair is committed as soon as the block ends.
        """
        try:
            async with self._locked_token_row(client_id, seed_refresh_token) as row:
                yield row
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise StorageError(
                f"locking the stored token pair failed: {error}; check that "
                "PostgreSQL is running and reachable, then run again"
            ) from error

    @asynccontextmanager
    async def _locked_token_row(
        self, client_id: str, seed_refresh_token: str
    ) -> AsyncIterator[LockedTokens]:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                """INSERT INTO oauth_tokens
                       (client_id, access_token, refresh_token, expires_at)
                   VALUES ($1, '', $2, 'epoch')
                   ON CONFLICT (client_id) DO NOTHING""",
                client_id,
                seed_refresh_token,
            )
            row = await connection.fetchrow(
                """SELECT access_token, refresh_token, expires_at FROM oauth_tokens
                   WHERE client_id = $1 FOR UPDATE""",
                client_id,
            )
            yield LockedTokens(connection, client_id, TokenPair(*row.values()))

    @translate_errors("closing abandoned runs")
    async def close_abandoned_runs(self) -> int:
        """Mark runs still `running` as abandoned; call it holding the run lock."""
        result = await self._pool.execute(
            """UPDATE harvest_runs SET status = 'abandoned', ended_at = now(),
                   error = 'the process ended without recording an outcome'
               WHERE status = 'running'"""
        )
        return int(result.split()[-1])

    @translate_errors("recording the run start")
    async def start_run(
        self,
        kind: str,
        range_from: datetime | None,
        range_to: datetime | None,
        metrics: Sequence[str],
        units: Sequence[Unit],
        items: int,
    ) -> int:
        run_id = await self._pool.fetchval(
            """INSERT INTO harvest_runs
                   (kind, range_from, range_to, metrics, units, items)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING run_id""",
            kind,
            range_from,
            range_to,
            list(metrics),
            [unit.value for unit in units],
            items,
        )
        return int(run_id)

    @translate_errors("recording the run counters")
    async def record_counts(self, run_id: int, outcome: dict[str, Any]) -> None:
        """Update a running run's counters; its status and end stay as they are."""
        await self._pool.execute(
            """UPDATE harvest_runs SET requests = $2, retries = $3,
                   rows_inserted = $4, rows_changed = $5, failed_items = $6::jsonb
               WHERE run_id = $1 AND status = 'running'""",
            run_id,
            outcome["requests"],
            outcome["retries"],
            outcome["rows_inserted"],
            outcome["rows_changed"],
            orjson.dumps(outcome["failed_items"]).decode(),
        )

    @translate_errors("recording the run outcome")
    async def finish_run(self, run_id: int, outcome: dict[str, Any]) -> None:
        await self._pool.execute(
            """UPDATE harvest_runs SET ended_at = now(), status = $2,
                   requests = $3, retries = $4, rows_inserted = $5,
                   rows_changed = $6, failed_items = $7::jsonb, error = $8
               WHERE run_id = $1""",
            run_id,
            outcome["status"],
            outcome["requests"],
            outcome["retries"],
            outcome["rows_inserted"],
            outcome["rows_changed"],
            orjson.dumps(outcome["failed_items"]).decode(),
            outcome.get("error"),
        )
