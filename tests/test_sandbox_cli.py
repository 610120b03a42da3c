"""Tests of the sandbox command-line options and the serving command."""

import argparse
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from harvester.sandbox import traffic as traffic_module
from harvester.sandbox.cli import (
    add_sandbox_arguments,
    run_sandbox_command,
    settings_from_args,
    traffic_from_args,
)
from harvester.sandbox.server import require_loopback

SERVE_SCRIPT = (
    "import argparse, logging, sys\n"
    "from harvester.sandbox.cli import add_sandbox_arguments, run_sandbox_command\n"
    "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
    "parser = argparse.ArgumentParser()\n"
    "add_sandbox_arguments(parser)\n"
    "sys.exit(run_sandbox_command(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sandbox_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert args.host == "127.0.0.1"
    assert args.port == 8080
    assert args.write_ids is None


def test_settings_from_flags() -> None:
    args = parse(
        "--sparse",
        "--extra-bucket",
        "--day-label",
        "local",
        "--unknown-id",
        "omit",
        "--rate",
        "5",
        "--retry-after-s",
        "0",
        "--p-truncate",
        "0.25",
    )
    settings = settings_from_args(args)
    assert settings.sparse
    assert settings.extra_bucket
    assert settings.day_label == "local"
    assert settings.unknown_id == "omit"
    assert settings.rate == 5.0
    assert settings.retry_after_s == 0
    assert settings.p_truncate == 0.25


def test_traffic_from_flags() -> None:
    traffic = traffic_from_args(parse("--items", "7", "--day-offset-hours", "-4"))
    assert traffic.items == 7
    assert traffic.day_offset_hours == -4


def test_settings_repr_hides_secrets() -> None:
    args = parse(
        "--token",
        "tok-123",
        "--client-id",
        "app",
        "--client-secret",
        "sec-456",
        "--refresh-token",
        "TG-789",
    )
    text = repr(settings_from_args(args))
    assert "tok-123" not in text
    assert "sec-456" not in text
    assert "TG-789" not in text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_non_loopback_host_rejected(host: str) -> None:
    with pytest.raises(ValueError):
        require_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_host_accepted(host: str) -> None:
    require_loopback(host)


def test_command_rejects_non_loopback_host() -> None:
    assert run_sandbox_command(parse("--host", "0.0.0.0")) == 2


def test_command_rejects_bad_probability() -> None:
    assert run_sandbox_command(parse("--p500", "1.5")) == 2


def test_command_serves_until_sigterm(tmp_path: Path) -> None:
    ids_path = tmp_path / "ids.txt"
    argv = ["--port", "0", "--items", "3", "--token", "tok-123"]
    argv += ["--write-ids", str(ids_path)]
    project_root = Path(traffic_module.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(project_root)}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, *argv],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # No proxy handler, so the request cannot leave loopback through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        url, start_lines = wait_for_url(process)
        with opener.open(f"{url}/_sandbox/stats", timeout=5) as response:
            status = response.status
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=10)
    stderr = "".join(start_lines) + rest
    assert status == 200
    assert process.returncode == 0
    assert ids_path.read_text().split() == [
        "MLA600000000",
        "MLA600000001",
        "MLA600000002",
    ]
    assert "tok-123" not in stderr


def wait_for_url(process: "subprocess.Popen[str]") -> tuple[str, list[str]]:
    """Read stderr until the start line names the URL; return it and the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        match = re.search(r"serving 3 items at (http://127\.0\.0\.1:\d+)", line)
        if match:
            return match.group(1), lines
    raise AssertionError("the sandbox exited before logging its URL")
