"""Measuring tools of the benchmark: child processes, PostgreSQL CPU, sandbox stats."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ChildRun:
    """Wall time, CPU time, peak memory and exit code of one finished command."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    code: int


def run_measured(args: list[str], env: dict[str, str]) -> ChildRun:
    """Run a command to its end and read its resource use from wait4."""
    started = time.monotonic()
    process = subprocess.Popen(args, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        wall_s=time.monotonic() - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux reports kilobytes
        code=process.returncode,
    )


def process_ticks(name: str) -> dict[int, int]:
    """Return the CPU clock ticks used so far by each process called `name`."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] != name:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


class CpuSampler:
    """Adds up the CPU time of every process called `name` during a block.

    Processes are sampled every `interval_s`, so that the CPU time of those
    that exit during the block (PostgreSQL backends do) is counted up to the
    last sample before they exited.
    """

    def __init__(self, name: str, interval_s: float = 0.1) -> None:
        self._name = name
        self._interval_s = interval_s
        self._baseline = process_ticks(name)
        self._latest: dict[int, int] = dict(self._baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._latest.update(process_ticks(self._name))

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._latest.update(process_ticks(self._name))

    @property
    def cpu_s(self) -> float:
        used = sum(
            ticks - self._baseline.get(pid, 0) for pid, ticks in self._latest.items()
        )
        return used / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sandbox:
    """`harvester sandbox` in a child process on a free loopback port."""

    def __init__(self, options: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "harvester", "-q", "sandbox"]
        command += ["--port", str(self.port), *options]
        self._process = subprocess.Popen(command)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        for _ in range(200):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the sandbox at {self.url} did not start")

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/_sandbox/stats", timeout=5) as reply:
            document: dict[str, object] = json.load(reply)
            return document

    def cpu_s(self) -> float:
        """Return the CPU seconds the sandbox has used so far."""
        stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)


@dataclass
class StatsSample:
    at_s: float
    ok: int
    throttled: int


@dataclass
class StatsPoller:
    """Samples the sandbox's response counters every `interval_s` in a thread."""

    sandbox: Sandbox
    interval_s: float = 0.5
    samples: list[StatsSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> StatsPoller:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            stats = self.sandbox.stats()
            by_status = stats["by_status"]
            assert isinstance(by_status, dict)
            throttled = int(by_status.get("429", 0))
            ok = sum(int(n) for code, n in by_status.items() if code != "429")
            at = time.monotonic() - self._started
            self.samples.append(StatsSample(at, ok, throttled))
