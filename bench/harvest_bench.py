"""Benchmark of the harvester against the sandbox and a real PostgreSQL.

Usage:
    HARVESTER_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python bench/harvest_bench.py [--items 10000] [--days 14] [--smoke]

It creates a scratch database next to the one in HARVESTER_DATABASE_URL for
each scenario and drops it afterwards, starts `harvester sandbox` on loopback,
runs `harvester` in child processes and prints one Markdown table row per
figure. Scenarios: first load and raw COPY, re-harvest with changed values,
incremental harvests, scaling by item count, and rate adherence.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import (
    ChildRun,
    CpuSampler,
    Sandbox,
    StatsPoller,
    StatsSample,
    run_measured,
)

SEED = 11
RATE_LIMIT = 20.0


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HARVESTER_")}


def database_at(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def execute(url: str, sql: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def fetch_value(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    asyncio.run(execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(execute(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield database_at(server_url, name)
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(execute(server_url, drop))


def write_config(folder: Path, api_url: str, db_url: str, items: int, api: str) -> Path:
    ids = [f"MLA{600000000 + n}" for n in range(items)]
    (folder / "items.txt").write_text("\n".join(ids) + "\n")
    config = folder / "harvester.toml"
    config.write_text(
        f'[api]\nbase_url = "{api_url}"\n{api}\n'
        f'[database]\nurl = "{db_url}"\n'
        '[items]\nfile = "items.txt"\n'
        "[harvest]\nsettle_hours = 48\nlookback_days = 2\n"
    )
    return config


def past_range(days: int) -> tuple[str, str]:
    last = datetime.now(UTC).date() - timedelta(days=2)
    first = last - timedelta(days=days - 1)
    return first.isoformat(), last.isoformat()


def harvester(config: Path, *command: str) -> list[str]:
    return [sys.executable, "-m", "harvester", "-q", "--config", str(config), *command]


@contextmanager
def measuring(db_url: str, sandbox: Sandbox) -> Iterator[dict[str, float]]:
    """Measure PostgreSQL and sandbox CPU seconds and WAL bytes around a block."""
    figures: dict[str, float] = {}
    wal_before = asyncio.run(fetch_value(db_url, "SELECT pg_current_wal_lsn()::text"))
    fpi_sql = "SELECT wal_fpi FROM pg_stat_wal"
    fpi_before = int(asyncio.run(fetch_value(db_url, fpi_sql)))
    vacuums_before = autovacuums(db_url)
    sandbox_before = sandbox.cpu_s()
    with CpuSampler("postgres") as postgres:
        yield figures
    figures["pg_cpu_s"] = postgres.cpu_s
    figures["sandbox_cpu_s"] = sandbox.cpu_s() - sandbox_before
    wal_sql = f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{wal_before}')"
    figures["wal_mb"] = float(asyncio.run(fetch_value(db_url, wal_sql))) / 2**20
    figures["full_page_images"] = (
        int(asyncio.run(fetch_value(db_url, fpi_sql))) - fpi_before
    )
    figures["autovacuums"] = autovacuums(db_url) - vacuums_before


def autovacuums(db_url: str) -> int:
    """Return how often autovacuum has processed item_hourly so far."""
    sql = """SELECT coalesce(sum(autovacuum_count), 0) FROM pg_stat_user_tables
             WHERE relname = 'item_hourly'"""
    return int(asyncio.run(fetch_value(db_url, sql)))


def stored_rows(db_url: str) -> int:
    sql = (
        "SELECT (SELECT count(*) FROM item_hourly) + (SELECT count(*) FROM item_daily)"
    )
    return int(asyncio.run(fetch_value(db_url, sql)))


def last_run(db_url: str, column: str) -> int:
    sql = f"SELECT {column} FROM harvest_runs ORDER BY run_id DESC LIMIT 1"
    return int(asyncio.run(fetch_value(db_url, sql)))


def requests_of(sandbox: Sandbox) -> int:
    return int(sandbox.stats()["requests"])


def row(label: str, run: ChildRun, **figures: object) -> str:
    cells = [f"wall {run.wall_s:.1f} s", f"harvester CPU {run.cpu_s:.1f} s"]
    cells.append(f"peak RSS {run.peak_rss_mb:.0f} MB")
    cells += [f"{name.replace('_', ' ')} {value}" for name, value in figures.items()]
    return f"| {label} | " + ", ".join(cells) + f" | exit {run.code} |"


async def raw_copy(db_url: str, rows: int) -> float:
    """COPY `rows` rows shaped like item_hourly into a scratch table; return seconds."""
    connection = await asyncpg.connect(db_url)
    try:
        await connection.execute(
            "CREATE TABLE bench_copy (LIKE item_hourly INCLUDING ALL)"
        )
        fetched_at = datetime.now(UTC)
        start_hour = datetime(2026, 1, 1, tzinfo=UTC)
        records = (
            (
                f"MLA{600000000 + n // 672}",
                "questions" if n % 2 else "phone_views",
                start_hour + timedelta(hours=(n // 2) % 336),
                n % 7,
                True,
                fetched_at,
            )
            for n in range(rows)
        )
        started = time.monotonic()
        await connection.copy_records_to_table("bench_copy", records=records)
        elapsed = time.monotonic() - started
        await connection.execute("DROP TABLE bench_copy")
        return elapsed
    finally:
        await connection.close()


FAST_API = "rate_per_s = 2000.0\nconcurrency = 8\nbatch_size = 50\nmax_last = 720"


def first_load_and_reharvest(server_url: str, items: int, days: int) -> list[str]:
    lines = []
    first, last = past_range(days)
    with scratch_database(server_url, "harvester_bench") as db_url:
        sandbox = Sandbox(["--items", str(items), "--seed", str(SEED)])
        try:
            with tempfile.TemporaryDirectory() as folder:
                config = write_config(
                    Path(folder), sandbox.url, db_url, items, FAST_API
                )
                backfill = harvester(config, "backfill", "--from", first, "--to", last)
                with measuring(db_url, sandbox) as pg:
                    load = run_measured(backfill, child_env())
                rows = stored_rows(db_url)
                requests = requests_of(sandbox)
                load_rate = rows / load.wall_s
                copy_s = asyncio.run(raw_copy(db_url, rows))
                copy_rate = rows / copy_s
                lines.append(
                    row(
                        f"first load: {items} items x {days} days",
                        load,
                        rows=rows,
                        rows_per_s=f"{load_rate:,.0f}",
                        requests_per_s=f"{requests / load.wall_s:.1f}",
                        postgres_CPU_s=f"{pg['pg_cpu_s']:.1f}",
                        sandbox_CPU_s=f"{pg['sandbox_cpu_s']:.1f}",
                        WAL_MB=f"{pg['wal_mb']:.0f}",
                        full_page_images=pg["full_page_images"],
                    )
                )
                lines.append(
                    f"| raw COPY, same rows | {copy_s:.1f} s, {copy_rate:,.0f} rows/s;"
                    f" harvester/COPY = {load_rate / copy_rate:.2f} | |"
                )
                sandbox.stop()
                sandbox = Sandbox(
                    ["--items", str(items), "--seed", str(SEED), "--revision", "1"]
                )
                config = write_config(
                    Path(folder), sandbox.url, db_url, items, FAST_API
                )
                with measuring(db_url, sandbox) as pg2:
                    again = run_measured(backfill, child_env())
                lines.append(
                    row(
                        "re-harvest, about 10% of values changed",
                        again,
                        rows_per_s=f"{rows / again.wall_s:,.0f}",
                        rows_updated=last_run(db_url, "rows_changed"),
                        WAL_MB=f"{pg2['wal_mb']:.0f}",
                        full_page_images=pg2["full_page_images"],
                        autovacuums_of_item_hourly=pg2["autovacuums"],
                        postgres_CPU_s=f"{pg2['pg_cpu_s']:.1f}",
                        WAL_vs_first_load=f"{pg2['wal_mb'] / pg['wal_mb']:.2f}",
                    )
                )
                lines += incremental(sandbox, config, db_url)
        finally:
            sandbox.stop()
    return lines


def incremental(sandbox: Sandbox, config: Path, db_url: str) -> list[str]:
    lines = []
    for label in ("incremental harvest after the backfill", "incremental, again"):
        before = requests_of(sandbox)
        run = run_measured(harvester(config, "harvest"), child_env())
        lines.append(
            row(
                label,
                run,
                requests=requests_of(sandbox) - before,
                rows_inserted=last_run(db_url, "rows_inserted"),
                rows_changed=last_run(db_url, "rows_changed"),
            )
        )
    return lines


def scaling(server_url: str, sizes: list[int], days: int) -> list[str]:
    lines = []
    first, last = past_range(days)
    for items in sizes:
        with scratch_database(server_url, "harvester_bench") as db_url:
            sandbox = Sandbox(["--items", str(items), "--seed", str(SEED)])
            try:
                with tempfile.TemporaryDirectory() as folder:
                    config = write_config(
                        Path(folder), sandbox.url, db_url, items, FAST_API
                    )
                    command = harvester(
                        config, "backfill", "--from", first, "--to", last
                    )
                    run = run_measured(command, child_env())
                    lines.append(
                        row(
                            f"scaling: {items} items x {days} days",
                            run,
                            ms_per_item=f"{1000 * run.wall_s / items:.2f}",
                            rows=stored_rows(db_url),
                        )
                    )
            finally:
                sandbox.stop()
    return lines


def rate_adherence(server_url: str, items: int) -> list[str]:
    lines = []
    first, last = past_range(1)
    for configured in (RATE_LIMIT, 3 * RATE_LIMIT):
        with scratch_database(server_url, "harvester_bench") as db_url:
            options = ["--items", str(items), "--seed", str(SEED)]
            sandbox = Sandbox([*options, "--rate", str(RATE_LIMIT)])
            try:
                with tempfile.TemporaryDirectory() as folder:
                    api = f"rate_per_s = {configured}\nconcurrency = 8\nbatch_size = 10"
                    config = write_config(Path(folder), sandbox.url, db_url, items, api)
                    command = harvester(
                        config, "backfill", "--from", first, "--to", last
                    )
                    with StatsPoller(sandbox) as poller:
                        run = run_measured(command, child_env())
                    lines.append(rate_row(configured, run, poller))
            finally:
                sandbox.stop()
    return lines


def rate_row(configured: float, run: ChildRun, poller: StatsPoller) -> str:
    """Summarise responses over time: 429s before and after settling, rate after."""
    samples = poller.samples
    last = samples[-1]
    total = last.ok + last.throttled
    share = last.throttled / total if total else 0.0
    # Settled: from the first sample after which every 5 s stretch has under
    # 2% of its responses as 429s.
    settled_at = samples[-1].at_s
    for index in range(len(samples) - 1, -1, -1):
        if stretch_429_share(samples, index) >= 0.02:
            break
        settled_at = samples[index].at_s
    after = [s for s in samples if s.at_s >= settled_at]
    achieved, after_share = 0.0, 0.0
    if len(after) >= 2:
        span = after[-1].at_s - after[0].at_s
        ok = after[-1].ok - after[0].ok
        throttled = after[-1].throttled - after[0].throttled
        achieved = ok / span if span else 0.0
        after_share = throttled / (ok + throttled) if ok + throttled else 0.0
    return row(
        f"rate: limit {RATE_LIMIT:.0f}/s, configured {configured:.0f}/s",
        run,
        requests=total,
        answered_429=f"{last.throttled} ({100 * share:.1f}%)",
        settled_after_s=f"{settled_at:.1f}",
        answered_429_after=f"{100 * after_share:.1f}%",
        achieved_after=f"{achieved:.1f}/s ({100 * achieved / RATE_LIMIT:.0f}%)",
    )


def stretch_429_share(samples: list[StatsSample], index: int) -> float:
    """Return the share of 429s in the 5 s of samples from `index` on."""
    start = samples[index]
    ends = [s for s in samples[index:] if s.at_s <= start.at_s + 5.0]
    end = ends[-1]
    ok = end.ok - start.ok
    throttled = end.throttled - start.throttled
    return throttled / (ok + throttled) if ok + throttled else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--scaling", default="1000,10000,40000")
    parser.add_argument("--scaling-days", type=int, default=3)
    parser.add_argument("--rate-items", type=int, default=3000)
    parser.add_argument(
        "--only", default="load,scaling,rate", help="comma-separated scenarios"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the script runs"
    )
    args = parser.parse_args()
    server_url = os.environ.get("HARVESTER_DATABASE_URL")
    if not server_url:
        print(
            "error: set HARVESTER_DATABASE_URL to a PostgreSQL server", file=sys.stderr
        )
        return 2
    if args.smoke:
        args.items, args.days, args.scaling, args.rate_items = 200, 2, "100,200", 100
    scenarios = set(args.only.split(","))
    print(
        f"| machine | {platform.node()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()} | |"
    )
    if "load" in scenarios:
        for line in first_load_and_reharvest(server_url, args.items, args.days):
            print(line, flush=True)
    if "scaling" in scenarios:
        sizes = [int(size) for size in args.scaling.split(",")]
        for line in scaling(server_url, sizes, args.scaling_days):
            print(line, flush=True)
    if "rate" in scenarios:
        for line in rate_adherence(server_url, args.rate_items):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
