"""Running a plan: streams fetched concurrently, each window written as it arrives."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harvester.buckets import Window, settled_before, utc_now
from harvester.client import ApiClient
from harvester.config import Settings
from harvester.errors import RetryableApiError, WindowTooLargeError
from harvester.fetch import BatchFetcher
from harvester.planner import Stream, batches
from harvester.responses import BatchResponse
from harvester.retry import RetryPolicy
from harvester.store import BucketChunk, ProgressUpdate, Store

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class RunTotals:
    """Rows written and items failed by a run, as recorded in harvest_runs."""

    rows_inserted: int = 0
    rows_changed: int = 0
    windows: int = 0
    # item id -> one reason per metric and unit that failed
    failed_items: dict[str, list[str]] = field(default_factory=dict)

    def record_failures(self, stream: Stream, failed: dict[str, str]) -> None:
        for item_id, reason in failed.items():
            reasons = self.failed_items.setdefault(item_id, [])
            reasons.append(f"{stream.metric}/{stream.unit}: {reason}")


class Runner:
    """Executes streams under the shared rate limit, writing each window in bulk."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: ApiClient,
        policy: RetryPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._policy = policy
        self._fetcher = BatchFetcher(client, policy, settings.api.batch_size)
        self._clock = clock
        self.max_last = settings.api.max_last
        self.totals = RunTotals()

    async def run(self, streams: list[Stream]) -> RunTotals:
        started = time.monotonic()
        # A fixed set of workers takes streams in turn, so memory does not grow
        # with the number of items. More workers than request slots keep every
        # slot busy while some of them write.
        pending = iter(streams)
        workers = min(len(streams), self._settings.api.concurrency * 2)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._work(pending))
        logger.info(
            "%d streams done in %.1fs: %d windows, %d rows inserted, %d changed",
            len(streams),
            time.monotonic() - started,
            self.totals.windows,
            self.totals.rows_inserted,
            self.totals.rows_changed,
        )
        return self.totals

    async def _work(self, pending: Iterator[Stream]) -> None:
        for stream in pending:
            await self._run_stream(stream)

    async def _run_stream(self, stream: Stream) -> None:
        ids = list(stream.ids)
        first = stream.first
        while ids and first < stream.end:
            size = min(self.max_last, stream.end - first)
            window = Window(stream.unit, first, size)
            try:
                failed = await self._run_window(stream, ids, window)
            except WindowTooLargeError as error:
                self._shrink_windows(error, size)
                continue
            ids = [item_id for item_id in ids if item_id not in failed]
            first = window.end

    def _shrink_windows(self, error: WindowTooLargeError, sent: int) -> None:
        limit = min(error.max_last, sent - 1)
        if limit < 1:
            raise error
        if limit < self.max_last:
            logger.warning(
                "the API accepts at most last=%d; windows shortened from %d "
                "for the rest of the run",
                limit,
                self.max_last,
            )
            self.max_last = limit

    async def _run_window(
        self, stream: Stream, ids: list[str], window: Window
    ) -> set[str]:
        """Fetch and write one window for `ids`; return the ids that failed."""
        failed: set[str] = set()
        for batch in batches(ids, self._fetcher.batch_size):
            answer = await self._fetch(stream, batch, window)
            fetched_at = self._clock()
            chunk = self._chunk(stream, window, answer, fetched_at)
            counts = await self._store.write(chunk)
            self.totals.rows_inserted += counts.inserted
            self.totals.rows_changed += counts.changed
            self.totals.windows += 1
            self.totals.record_failures(stream, answer.failed)
            failed.update(answer.failed)
        return failed

    async def _fetch(
        self, stream: Stream, ids: list[str], window: Window
    ) -> BatchResponse:
        ending = window.ending_param(self._settings.harvest.zone)
        try:
            return await self._fetcher.fetch(
                stream.metric, stream.unit, ids, window, ending
            )
        except RetryableApiError as error:
            logger.error(
                "%s/%s of %d items ending %s failed after %d attempts: %s",
                stream.metric,
                stream.unit,
                len(ids),
                ending,
                self._settings.api.attempts,
                error,
            )
            reason = f"gave up after {self._settings.api.attempts} attempts: {error}"
            return BatchResponse(failed=dict.fromkeys(ids, reason))

    def _chunk(
        self,
        stream: Stream,
        window: Window,
        answer: BatchResponse,
        fetched_at: datetime,
    ) -> BucketChunk:
        harvest = self._settings.harvest
        open_from = settled_before(
            stream.unit, fetched_at, harvest.settle_delay, harvest.zone
        )
        progress = ProgressUpdate(
            since=window.first,
            may_create=window.first == stream.create_from,
            backfill_range=stream.backfill_range,
        )
        rows = []
        for item_id, totals in answer.totals.items():
            rows += [
                (item_id, index, total, index < open_from)
                for index, total in totals.items()
            ]
            reach = covered_until(totals, window)
            if reach is None:
                continue
            if stream.backfill_range is None:
                # Harvest progress only counts settled buckets.
                reach = min(reach, open_from)
            progress.reach.setdefault(reach, []).append(item_id)
        return BucketChunk(stream.metric, stream.unit, fetched_at, rows, progress)


def covered_until(totals: dict[int, int], window: Window) -> int | None:
    """Return where the response's coverage ends if it starts at the window's start."""
    if window.first not in totals:
        return None
    return max(totals) + 1


def outcome_of(
    totals: RunTotals,
    client: ApiClient,
    policy: RetryPolicy,
    status: str,
    error: str | None,
) -> dict[str, Any]:
    return {
        "status": status,
        "requests": client.counters.requests,
        "retries": policy.retries,
        "rows_inserted": totals.rows_inserted,
        "rows_changed": totals.rows_changed,
        "failed_items": totals.failed_items,
        "error": error,
    }
