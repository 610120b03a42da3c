"""Connecting to PostgreSQL: session settings, migrations, error translation."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import asyncpg

from harvester.config import mask_url
from harvester.errors import StorageError
from harvester.migrations import apply_migrations

CONNECT_TIMEOUT_S = 10.0
# Errors of a connection that broke, after which a new one may work.
CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)
DATABASE_ERRORS = (
    *CONNECTION_ERRORS,
    TimeoutError,
    ValueError,
    OverflowError,
    asyncpg.PostgresError,
)

P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(
    action: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Turn asyncpg and socket errors of a store method into StorageError."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except DATABASE_ERRORS as error:
                raise StorageError(
                    f"{action} failed: {type(error).__name__}: {error}; check that "
                    "PostgreSQL is running and reachable, then run again"
                ) from error

        return translated

    return decorate


def session_settings(superuser: bool) -> dict[str, str]:
    """Return the settings every pooled connection starts with.

    They are startup parameters rather than SET commands because the pool runs
    RESET ALL whenever a connection is released.
    """
    settings = {
        # Plan at every execution: a plan cached while item_hourly was small
        # would scan the whole table once it is large.
        "plan_cache_mode": "force_custom_plan",
        # Losing the last commits in a server crash is safe: each commit carries
        # its own progress, so what is lost is fetched again by the next run.
        "synchronous_commit": "off",
    }
    if superuser:
        # A re-harvest changes rows on most pages, and the first change of a
        # page after a checkpoint logs the whole page. Only superusers may set
        # this for a session; for others the server's setting applies.
        settings["wal_compression"] = "on"
    return settings


async def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the names of those applied."""
    try:
        connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS as error:
        raise connection_error(url, error) from error
    try:
        return await apply_migrations(connection)
    except DATABASE_ERRORS as error:
        raise StorageError(f"applying migrations failed: {error}") from error
    finally:
        await connection.close()


async def is_superuser(url: str) -> bool:
    connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        return bool(
            await connection.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
        )
    finally:
        await connection.close()


def connection_error(url: str, error: BaseException) -> StorageError:
    shown = mask_url(url)
    if isinstance(
        error,
        asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError,
    ):
        return StorageError(
            f"PostgreSQL at {shown} rejected the credentials: fix the user or "
            "password in [database] url or HARVESTER_DATABASE_URL"
        )
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return StorageError(
            f"the database in {shown} does not exist: create it or fix [database] url"
        )
    if isinstance(error, TimeoutError):
        return StorageError(
            f"connecting to PostgreSQL at {shown} timed out after "
            f"{CONNECT_TIMEOUT_S:.0f}s: check that the server is running and reachable"
        )
    return StorageError(
        f"cannot connect to PostgreSQL at {shown}: {error}; check that the server "
        "is running and [database] url is right"
    )
