"""Token-bucket rate limiting of API requests."""

import time
from collections.abc import Callable


class TokenBucket:
    """Allow `rate` requests per second, with a burst of one second's worth.

    The burst is at least one request, so a rate below 1 still admits single
    requests. A rate of 0 disables the limit. Time comes from a monotonic
    clock, never from the sandbox clock that tests may freeze.
    """

    def __init__(
        self, rate: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._monotonic = monotonic
        self._tokens = self.capacity
        self._updated = monotonic()

    def try_acquire(self) -> bool:
        """Take one token and return True, or return False when the bucket is empty."""
        if self.rate <= 0:
            return True
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._monotonic()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now
