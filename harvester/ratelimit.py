"""One request rate shared by every task of a run, adapting to the API's 429s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# On a 429 the rate drops to the rate the API accepted over the last
# ACCEPTED_WINDOW_S, and at least to this share of itself; at most once per
# COOLDOWN_S, so that one burst of 429s in flight counts as one signal.
DECREASE_FACTOR = 0.7
COOLDOWN_S = 1.0
ACCEPTED_WINDOW_S = 2.0
# Without 429s the rate climbs back by this share of itself per second, so a
# limit that was hit is probed again slowly.
RECOVERY_SHARE_PER_S = 0.05
MIN_RATE_PER_S = 0.2


class RateLimiter:
    """Spaces requests `1 / rate` apart, with no burst.

    The rate starts at the configured maximum. A 429 lowers it (the API's limit
    is not published) and it climbs back while none come. `pause(seconds)`
    holds every slot until then, so a server's Retry-After holds the whole run.
    """

    def __init__(
        self,
        rate_per_s: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.max_rate_per_s = rate_per_s
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._last_cut = -COOLDOWN_S
        self._last_recovery = clock()
        self._accepted: deque[float] = deque()

    async def acquire(self) -> None:
        """Wait for this task's slot."""
        while True:
            now = self._clock()
            self._recover(now)
            start = max(now, self._next_slot, self._paused_until)
            self._next_slot = start + 1.0 / self.rate_per_s
            if start <= now:
                return
            await self._sleep(start - now)
            # A pause may have come in while this task slept.
            if self._clock() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now."""
        until = self._clock() + seconds
        if until > self._paused_until:
            logger.debug("requests paused for %.2fs", seconds)
            self._paused_until = until

    def accepted(self) -> None:
        """Count a request the API did not rate limit."""
        now = self._clock()
        self._accepted.append(now)
        while self._accepted and self._accepted[0] < now - ACCEPTED_WINDOW_S:
            self._accepted.popleft()

    def throttled(self) -> None:
        """Lower the rate after a 429."""
        now = self._clock()
        if now - self._last_cut < COOLDOWN_S:
            return
        self._last_cut = now
        accepted_rate = len(self._accepted) / ACCEPTED_WINDOW_S
        target = min(self.rate_per_s * DECREASE_FACTOR, accepted_rate)
        lowered = max(MIN_RATE_PER_S, target)
        if lowered < self.rate_per_s:
            logger.info(
                "rate limited: lowering the request rate from %.2f to %.2f per second",
                self.rate_per_s,
                lowered,
            )
            self.rate_per_s = lowered

    def _recover(self, now: float) -> None:
        elapsed = now - self._last_recovery
        self._last_recovery = now
        if self.rate_per_s < self.max_rate_per_s:
            step = self.rate_per_s * RECOVERY_SHARE_PER_S * elapsed
            self.rate_per_s = min(self.max_rate_per_s, self.rate_per_s + step)
