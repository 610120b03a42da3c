"""Numbered SQL migrations, applied in order under an advisory lock."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import asyncpg

from harvester.errors import StorageError

logger = logging.getLogger(__name__)

# Any constant works; it only has to differ from the run lock.
MIGRATION_LOCK_KEY = 0x68617276_0001
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations_dir() -> Path:
    """Return the folder of SQL files: inside the wheel, or at the repository top."""
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parent.parent / "migrations"


def list_migrations(folder: Path) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise StorageError(
                f"migration file {path.name!r} is misnamed: use NNNN_description.sql"
            )
        found.append((int(match.group(1)), path.stem, path))
    if not found:
        raise StorageError(
            f"no migrations found in {str(folder)!r}: reinstall harvester"
        )
    return found


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now()
               )"""
        )
        done = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        applied = []
        for version, name, path in list_migrations(migrations_dir()):
            if version not in done:
                await apply_one(connection, version, name, path)
                applied.append(name)
        return applied
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def apply_one(
    connection: asyncpg.Connection, version: int, name: str, path: Path
) -> None:
    async with connection.transaction():
        sql = path.read_text(encoding="utf-8")  # noqa: ASYNC240 - a small local file
        await connection.execute(sql)
        await connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            version,
            name,
        )
    logger.info("applied migration %s", name)
