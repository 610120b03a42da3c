"""The `harvester` command as cron and users run it: exit codes, messages, crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from harvester.sandbox.server import RunningSandbox, start_sandbox
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.traffic import Traffic
from tests.conftest import DatabaseFactory

REPO = Path(__file__).resolve().parent.parent
TOKEN = "cli-test-token"
TABLES = ("item_hourly", "item_daily", "harvest_runs", "harvest_progress")


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVESTER_")}
    env["PYTHONPATH"] = str(REPO)
    return env


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )


async def finish(process: asyncio.subprocess.Process) -> Completed:
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


async def run_cli(*args: str) -> Completed:
    return await finish(await start_cli(*args))


def write_config(
    folder: Path, api_url: str, database_url: str, ids: list[str], extra: str = ""
) -> Path:
    ids_file = folder / "items.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    config = folder / "harvester.toml"
    config.write_text(
        f"""
[api]
base_url = "{api_url}"
access_token = "{TOKEN}"
rate_per_s = 200.0
batch_size = 20
max_last = 24
timeout_s = 5.0
backoff_initial_s = 0.05
backoff_max_s = 0.2

[database]
url = "{database_url}"

[items]
file = "items.txt"

[harvest]
settle_hours = 0
lookback_days = 1
{extra}
"""
    )
    return config


async def snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Return every row of the harvester's tables, for before/after comparisons."""
    connection = await asyncpg.connect(url)
    try:
        rows = {}
        for table in TABLES:
            exists = await connection.fetchval("SELECT to_regclass($1)", table)
            if exists is None:
                rows[table] = []
                continue
            records = await connection.fetch(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
            rows[table] = [tuple(record.values()) for record in records]
        return rows
    finally:
        await connection.close()


async def bucket_rows(url: str) -> set[tuple[object, ...]]:
    """Return stored buckets without fetched_at, which differs between runs."""
    connection = await asyncpg.connect(url)
    try:
        hourly = await connection.fetch(
            "SELECT item_id, metric, hour, total, settled FROM item_hourly"
        )
        daily = await connection.fetch(
            "SELECT item_id, metric, day, total, settled FROM item_daily"
        )
    finally:
        await connection.close()
    return {tuple(r.values()) for r in hourly} | {tuple(r.values()) for r in daily}


async def count_rows(url: str, table: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        exists = await connection.fetchval("SELECT to_regclass($1)", table)
        if exists is None:
            return 0
        return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await connection.close()


async def run_statuses(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT status FROM harvest_runs ORDER BY run_id")
    finally:
        await connection.close()
    return [row["status"] for row in rows]


async def wait_for_rows(
    process: asyncio.subprocess.Process, url: str, table: str, minimum: int
) -> None:
    """Poll until `table` has `minimum` rows; fail if the process ends first."""
    for _ in range(2000):
        if await count_rows(url, table) >= minimum:
            return
        assert process.returncode is None, "the run ended before the kill point"
        await asyncio.sleep(0.02)
    raise AssertionError(f"{table} never reached {minimum} rows")


def past_days(days: int) -> tuple[str, str]:
    """Return --from and --to for the `days` whole UTC days before yesterday."""
    last = datetime.now(UTC).date() - timedelta(days=2)
    first = last - timedelta(days=days - 1)
    return first.isoformat(), last.isoformat()


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    traffic = Traffic(seed=3, items=120)
    settings = SandboxSettings(token=TOKEN, max_ids=20, rate=40.0)
    async with await start_sandbox(settings, traffic) as running:
        yield running


@pytest.fixture
def traffic() -> Traffic:
    return Traffic(seed=3, items=120)


async def test_backfill_reports_unknown_item(
    sandbox: RunningSandbox, traffic: Traffic, database_url: str, tmp_path: Path
) -> None:
    ids = [*traffic.item_ids()[:59], "MLA999999999"]
    config = write_config(tmp_path, sandbox.url, database_url, ids)
    first, last = past_days(1)

    result = await run_cli(
        "--config", str(config), "backfill", "--from", first, "--to", last
    )

    assert result.code == 1
    assert "59 items ok, 1 failed" in result.stdout
    failure_lines = [
        line for line in result.stdout.splitlines() if "MLA999999999:" in line
    ]
    assert len(failure_lines) == 1
    assert ": http_400:bad_request" in failure_lines[0]
    assert "Traceback" not in result.stderr
    stored = await bucket_rows(database_url)
    assert {row[0] for row in stored} == set(ids[:59])
    day = date.fromisoformat(first)
    for item_id in ids[:59]:
        for metric in ("questions", "phone_views"):
            expected = traffic.day_count(item_id, metric, day)
            assert (item_id, metric, day, expected, True) in stored


async def test_second_run_is_locked_out(
    database_url: str, tmp_path: Path, traffic: Traffic
) -> None:
    slow = SandboxSettings(token=TOKEN, max_ids=20, rate=5.0)
    async with await start_sandbox(slow, traffic) as running:
        config = write_config(tmp_path, running.url, database_url, traffic.item_ids())
        first, last = past_days(2)
        args = ("--config", str(config), "backfill", "--from", first, "--to", last)
        holder = await start_cli(*args)
        await wait_for_rows(holder, database_url, "item_hourly", 1)

        second = await run_cli("--config", str(config), "harvest")
        held = await finish(holder)

    assert second.code == 5
    assert "another harvest or backfill is running" in second.stderr
    assert "Traceback" not in second.stderr
    assert held.code == 0
    assert await run_statuses(database_url) == ["ok"]


async def test_sigterm_records_interrupted_run(
    database_url: str, tmp_path: Path, traffic: Traffic
) -> None:
    slow = SandboxSettings(token=TOKEN, max_ids=20, rate=5.0)
    async with await start_sandbox(slow, traffic) as running:
        config = write_config(tmp_path, running.url, database_url, traffic.item_ids())
        first, last = past_days(2)
        process = await start_cli(
            "--config", str(config), "backfill", "--from", first, "--to", last
        )
        await wait_for_rows(process, database_url, "item_hourly", 1)
        process.send_signal(signal.SIGTERM)
        result = await finish(process)

    assert result.code == 130
    assert "interrupted" in result.stderr
    assert "Traceback" not in result.stderr
    assert await run_statuses(database_url) == ["interrupted"]


async def test_killed_backfill_resumes_exactly(
    sandbox: RunningSandbox,
    traffic: Traffic,
    database_factory: DatabaseFactory,
    tmp_path: Path,
) -> None:
    clean_url = await database_factory()
    killed_url = await database_factory()
    ids = traffic.item_ids()
    first, last = past_days(3)
    clean_dir = tmp_path / "clean"
    killed_dir = tmp_path / "killed"
    clean_dir.mkdir()
    killed_dir.mkdir()
    clean_config = write_config(clean_dir, sandbox.url, clean_url, ids)
    killed_config = write_config(killed_dir, sandbox.url, killed_url, ids)
    backfill = ("backfill", "--from", first, "--to", last)

    before = sandbox.stats.requests
    clean = await run_cli("--config", str(clean_config), *backfill)
    clean_requests = sandbox.stats.requests - before
    assert clean.code == 0
    total_rows = await count_rows(clean_url, "item_hourly")

    before = sandbox.stats.requests
    for fraction in (0.15, 0.45, 0.75):
        process = await start_cli("--config", str(killed_config), *backfill)
        minimum = int(total_rows * fraction)
        await wait_for_rows(process, killed_url, "item_hourly", minimum)
        process.kill()
        await process.wait()
    resumed = await run_cli("--config", str(killed_config), *backfill)
    resumed_requests = sandbox.stats.requests - before

    assert resumed.code == 0
    assert await bucket_rows(killed_url) == await bucket_rows(clean_url)
    assert await run_statuses(killed_url) == ["abandoned"] * 3 + ["ok"]
    # Each kill may lose what was in flight: at most one window per active
    # stream (2 x concurrency) plus the first request of every run.
    assert resumed_requests <= clean_requests + 3 * (2 * 8 + 1) + 1
    assert await count_rows(killed_url, "backfill_progress") == 0


@pytest.mark.parametrize(
    ("case", "expected_code", "message"),
    [
        ("missing config", 2, "not found"),
        ("invalid toml", 2, "is not valid TOML"),
        ("malformed id", 2, "items.txt:2"),
        ("duplicate id", 2, "duplicate item id 'MLA600000000'"),
        ("unknown metric", 2, "unknown metric 'visits'"),
        ("unknown unit", 2, "unknown unit 'week'"),
        ("garbage date", 2, "invalid --from 'yesterday'"),
        ("naive datetime", 2, "has no UTC offset"),
        ("inverted range", 2, "is not after --from"),
        ("future range", 2, "is in the future"),
        ("no items", 2, "no items configured"),
        ("database port", 2, "has an invalid port"),
        ("unreachable database", 3, "cannot connect to PostgreSQL"),
        ("unknown database role", 3, "rejected the credentials"),
        ("unreachable api", 4, "cannot reach the API"),
        ("wrong token", 4, "rejected the access token"),
    ],
)
async def test_bad_input_changes_nothing(
    case: str,
    expected_code: int,
    message: str,
    sandbox: RunningSandbox,
    database_url: str,
    tmp_path: Path,
) -> None:
    ids = ["MLA600000000", "MLA600000001"]
    config = write_config(tmp_path, sandbox.url, database_url, ids)
    migrated = await run_cli("--config", str(config), "migrate")
    assert migrated.code == 0
    before = await snapshot(database_url)
    args = bad_input_args(case, tmp_path, config, sandbox.url, database_url)

    result = await run_cli(*args)

    assert result.code == expected_code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: ")
    assert await snapshot(database_url) == before


def bad_input_args(
    case: str, folder: Path, config: Path, api_url: str, database_url: str
) -> list[str]:
    """Break one thing for `case` and return the command line to run."""
    good = ["--config", str(config)]
    first, last = past_days(1)
    backfill = ["backfill", "--from", first, "--to", last]
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    ids = ["MLA600000000", "MLA600000001"]
    rewrite = {
        "invalid toml": "[api\n",
        "unknown metric": "[harvest]\nmetrics = ['visits']\n",
        "unknown unit": "[harvest]\nunits = ['week']\n",
    }
    if case in rewrite:
        config.write_text(rewrite[case])
        return [*good, "harvest"]
    if case == "missing config":
        return ["--config", str(folder / "absent.toml"), "harvest"]
    if case == "malformed id":
        (folder / "items.txt").write_text("MLA600000000\nnot-an-id\n")
        return [*good, "harvest"]
    if case == "duplicate id":
        (folder / "items.txt").write_text("MLA600000000\nMLA600000000\n")
        return [*good, "harvest"]
    if case == "garbage date":
        return [*good, "backfill", "--from", "yesterday", "--to", last]
    if case == "naive datetime":
        return [*good, "backfill", "--from", f"{first}T00:00:00", "--to", last]
    if case == "inverted range":
        earlier, later = past_days(2)
        return [*good, "backfill", "--from", later, "--to", earlier]
    if case == "future range":
        return [*good, "backfill", "--from", tomorrow, "--to", tomorrow]
    if case == "no items":
        (folder / "items.txt").write_text("# nothing yet\n")
        return [*good, "harvest"]
    if case == "database port":
        write_config(folder, api_url, "postgresql://postgres@127.0.0.1:notaport/x", ids)
        return [*good, *backfill]
    if case == "unreachable database":
        closed = "postgresql://postgres@127.0.0.1:1/absent"
        write_config(folder, api_url, closed, ids)
        return [*good, *backfill]
    if case == "unknown database role":
        stranger = database_url.replace("postgres@", "nobody_here@", 1)
        if stranger == database_url:
            stranger = database_url.replace("postgres:@", "nobody_here:@", 1)
        write_config(folder, api_url, stranger, ids)
        return [*good, *backfill]
    if case == "unreachable api":
        write_config(folder, "http://127.0.0.1:1", database_url, ids)
        return [*good, *backfill]
    if case == "wrong token":
        text = config.read_text().replace(TOKEN, "wrong-token")
        config.write_text(text)
        return [*good, *backfill]
    raise AssertionError(f"unknown case {case}")
