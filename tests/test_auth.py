"""Access tokens against the sandbox's OAuth endpoint, with a real PostgreSQL store.

The sandbox rotates refresh tokens. Each grant issues a new one and invalidates
the one it used. The tests record every grant the sandbox receives by wrapping
its OAuthState.refresh, and simulate server-side revocation or a policy block
by wrapping its OAuthState.check_access.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from harvester import app
from harvester.auth import REFRESH_MARGIN, FixedToken, OAuthTokens
from harvester.config import ApiSettings, Settings
from harvester.database import migrate
from harvester.errors import AuthError, StorageError
from harvester.retry import RetryPolicy
from harvester.sandbox.oauth import invalid_access_token
from harvester.sandbox.responses import ApiError as SandboxApiError
from harvester.sandbox.server import RunningSandbox, start_sandbox
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.traffic import Traffic
from harvester.store import Store, TokenPair
from tests.conftest import FROZEN_NOW, make_settings

REPOSITORY = Path(__file__).resolve().parent.parent
TOKEN_CLIENT = Path(__file__).resolve().parent / "token_client.py"

CLIENT_ID = "4521"
TOKEN_TTL = timedelta(hours=6)
ITEMS = 6
BATCH_SIZE = 2
# The tests poll this many times, this far apart (30 s in all), for sessions to
# queue at the token row lock.
LOCK_WAIT_POLLS = 600
LOCK_WAIT_POLL_S = 0.05
POLICY_BLOCK_MESSAGE = (
    "blocked by PolicyAgent: at least one policy returned UNAUTHORIZED"
)


def new_secret(prefix: str) -> str:
    """Return a unique secret, so that any leak of it into text can be found."""
    return f"{prefix}-{secrets.token_hex(16)}"


@dataclass
class Credentials:
    """One OAuth client's secret and the first refresh token the sandbox accepts."""

    client_secret: str = field(default_factory=lambda: new_secret("client-secret"))
    refresh_token: str = field(default_factory=lambda: new_secret("TG-first"))


class MovableClock:
    """A clock for the sandbox and the harvester that changes only in advance()."""

    def __init__(self, now: datetime = FROZEN_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class GrantLog:
    """Every refresh grant the sandbox received, with the token bodies it issued."""

    sent: list[str] = field(default_factory=list)
    issued: list[dict[str, Any]] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)

    @property
    def access_tokens(self) -> list[str]:
        return [body["access_token"] for body in self.issued]

    @property
    def refresh_tokens(self) -> list[str]:
        return [body["refresh_token"] for body in self.issued]


def record_grants(sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch) -> GrantLog:
    """Wrap the sandbox's refresh grant to record every call and its result."""
    log = GrantLog()
    oauth = sandbox.state.oauth
    grant = oauth.refresh

    def recording_grant(form: Mapping[str, str]) -> dict[str, Any]:
        log.sent.append(form.get("refresh_token", ""))
        try:
            body = grant(form)
        except SandboxApiError as error:
            log.error_codes.append(error.error)
            raise
        log.issued.append(body)
        return body

    monkeypatch.setattr(oauth, "refresh", recording_grant)
    return log


def revoke_tokens_at(
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    grants: GrantLog,
    request_number: int,
    on_revoke: Callable[[], None] = lambda: None,
) -> None:
    """Revoke every access token issued so far when the n-th API request arrives."""
    oauth = sandbox.state.oauth
    check_access = oauth.check_access
    revoked: set[str] = set()
    seen = 0

    def revoking_check(token: str) -> None:
        nonlocal seen
        seen += 1
        if seen == request_number:
            revoked.update(grants.access_tokens)
            on_revoke()
        if token in revoked:
            raise invalid_access_token()
        check_access(token)

    monkeypatch.setattr(oauth, "check_access", revoking_check)


def block_by_policy(
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    is_blocked: Callable[[str], bool],
) -> None:
    """Reject each token that `is_blocked` selects with a 403 naming PolicyAgent."""
    oauth = sandbox.state.oauth
    check_access = oauth.check_access

    def policy_check(token: str) -> None:
        if is_blocked(token):
            raise SandboxApiError(403, "forbidden", POLICY_BLOCK_MESSAGE)
        check_access(token)

    monkeypatch.setattr(oauth, "check_access", policy_check)


def oauth_sandbox(credentials: Credentials) -> SandboxSettings:
    return SandboxSettings(
        client_id=CLIENT_ID,
        client_secret=credentials.client_secret,
        refresh_token=credentials.refresh_token,
        token_ttl_s=int(TOKEN_TTL.total_seconds()),
    )


def traffic() -> Traffic:
    return Traffic(seed=3, items=ITEMS)


def oauth_settings(
    sandbox_url: str, database_url: str, credentials: Credentials, **api: object
) -> Settings:
    """Build harvest settings with OAuth credentials and no access token."""
    oauth: dict[str, object] = {
        "access_token": "",
        "client_id": CLIENT_ID,
        "client_secret": credentials.client_secret,
        "refresh_token": credentials.refresh_token,
        "batch_size": BATCH_SIZE,
    }
    oauth.update(api)
    return make_settings(sandbox_url, database_url, traffic().item_ids(), **oauth)


@asynccontextmanager
async def open_tokens(
    api: ApiSettings, database_url: str, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[OAuthTokens]:
    """Yield an OAuthTokens with its own Store and HTTP session."""
    store = await Store.open(database_url, pool_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            policy = RetryPolicy(api)
            if clock is None:
                yield OAuthTokens(api, session, store, policy)
            else:
                yield OAuthTokens(api, session, store, policy, clock=clock)
    finally:
        await store.close()


async def fetch_rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


async def stored_pair(url: str) -> asyncpg.Record:
    rows = await fetch_rows(
        url,
        "SELECT access_token, refresh_token, expires_at FROM oauth_tokens "
        "WHERE client_id = $1",
        CLIENT_ID,
    )
    assert len(rows) == 1
    return rows[0]


async def seed_token_row(url: str, access_token: str, refresh_token: str) -> None:
    """Store a token pair as an earlier run would have left it."""
    await migrate(url)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """INSERT INTO oauth_tokens
                   (client_id, access_token, refresh_token, expires_at)
               VALUES ($1, $2, $3, 'epoch')""",
            CLIENT_ID,
            access_token,
            refresh_token,
        )
    finally:
        await connection.close()


async def bucket_count(url: str) -> int:
    rows = await fetch_rows(
        url,
        "SELECT (SELECT count(*) FROM item_hourly) + "
        "(SELECT count(*) FROM item_daily) AS total",
    )
    return int(rows[0]["total"])


@asynccontextmanager
async def hold_token_row(url: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold the row lock on the client's stored token pair until the block ends."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            await connection.execute(
                "SELECT 1 FROM oauth_tokens WHERE client_id = $1 FOR UPDATE", CLIENT_ID
            )
            yield connection
    finally:
        await connection.close()


async def wait_for_lock_waiters(connection: asyncpg.Connection, count: int) -> None:
    """Return once `count` other sessions of this database wait for a lock."""
    waiting = 0
    for _ in range(LOCK_WAIT_POLLS):
        waiting = await connection.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        )
        if waiting >= count:
            return
        await asyncio.sleep(LOCK_WAIT_POLL_S)
    raise AssertionError(
        f"timed out waiting for {count} sessions at the token row lock: "
        f"{waiting} were waiting"
    )


@asynccontextmanager
async def token_clients(
    options: dict[str, str], count: int
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start `count` token_client.py processes and wait until each has its Store open.

    Processes still running when the block ends are killed.
    """
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    processes: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(TOKEN_CLIENT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environment,
            )
            processes.append(process)
            assert process.stdin is not None
            assert process.stdout is not None
            assert process.stderr is not None
            process.stdin.write(json.dumps(options).encode() + b"\n")
            await process.stdin.drain()
            ready = await process.stdout.readline()
            if ready != b"ready\n":
                errors = await process.stderr.read()
                raise AssertionError(f"token_client.py failed: {errors.decode()}")
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


# A harvest with OAuth credentials only


async def test_oauth_harvest_stores_current_pair(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        report = await app.harvest(settings, clock=clock)
        current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert report.status == "ok"
    assert grants.sent == [credentials.refresh_token]
    assert pair["refresh_token"] == current
    assert pair["access_token"] == grants.access_tokens[0]
    assert sandbox.stats.by_status[401] == 0


async def test_second_harvest_reuses_token(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        await app.harvest(settings, clock=clock)
        after_first = sandbox.state.current_refresh_token
        pair_after_first = await stored_pair(database_url)
        second = await app.harvest(settings, clock=clock)
        after_second = sandbox.state.current_refresh_token

    pair_after_second = await stored_pair(database_url)
    assert second.status == "ok"
    assert len(grants.sent) == 1
    assert after_second == after_first
    assert pair_after_second["access_token"] == pair_after_first["access_token"]
    assert pair_after_second["refresh_token"] == after_second
    assert sandbox.stats.by_status[401] == 0


# Expiry


async def test_stored_expiry_follows_run_clock(database_url: str) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        settings = oauth_settings(sandbox.url, database_url, credentials)
        await app.harvest(settings, clock=clock)

    pair = await stored_pair(database_url)
    assert pair["expires_at"] == FROZEN_NOW + TOKEN_TTL


async def test_harvest_refreshes_near_expiry(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        await app.harvest(settings, clock=clock)
        clock.advance(TOKEN_TTL - REFRESH_MARGIN / 2)
        report = await app.harvest(settings, clock=clock)

    assert report.status == "ok"
    assert sandbox.stats.by_status[401] == 0
    assert len(grants.sent) == 2


async def test_token_near_expiry_refreshed_early(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with open_tokens(api, database_url, clock=clock) as tokens:
            first = await tokens.token()
            clock.advance(TOKEN_TTL - REFRESH_MARGIN / 2)
            second = await tokens.token()
            current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert len(grants.sent) == 2
    assert grants.sent[1] == grants.refresh_tokens[0]
    assert first == grants.access_tokens[0]
    assert second == grants.access_tokens[1]
    assert pair["refresh_token"] == current
    assert pair["expires_at"] == clock.now + TOKEN_TTL


async def test_token_outside_margin_reused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with open_tokens(api, database_url, clock=clock) as tokens:
            first = await tokens.token()
            clock.advance(TOKEN_TTL - REFRESH_MARGIN * 2)
            second = await tokens.token()

    assert len(grants.sent) == 1
    assert second == first


async def test_stored_fresh_token_reused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with open_tokens(api, database_url, clock=clock) as tokens:
            first = await tokens.token()
        async with open_tokens(api, database_url, clock=clock) as tokens:
            second = await tokens.token()

    assert len(grants.sent) == 1
    assert second == first


async def test_expired_token_refreshed_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        await app.harvest(settings, clock=clock)
        clock.advance(TOKEN_TTL + timedelta(minutes=1))
        report = await app.harvest(settings, clock=clock)
        current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert report.status == "ok"
    assert len(grants.sent) == 2
    assert grants.error_codes == []
    assert pair["refresh_token"] == current


async def test_revoked_token_mid_run(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        # Request 1 is the preflight, so the revocation lands inside the run.
        revoke_tokens_at(sandbox, monkeypatch, grants, request_number=4)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        report = await app.harvest(settings, clock=clock)
        current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert report.status == "ok"
    assert report.failed_items == {}
    assert sandbox.stats.by_status[401] >= 1
    assert len(grants.sent) == 2
    assert grants.error_codes == []
    assert pair["refresh_token"] == current
    assert pair["access_token"] == grants.access_tokens[1]


# Concurrent refreshes


async def test_processes_share_one_refresh(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    await seed_token_row(database_url, "", credentials.refresh_token)
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        options = {
            "database_url": database_url,
            "base_url": sandbox.url,
            "client_id": CLIENT_ID,
            "client_secret": credentials.client_secret,
            "refresh_token": credentials.refresh_token,
        }
        async with token_clients(options, 2) as processes:
            async with hold_token_row(database_url) as connection:
                for process in processes:
                    assert process.stdin is not None
                    process.stdin.write(b"go\n")
                    await process.stdin.drain()
                await wait_for_lock_waiters(connection, 2)
            outputs = [await process.communicate() for process in processes]
        current = sandbox.state.current_refresh_token

    results = [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]
    pair = await stored_pair(database_url)
    assert processes[0].returncode == 0, outputs[0][1].decode()
    assert processes[1].returncode == 0, outputs[1][1].decode()
    assert "error" not in results[0]
    assert "error" not in results[1]
    assert grants.sent == [credentials.refresh_token]
    assert grants.error_codes == []
    assert results[0]["access_token"] == grants.access_tokens[0]
    assert results[1]["access_token"] == grants.access_tokens[0]
    assert results[0]["refreshes"] + results[1]["refreshes"] == 1
    assert pair["refresh_token"] == current


async def test_two_instances_share_one_refresh(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    await seed_token_row(database_url, "", credentials.refresh_token)
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with (
            open_tokens(api, database_url) as first,
            open_tokens(api, database_url) as second,
        ):
            async with hold_token_row(database_url) as connection:
                pending = asyncio.gather(first.token(), second.token())
                await wait_for_lock_waiters(connection, 2)
            tokens = await pending
        current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert grants.sent == [credentials.refresh_token]
    assert grants.error_codes == []
    assert tokens[0] == grants.access_tokens[0]
    assert tokens[1] == grants.access_tokens[0]
    assert first.refreshes + second.refreshes == 1
    assert pair["refresh_token"] == current


async def test_concurrent_tokens_single_flight(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with open_tokens(api, database_url) as tokens:
            results = await asyncio.gather(*(tokens.token() for _ in range(20)))

    assert len(grants.sent) == 1
    assert set(results) == {grants.access_tokens[0]}
    assert tokens.refreshes == 1


async def test_concurrent_refresh_single_flight(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        async with open_tokens(api, database_url) as tokens:
            rejected = await tokens.token()
            results = await asyncio.gather(
                *(tokens.refresh(rejected) for _ in range(10))
            )
            current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert len(grants.sent) == 2
    assert set(results) == {grants.access_tokens[1]}
    assert tokens.refreshes == 2
    assert pair["refresh_token"] == current


# invalid_grant


async def test_stale_stored_token_uses_config(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        api = oauth_settings(sandbox.url, database_url, credentials).api
        # Another client redeems the first refresh token. The operator then
        # authorises again and puts the new refresh token in the config.
        async with open_tokens(api, database_url) as tokens:
            await tokens.token()
        used = credentials.refresh_token
        reauthorised = replace(api, refresh_token=sandbox.state.current_refresh_token)
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(
                """UPDATE oauth_tokens SET access_token = '', refresh_token = $2,
                       expires_at = 'epoch' WHERE client_id = $1""",
                CLIENT_ID,
                used,
            )
        finally:
            await connection.close()
        grants = record_grants(sandbox, monkeypatch)
        async with open_tokens(reauthorised, database_url) as tokens:
            access_token = await tokens.token()
        current = sandbox.state.current_refresh_token

    pair = await stored_pair(database_url)
    assert grants.sent == [used, reauthorised.refresh_token]
    assert grants.error_codes == ["invalid_grant"]
    assert access_token == grants.access_tokens[0]
    assert pair["refresh_token"] == current
    assert pair["access_token"] == access_token


async def test_both_refresh_tokens_stale(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    stale = new_secret("TG-stale")
    await seed_token_row(database_url, "", stale)
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        api = oauth_settings(sandbox.url, database_url, credentials).api
        api = replace(api, refresh_token=new_secret("TG-also-stale"))
        async with open_tokens(api, database_url) as tokens:
            with pytest.raises(AuthError) as raised:
                await tokens.token()

    pair = await stored_pair(database_url)
    message = str(raised.value)
    assert "invalid_grant" in message
    assert "must be authorised again" in message
    assert "[api] refresh_token" in message
    assert grants.sent == [stale, api.refresh_token]
    assert grants.error_codes == ["invalid_grant", "invalid_grant"]
    assert pair["refresh_token"] == stale


async def test_stale_tokens_stop_harvest(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    stale = new_secret("TG-stale")
    await seed_token_row(database_url, "", stale)
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(
            sandbox.url, database_url, credentials, refresh_token=stale
        )
        with pytest.raises(AuthError) as raised:
            await app.harvest(settings, clock=clock)

    runs = await fetch_rows(database_url, "SELECT status FROM harvest_runs")
    assert "must be authorised again" in str(raised.value)
    assert grants.error_codes == ["invalid_grant"]
    assert await bucket_count(database_url) == 0
    assert "ok" not in [run["status"] for run in runs]


# A fixed access token


async def test_fixed_token_rejected(database_url: str) -> None:
    clock = MovableClock()
    sandbox_settings = SandboxSettings(token=new_secret("valid-token"))
    async with await start_sandbox(sandbox_settings, traffic(), clock=clock) as sandbox:
        settings = make_settings(
            sandbox.url,
            database_url,
            traffic().item_ids(),
            access_token=new_secret("wrong-token"),
        )
        with pytest.raises(AuthError) as raised:
            await app.harvest(settings, clock=clock)

    runs = await fetch_rows(database_url, "SELECT run_id FROM harvest_runs")
    message = str(raised.value)
    assert "[api] access_token" in message
    assert "HARVESTER_ACCESS_TOKEN" in message
    assert sandbox.stats.requests == 1
    assert sandbox.stats.by_status[401] == 1
    assert runs == []
    assert await bucket_count(database_url) == 0


async def test_fixed_token_refresh_raises() -> None:
    tokens = FixedToken(new_secret("fixed-token"))
    with pytest.raises(AuthError) as raised:
        await tokens.refresh(await tokens.token())
    assert "HARVESTER_ACCESS_TOKEN" in str(raised.value)


# 403 from the API's policy layer


async def test_policy_block_refreshes_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        block_by_policy(
            sandbox, monkeypatch, lambda token: token == grants.access_tokens[0]
        )
        settings = oauth_settings(sandbox.url, database_url, credentials)
        report = await app.harvest(settings, clock=clock)

    assert report.status == "ok"
    assert sandbox.stats.by_status[403] == 1
    assert len(grants.sent) == 2


async def test_policy_block_persists(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        block_by_policy(sandbox, monkeypatch, lambda token: True)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        with pytest.raises(AuthError) as raised:
            await app.harvest(settings, clock=clock)

    message = str(raised.value)
    assert raised.value.status == 403
    assert "PolicyAgent" in message
    assert "permission" in message
    assert sandbox.stats.by_status[403] == 2
    assert len(grants.sent) == 2
    assert await bucket_count(database_url) == 0


async def test_plain_403_skips_refresh(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials()
    clock = MovableClock()
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        oauth = sandbox.state.oauth

        def forbidden(token: str) -> None:
            raise SandboxApiError(
                403, "forbidden", "the item belongs to another seller"
            )

        monkeypatch.setattr(oauth, "check_access", forbidden)
        settings = oauth_settings(sandbox.url, database_url, credentials)
        report = await app.harvest(settings, clock=clock)

    assert set(report.failed_items) == set(traffic().item_ids())
    assert sandbox.stats.by_status[401] == 0
    assert len(grants.sent) == 1


# Secrets


@pytest.fixture
async def secret_database(
    database_url: str, server_url: str
) -> AsyncIterator[tuple[str, str | None]]:
    """Yield a database URL and the password it contains.

    With HARVESTER_TEST_DATABASE_URL set, a new role with a password owns a new
    database. Without it the password is None and the URL is `database_url`,
    because the embedded server's URL contains no password.
    """
    if not os.environ.get("HARVESTER_TEST_DATABASE_URL"):
        yield database_url, None
        return
    suffix = uuid.uuid4().hex[:12]
    role = f"harvester_role_{suffix}"
    name = f"harvester_test_{suffix}"
    password = new_secret("db-password")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f'CREATE DATABASE "{name}" OWNER {role}')
    finally:
        await admin.close()
    parts = urlsplit(server_url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    yield urlunsplit(parts._replace(netloc=netloc, path=f"/{name}")), password
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


def assert_hidden(text: str, hidden: Iterable[str], where: str) -> None:
    for secret in hidden:
        assert secret not in text, f"a secret appears in {where}"


def error_chain_text(error: BaseException) -> str:
    """Return str() of an error and of every error it was raised from or during."""
    texts = []
    current: BaseException | None = error
    while current is not None:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


async def harvest_runs_text(url: str) -> str:
    rows = await fetch_rows(url, "SELECT * FROM harvest_runs ORDER BY run_id")
    return "\n".join(str(value) for row in rows for value in row.values())


async def test_oauth_runs_hide_secrets(
    secret_database: tuple[str, str | None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, password = secret_database
    credentials = Credentials()
    clock = MovableClock()
    errors: list[BaseException] = []
    async with await start_sandbox(
        oauth_sandbox(credentials), traffic(), clock=clock
    ) as sandbox:
        grants = record_grants(sandbox, monkeypatch)
        settings = oauth_settings(sandbox.url, url, credentials)

        # First run: a 401 inside the run, then a successful refresh.
        revoke_tokens_at(sandbox, monkeypatch, grants, request_number=4)
        refreshed = await app.harvest(settings, clock=clock)

        # Second run: a 401 inside the run, then a refresh grant that fails
        # because the account's refresh token was revoked.
        def revoke_refresh_token() -> None:
            sandbox.state.oauth.current_refresh_token = new_secret("TG-elsewhere")

        revoke_tokens_at(
            sandbox,
            monkeypatch,
            grants,
            request_number=4,
            on_revoke=revoke_refresh_token,
        )
        with pytest.raises(AuthError) as failed_run:
            await app.harvest(settings, clock=clock)
        errors.append(failed_run.value)

        # Third run: the operator authorises again, so the refresh token in the
        # config recovers, but a policy block persists after the refresh.
        reauthorised = new_secret("TG-reauthorised")
        sandbox.state.oauth.current_refresh_token = reauthorised
        block_by_policy(sandbox, monkeypatch, lambda token: True)
        blocked_settings = replace(
            settings, api=replace(settings.api, refresh_token=reauthorised)
        )
        with pytest.raises(AuthError) as blocked:
            await app.harvest(blocked_settings, clock=clock)
        errors.append(blocked.value)

        # Fourth run: another client id, so no stored pair applies, with a wrong
        # client secret, so the first grant fails with invalid_client.
        wrong_secret = new_secret("wrong-client-secret")
        wrong_settings = replace(
            settings,
            api=replace(settings.api, client_id="9999", client_secret=wrong_secret),
        )
        with pytest.raises(AuthError) as rejected_client:
            await app.harvest(wrong_settings, clock=clock)
        errors.append(rejected_client.value)

    hidden = [
        credentials.client_secret,
        credentials.refresh_token,
        reauthorised,
        wrong_secret,
        *grants.access_tokens,
        *grants.refresh_tokens,
    ]
    if password is not None:
        hidden.append(password)
    runs = await fetch_rows(url, "SELECT status FROM harvest_runs ORDER BY run_id")
    assert refreshed.status == "ok"
    assert [run["status"] for run in runs] == ["ok", "failed"]
    assert len(grants.access_tokens) == 3
    assert "permission" in str(blocked.value)
    assert "invalid_client" in str(rejected_client.value)
    assert_hidden(caplog.text, hidden, "the log")
    assert_hidden(await harvest_runs_text(url), hidden, "harvest_runs")
    for error in errors:
        assert_hidden(error_chain_text(error), hidden, f"error {error!r}")


async def test_fixed_token_runs_hide_secrets(
    secret_database: tuple[str, str | None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, password = secret_database
    valid_token = new_secret("valid-token")
    wrong_token = new_secret("wrong-token")
    clock = MovableClock()
    sandbox_settings = SandboxSettings(token=valid_token)
    async with await start_sandbox(sandbox_settings, traffic(), clock=clock) as sandbox:
        settings = make_settings(
            sandbox.url, url, traffic().item_ids(), access_token=valid_token
        )
        report = await app.harvest(settings, clock=clock)
        rejected_settings = replace(
            settings, api=replace(settings.api, access_token=wrong_token)
        )
        with pytest.raises(AuthError) as rejected:
            await app.harvest(rejected_settings, clock=clock)

    hidden = [valid_token, wrong_token]
    if password is not None:
        hidden.append(password)
    assert report.status == "ok"
    assert_hidden(caplog.text, hidden, "the log")
    assert_hidden(await harvest_runs_text(url), hidden, "harvest_runs")
    assert_hidden(error_chain_text(rejected.value), hidden, "the AuthError")


async def test_reprs_hide_secrets(secret_database: tuple[str, str | None]) -> None:
    url, password = secret_database
    credentials = Credentials()
    fixed_token = new_secret("fixed-token")
    async with await start_sandbox(oauth_sandbox(credentials), traffic()) as sandbox:
        settings = oauth_settings(sandbox.url, url, credentials)
        settings = replace(
            settings, api=replace(settings.api, access_token=fixed_token)
        )
        api = replace(settings.api, access_token="")
        store = await Store.open(url, pool_size=1)
        try:
            async with aiohttp.ClientSession() as session:
                tokens = OAuthTokens(api, session, store, RetryPolicy(api))
                access_token = await tokens.token()
            pair = await store.read_tokens(CLIENT_ID)
            reprs = {
                "Settings": repr(settings),
                "ApiSettings": repr(settings.api),
                "DatabaseSettings": repr(settings.database),
                "TokenPair": repr(pair),
                "OAuthTokens": repr(tokens),
                "FixedToken": repr(FixedToken(fixed_token)),
                "Store": repr(store),
            }
        finally:
            await store.close()

    assert isinstance(pair, TokenPair)
    hidden = [
        credentials.client_secret,
        credentials.refresh_token,
        fixed_token,
        access_token,
        pair.refresh_token,
    ]
    if password is not None:
        hidden.append(password)
    for name, text in reprs.items():
        assert_hidden(text, hidden, f"repr of {name}")


async def test_store_error_hides_password(
    secret_database: tuple[str, str | None],
) -> None:
    url, password = secret_database
    if password is None:
        pytest.skip(
            "needs HARVESTER_TEST_DATABASE_URL to create a role with a password"
        )
    missing = urlunsplit(urlsplit(url)._replace(path=f"/missing_{uuid.uuid4().hex}"))
    with pytest.raises(StorageError) as raised:
        await Store.open(missing, pool_size=1)

    message = str(raised.value)
    assert "does not exist" in message
    assert password not in message
    assert "***" in message
