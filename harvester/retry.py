"""The retry policy: which failures are retried, how long to wait, and the log of it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
)

from harvester.config import ApiSettings
from harvester.errors import RateLimitedError, RetryableApiError

logger = logging.getLogger(__name__)

# A Retry-After of 0 still waits this long, so no failure is retried in a tight loop.
MIN_WAIT_S = 0.2
# 429s mean "slower", not "broken": a request may meet this many times more of
# them than `attempts` allows for other failures, while the rate adapts.
RATE_LIMIT_PATIENCE = 4


class RetryPolicy:
    """Builds tenacity retryers from the [api] settings and counts their retries."""

    def __init__(
        self,
        settings: ApiSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0

    def retrying(self, what: str) -> AsyncRetrying:
        """Return a retryer for one request; `what` names it in the logs."""
        return AsyncRetrying(
            stop=self.should_stop,
            wait=self.wait_seconds,
            retry=retry_if_exception_type(RetryableApiError),
            before_sleep=lambda state: self._log_retry(state, what),
            sleep=self._sleep,
            reraise=True,
        )

    def should_stop(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        limit = self._settings.attempts
        if isinstance(error, RateLimitedError):
            limit *= RATE_LIMIT_PATIENCE
        return state.attempt_number >= limit

    def wait_seconds(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, never shorter than a Retry-After."""
        ceiling = min(
            self._settings.backoff_max_s,
            self._settings.backoff_initial_s * 2 ** (state.attempt_number - 1),
        )
        wait = max(MIN_WAIT_S, self._rng.uniform(ceiling / 2, ceiling))
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after_s is not None:
            wait = max(wait, error.retry_after_s)
        return wait

    def _log_retry(self, state: RetryCallState, what: str) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "retrying %s in %.2fs (attempt %d failed): %s",
            what,
            wait,
            state.attempt_number,
            error,
        )
