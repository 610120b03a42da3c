"""Fetching one batch of ids over one window: retries, then splitting on rejection."""

from __future__ import annotations

import logging

from harvester.buckets import Unit, Window
from harvester.client import ApiClient
from harvester.errors import (
    BatchTooLargeError,
    RejectedRequestError,
    WindowTooLargeError,
)
from harvester.responses import BatchResponse, parse_batch
from harvester.retry import RetryPolicy

logger = logging.getLogger(__name__)


class BatchFetcher:
    """Fetches validated series; a rejected batch is halved until a bad id is alone."""

    def __init__(self, client: ApiClient, policy: RetryPolicy, batch_size: int) -> None:
        self._client = client
        self._policy = policy
        self.batch_size = batch_size

    async def fetch(
        self, metric: str, unit: Unit, ids: list[str], window: Window, ending: str
    ) -> BatchResponse:
        """Return totals of the ids that succeeded and a reason for each that failed.

        Raises RetryableApiError when the attempts run out for the whole batch,
        WindowTooLargeError when the window spans more buckets than the API allows, and
        AuthError when the credentials are rejected.
        """
        try:
            return await self._fetch_once(metric, unit, ids, window, ending)
        except BatchTooLargeError as error:
            self._shrink(error, len(ids))
            return await self._split(
                metric, unit, ids, window, ending, error, self.batch_size
            )
        except WindowTooLargeError:
            raise
        except RejectedRequestError as error:
            return await self._split(metric, unit, ids, window, ending, error)

    async def _fetch_once(
        self, metric: str, unit: Unit, ids: list[str], window: Window, ending: str
    ) -> BatchResponse:
        what = f"{metric}/{unit} of {len(ids)} items ending {ending}"
        async for attempt in self._policy.retrying(what):
            with attempt:
                body = await self._client.fetch_series(
                    metric, unit, ids, window, ending
                )
                return parse_batch(body, ids, unit, window)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _split(
        self,
        metric: str,
        unit: Unit,
        ids: list[str],
        window: Window,
        ending: str,
        error: RejectedRequestError,
        part_size: int | None = None,
    ) -> BatchResponse:
        """Fetch `ids` again in parts: halves by default, to corner one bad id."""
        if len(ids) == 1:
            logger.warning("item %s skipped: %s", ids[0], error)
            return BatchResponse(failed={ids[0]: error.reason})
        size = part_size or (len(ids) + 1) // 2
        logger.debug("splitting rejected batch of %d ids: %s", len(ids), error)
        answer = BatchResponse()
        for start in range(0, len(ids), size):
            part = await self.fetch(
                metric, unit, ids[start : start + size], window, ending
            )
            answer.totals.update(part.totals)
            answer.failed.update(part.failed)
        return answer

    def _shrink(self, error: BatchTooLargeError, sent: int) -> None:
        # NOTE: the learned limit lasts for this run only; the next run starts
        # from [api] batch_size and learns it again.
        limit = min(error.max_ids or sent // 2, sent - 1)
        limit = max(1, limit)
        if limit < self.batch_size:
            logger.warning(
                "the API accepts at most %d ids per request; batch size lowered "
                "from %d for the rest of the run",
                limit,
                self.batch_size,
            )
            self.batch_size = limit
