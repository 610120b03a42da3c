"""Command-line options of `harvester sandbox` and the command that serves it."""

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from harvester.sandbox.server import require_loopback, start_sandbox
from harvester.sandbox.settings import DAY_LABELS, UNKNOWN_ID_MODES, SandboxSettings
from harvester.sandbox.traffic import Traffic

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_ITEMS = 1000


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of the sandbox command to `parser`."""
    _add_server_arguments(parser)
    _add_traffic_arguments(parser)
    _add_quirk_arguments(parser)
    _add_auth_arguments(parser)
    _add_limit_arguments(parser)
    _add_fault_arguments(parser)


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on (default: %(default)s)",
    )
    group.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port to listen on, 0 for any free port (default: %(default)s)",
    )
    group.add_argument(
        "--write-ids",
        type=Path,
        metavar="PATH",
        help="write the item ids to PATH, one per line, before serving",
    )


def _add_traffic_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("synthetic traffic")
    group.add_argument(
        "--items",
        type=int,
        default=DEFAULT_ITEMS,
        help="number of items (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the synthetic counts (default: %(default)s)",
    )
    group.add_argument(
        "--sellers",
        type=int,
        default=10,
        help="number of sellers the items are spread over (default: %(default)s)",
    )
    group.add_argument(
        "--revision",
        type=int,
        default=0,
        help="data revision; a value above 0 changes a share of the hour counts "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--day-offset-hours",
        type=int,
        default=0,
        help="UTC offset in hours of the local calendar days, e.g. -4 "
        "(default: %(default)s)",
    )


def _add_quirk_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("response quirks")
    group.add_argument(
        "--day-label",
        choices=DAY_LABELS,
        default="utc",
        help="day bucket labels: local date at 00:00Z (utc) or the UTC instant "
        "of local midnight (local) (default: %(default)s)",
    )
    _flag(group, "--sparse", "leave zero buckets out of series results")
    _flag(group, "--extra-bucket", "add the bucket that starts at date_to (N+1)")
    _flag(group, "--last-as-string", 'return "last" as a string, e.g. "2"')
    _flag(
        group,
        "--single-object",
        "return an object, not an array, for a one-id multi-id request",
    )
    _flag(group, "--shuffle", "return series results in random order")
    group.add_argument(
        "--unknown-id",
        choices=UNKNOWN_ID_MODES,
        default="reject",
        help="unknown ids in multi-id requests: reject the request with 400, "
        "return an error entry, or omit them (default: %(default)s)",
    )


def _add_auth_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("auth")
    group.add_argument("--token", help="static Bearer access token to require")
    group.add_argument("--client-id", help="OAuth client_id of the refresh grant")
    group.add_argument("--client-secret", help="OAuth client_secret")
    group.add_argument("--refresh-token", help="initial OAuth refresh token")
    group.add_argument(
        "--token-ttl-s",
        type=int,
        default=21_600,
        help="lifetime of issued access tokens in seconds (default: %(default)s)",
    )


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("limits")
    group.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="allowed requests per second, with a burst of one second's worth; "
        "0 disables the limit (default: %(default)s)",
    )
    group.add_argument(
        "--retry-after-s",
        type=int,
        help="Retry-After value in seconds on 429 responses (default: no header)",
    )
    group.add_argument(
        "--max-ids",
        type=int,
        default=50,
        help="maximum number of ids per multi-id request (default: %(default)s)",
    )
    group.add_argument(
        "--max-last",
        type=int,
        default=720,
        help="maximum value of last, in buckets (default: %(default)s)",
    )


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("faults (probabilities per request)")
    _probability(group, "--p500", "500 with a JSON error body")
    _probability(group, "--p502", "502 with an HTML body")
    _probability(group, "--p503", "503 with a JSON error body")
    _probability(group, "--p429", "429 regardless of the rate limit")
    _probability(group, "--p-slow", "a delay of --slow-s before a normal response")
    _probability(group, "--p-truncate", "200 with the JSON body cut in half")
    _probability(group, "--p-empty", "200 with an empty body")
    group.add_argument(
        "--slow-s",
        type=float,
        default=2.0,
        help="delay of slow responses in seconds (default: %(default)s)",
    )
    group.add_argument(
        "--fault-seed",
        type=int,
        default=0,
        help="seed of the fault draws and shuffling (default: %(default)s)",
    )


def _flag(group: argparse._ArgumentGroup, name: str, help_text: str) -> None:
    group.add_argument(name, action="store_true", help=help_text)


def _probability(group: argparse._ArgumentGroup, name: str, fault: str) -> None:
    group.add_argument(
        name,
        type=float,
        default=0.0,
        metavar="P",
        help=f"probability in [0, 1] of {fault} (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    """Build settings from parsed options; raise ValueError for invalid values."""
    return SandboxSettings(
        sparse=args.sparse,
        extra_bucket=args.extra_bucket,
        day_label=args.day_label,
        last_as_string=args.last_as_string,
        single_object=args.single_object,
        shuffle=args.shuffle,
        unknown_id=args.unknown_id,
        token=args.token,
        client_id=args.client_id,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        token_ttl_s=args.token_ttl_s,
        rate=args.rate,
        retry_after_s=args.retry_after_s,
        max_ids=args.max_ids,
        max_last=args.max_last,
        p500=args.p500,
        p502=args.p502,
        p503=args.p503,
        p429=args.p429,
        p_slow=args.p_slow,
        slow_s=args.slow_s,
        p_truncate=args.p_truncate,
        p_empty=args.p_empty,
        fault_seed=args.fault_seed,
    )


def traffic_from_args(args: argparse.Namespace) -> Traffic:
    """Build the synthetic traffic from parsed options; raise ValueError if invalid."""
    return Traffic(
        seed=args.seed,
        items=args.items,
        sellers=args.sellers,
        revision=args.revision,
        day_offset_hours=args.day_offset_hours,
    )


def run_sandbox_command(args: argparse.Namespace) -> int:
    """Serve the sandbox until SIGINT or SIGTERM; return the process exit code."""
    try:
        require_loopback(args.host)
        settings = settings_from_args(args)
        traffic = traffic_from_args(args)
    except ValueError as error:
        logger.error("invalid sandbox options: %s", error)
        return 2
    if args.write_ids is not None:
        _write_ids(args.write_ids, traffic)
    try:
        asyncio.run(_serve(settings, traffic, args.host, args.port))
    except OSError as error:
        logger.error(
            "sandbox failed to listen on %s:%s: %s", args.host, args.port, error
        )
        return 1
    return 0


def _write_ids(path: Path, traffic: Traffic) -> None:
    text = "".join(f"{item_id}\n" for item_id in traffic.item_ids())
    path.write_text(text, encoding="utf-8")
    logger.info("wrote %d item ids to %s", traffic.items, path)


async def _serve(
    settings: SandboxSettings, traffic: Traffic, host: str, port: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with await start_sandbox(settings, traffic, host, port) as sandbox:
        logger.info("sandbox serving %d items at %s", traffic.items, sandbox.url)
        await stop.wait()
        logger.info("sandbox stopping on signal")
