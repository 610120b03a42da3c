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

# The limiter judges the API by what happened in the last WINDOW_S seconds and
# lowers the rate at most once per window, so a burst of 429s already in
# flight counts once.
WINDOW_S = 2.0
# Many 429s (more than this share of at least MIN_RESPONSES responses) mean the
# rate is far above the API's limit, so it drops to a little under what the API
# accepted. The rates are measured over at least MIN_SPAN_S.
SEVERE_SHARE = 0.1
MIN_RESPONSES = 10
MIN_SPAN_S = 0.1
BELOW_ACCEPTED = 0.95
# A few 429s while requests go out at the full rate mean the limit was just
# crossed, so the rate steps down. While demand is below the rate, a stray 429
# is not about the rate and is ignored.
STEP_DOWN = 0.9
RATE_BOUND_SHARE = 0.8
# Without cuts the rate climbs back by this share of itself per second, up to
# the configured rate, so a limit that was hit is probed again slowly.
RECOVERY_SHARE_PER_S = 0.01
MIN_RATE_PER_S = 0.2


class RateLimiter:
    """Spaces requests `1 / rate` apart, with no burst.

    The rate starts at the configured maximum and drops when 429s show that
    the API's own limit, which is not published, is lower. `pause(seconds)`
    delays every slot until then, so a server's Retry-After applies to the
    whole run.
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
        self._last_cut = -WINDOW_S
        self._last_recovery = clock()
        self._sent: deque[float] = deque()
        self._accepted: deque[float] = deque()
        self._throttled: deque[float] = deque()

    async def acquire(self) -> None:
        """Wait for this task's slot."""
        while True:
            now = self._clock()
            self._recover(now)
            start = max(now, self._next_slot, self._paused_until)
            self._next_slot = start + 1.0 / self.rate_per_s
            if start > now:
                await self._sleep(start - now)
            # A pause may have come in while this task slept.
            if self._clock() >= self._paused_until:
                self._record(self._sent)
                return

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now."""
        until = self._clock() + seconds
        if until > self._paused_until:
            logger.debug("requests paused for %.2fs", seconds)
            self._paused_until = until

    def accepted(self) -> None:
        """Count a response that was not a 429."""
        self._record(self._accepted)

    def throttled(self) -> None:
        """Count a 429 and lower the rate if it shows the rate is too high."""
        now = self._record(self._throttled)
        if now - self._last_cut < WINDOW_S:
            return
        lowered = self._lowered_rate(now)
        if lowered is not None and lowered < self.rate_per_s:
            logger.info(
                "rate limited: request rate lowered from %.2f to %.2f per second",
                self.rate_per_s,
                lowered,
            )
            self.rate_per_s = lowered
            self._last_cut = now

    def _lowered_rate(self, now: float) -> float | None:
        responses = len(self._accepted) + len(self._throttled)
        span = min(WINDOW_S, max(now - self._oldest(), MIN_SPAN_S))
        severe = len(self._throttled) > SEVERE_SHARE * responses
        if responses >= MIN_RESPONSES and severe:
            accepted_rate = len(self._accepted) / span
            return max(MIN_RATE_PER_S, accepted_rate * BELOW_ACCEPTED)
        sent_rate = len(self._sent) / span
        if sent_rate >= RATE_BOUND_SHARE * self.rate_per_s:
            return max(MIN_RATE_PER_S, self.rate_per_s * STEP_DOWN)
        return None

    def _oldest(self) -> float:
        return min(events[0] for events in self._windows() if events)

    def _windows(self) -> tuple[deque[float], ...]:
        return (self._sent, self._accepted, self._throttled)

    def _record(self, events: deque[float]) -> float:
        now = self._clock()
        events.append(now)
        for recent in self._windows():
            while recent and recent[0] < now - WINDOW_S:
                recent.popleft()
        return now

    def _recover(self, now: float) -> None:
        elapsed = now - self._last_recovery
        self._last_recovery = now
        if self.rate_per_s < self.max_rate_per_s:
            step = self.rate_per_s * RECOVERY_SHARE_PER_S * elapsed
            self.rate_per_s = min(self.max_rate_per_s, self.rate_per_s + step)
