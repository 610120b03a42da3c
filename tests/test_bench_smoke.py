"""A tiny run of the benchmark script, so that it keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmark_smoke_run(server_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVESTER_")}
    env["HARVESTER_DATABASE_URL"] = server_url
    env["PYTHONPATH"] = str(REPO)

    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "harvest_bench.py"), "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    labels = [line.split(" | ")[0] for line in table]
    assert labels == [
        "| machine",
        "| first load: 200 items x 2 days",
        "| raw COPY, same rows",
        "| re-harvest, about 10% of values changed",
        "| incremental harvest after the backfill",
        "| incremental, again",
        "| scaling: 100 items x 3 days",
        "| scaling: 200 items x 3 days",
        "| rate: limit 20/s, configured 20/s",
        "| rate: limit 20/s, configured 60/s",
    ]
    assert all("exit 0" in line for line in table[1:] if "raw COPY" not in line)
    assert "harvester/COPY = " in table[2]
