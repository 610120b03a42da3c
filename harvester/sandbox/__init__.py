"""A local, deterministic stand-in for the classified-listings contact-metrics API."""

from harvester.sandbox.cli import add_sandbox_arguments, run_sandbox_command
from harvester.sandbox.server import (
    RunningSandbox,
    build_app,
    require_loopback,
    start_sandbox,
)
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.stats import SandboxStats
from harvester.sandbox.traffic import METRICS, Traffic

__all__ = [
    "METRICS",
    "RunningSandbox",
    "SandboxSettings",
    "SandboxStats",
    "Traffic",
    "add_sandbox_arguments",
    "build_app",
    "require_loopback",
    "run_sandbox_command",
    "start_sandbox",
]
