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

# The rate limiter judges the API by the answers of the last WINDOW_S seconds.
WINDOW_S = 2.0
# When at least this share of them were 429s, the rate drops to a little under
# the rate the API accepted, at most once per COOLDOWN_S. A lower share is
# taken as noise: some servers send an occasional 429 under any load.
THROTTLED_SHARE = 0.1
MIN_ANSWERS = 10
BELOW_ACCEPTED = 0.95
COOLDOWN_S = 1.0
# Without cuts the rate climbs back by this share of itself per second, up to
# the configured rate, so a limit that was hit is probed again slowly.
RECOVERY_SHARE_PER_S = 0.05
MIN_RATE_PER_S = 0.2


class RateLimiter:
    """Spaces requests `1 / rate` apart, with no burst.

    The rate starts at the configured maximum and drops when 429s show that
    the API's own limit, which is not published, is lower. `pause(seconds)`
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
        self._throttled: deque[float] = deque()

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
        """Count an answer that was not a 429."""
        self._record(self._accepted)

    def throttled(self) -> None:
        """Count a 429, and lower the rate if they are more than noise."""
        now = self._record(self._throttled)
        answers = len(self._accepted) + len(self._throttled)
        if now - self._last_cut < COOLDOWN_S or answers < MIN_ANSWERS:
            return
        if len(self._throttled) / answers < THROTTLED_SHARE:
            return
        self._last_cut = now
        oldest = min(
            answers[0] for answers in (self._accepted, self._throttled) if answers
        )
        span = min(WINDOW_S, max(now - oldest, COOLDOWN_S / 2))
        accepted_rate = len(self._accepted) / span
        lowered = max(MIN_RATE_PER_S, accepted_rate * BELOW_ACCEPTED)
        if lowered < self.rate_per_s:
            logger.info(
                "rate limited: request rate lowered from %.2f to %.2f per second",
                self.rate_per_s,
                lowered,
            )
            self.rate_per_s = lowered

    def _record(self, answers: deque[float]) -> float:
        now = self._clock()
        answers.append(now)
        for recent in (self._accepted, self._throttled):
            while recent and recent[0] < now - WINDOW_S:
                recent.popleft()
        return now

    def _recover(self, now: float) -> None:
        elapsed = now - self._last_recovery
        self._last_recovery = now
        if self.rate_per_s < self.max_rate_per_s:
            step = self.rate_per_s * RECOVERY_SHARE_PER_S * elapsed
            self.rate_per_s = min(self.max_rate_per_s, self.rate_per_s + step)
