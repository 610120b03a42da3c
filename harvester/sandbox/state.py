"""Per-application state of the sandbox: settings, ground truth, clock and counters."""

import random
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from harvester.sandbox.faults import FaultPicker
from harvester.sandbox.oauth import OAuthState
from harvester.sandbox.ratelimit import TokenBucket
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.stats import SandboxStats
from harvester.sandbox.traffic import FIRST_SELLER_NUMBER, Traffic

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SandboxState:
    """Everything the handlers and middlewares of one sandbox app share."""

    def __init__(
        self, settings: SandboxSettings, traffic: Traffic, clock: Clock
    ) -> None:
        self.settings = settings
        self.traffic = traffic
        self.clock = clock
        self.stats = SandboxStats()
        self.oauth = OAuthState(settings, clock, user_id=FIRST_SELLER_NUMBER)
        self.rate_limiter = TokenBucket(settings.rate)
        self.faults = FaultPicker(settings)
        # A separate stream, so shuffling does not shift which requests get faults.
        self.shuffle_rng = random.Random(settings.fault_seed + 1)

    def __repr__(self) -> str:
        return f"SandboxState(settings={self.settings!r}, traffic={self.traffic!r})"

    @property
    def current_refresh_token(self) -> str | None:
        """The refresh token that the next refresh grant accepts."""
        return self.oauth.current_refresh_token


STATE_KEY = web.AppKey("sandbox_state", SandboxState)


def get_state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]
