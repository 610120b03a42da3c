"""One request rate shared by every task of a run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Spaces requests at most `rate_per_s` apart, with no burst.

    A 429 pauses every task: `pause(seconds)` holds all slots until then, so a
    server's Retry-After is honoured by the whole run, not only by one task.
    """

    def __init__(
        self,
        rate_per_s: float,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0

    async def acquire(self) -> None:
        """Wait for this task's slot."""
        while True:
            now = self._clock()
            start = max(now, self._next_slot, self._paused_until)
            if start <= now:
                self._next_slot = now + 1.0 / self.rate_per_s
                return
            # Sleep until the slot, then check again: a pause may have come in.
            self._next_slot = start + 1.0 / self.rate_per_s
            await self._sleep(start - now)
            if self._clock() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now."""
        until = self._clock() + seconds
        if until > self._paused_until:
            logger.debug("rate limiter paused for %.2fs", seconds)
            self._paused_until = until
