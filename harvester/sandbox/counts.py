"""Seeded hour counts: the final number of contacts per item, metric and UTC hour.

Every value derives from `random.Random(int).random()`, whose sequence for an
integer seed the Python documentation promises to keep across versions
("Notes on Reproducibility" in the `random` module docs). The counts are
therefore the same in every process, unlike anything built on the salted
built-in `hash()` of strings.
"""

import bisect
import functools
import math
import random

HOURS_PER_DAY = 24
MAX_COUNT = 20

# Stream tags keep the random sequences for different purposes apart.
_ITEM_RATE_STREAM = 1
_DAY_COUNT_STREAM = 2
_REVISION_STREAM = 3

_MASK64 = (1 << 64) - 1

# Relative activity per local hour of day: quiet nights, busy late mornings
# and evenings.
HOUR_OF_DAY_WEIGHTS = (
    0.10, 0.06, 0.04, 0.03, 0.03, 0.05, 0.12, 0.30,
    0.55, 0.80, 0.95, 1.00, 0.90, 0.85, 0.90, 0.95,
    0.90, 0.85, 0.90, 1.00, 0.95, 0.75, 0.45, 0.20,
)  # fmt: skip

# Mean contacts per hour at peak weight, by metric index.
_METRIC_SCALE = (1.0, 1.6)

# Share of items that are busy, and the peak hourly mean ranges of quiet and
# busy items.
_BUSY_SHARE = 0.08
_QUIET_MEAN = (0.02, 0.45)
_BUSY_MEAN = (2.0, 10.0)

_DAY_CACHE_SIZE = 65_536
_RATE_CACHE_SIZE = 16_384


def stream_seed(seed: int, stream: int, revision: int, *parts: int) -> int:
    """Pack the seed, a stream tag, a revision and non-negative parts into one int."""
    key = ((seed & _MASK64) << 16) | stream
    key = (key << 32) | revision
    for part in parts:
        key = (key << 48) | part
    return key


def _poisson_cdf(mean: float) -> list[float]:
    """Return the Poisson CDF for 0..MAX_COUNT, with the tail folded into MAX_COUNT."""
    cdf: list[float] = []
    term = math.exp(-mean)
    total = 0.0
    for k in range(MAX_COUNT):
        total += term
        cdf.append(total)
        term *= mean / (k + 1)
    cdf.append(1.0)
    return cdf


class CountModel:
    """Deterministic hour counts for one seed, revision and local UTC offset."""

    def __init__(
        self,
        seed: int,
        revision: int,
        revision_share: float,
        day_offset_hours: int,
    ) -> None:
        self.seed = seed
        self.revision = revision
        self.revision_share = revision_share
        self.day_offset_hours = day_offset_hours
        self.day_counts = functools.lru_cache(maxsize=_DAY_CACHE_SIZE)(
            self._compute_day_counts
        )
        self._hour_cdfs = functools.lru_cache(maxsize=_RATE_CACHE_SIZE)(
            self._compute_hour_cdfs
        )

    def _compute_hour_cdfs(
        self, item_index: int, metric_index: int
    ) -> tuple[list[float], ...]:
        """Return one count CDF per UTC hour of day for the item and metric."""
        peak_mean = self._peak_mean(item_index, metric_index)
        cdfs: list[list[float]] = []
        for utc_hour in range(HOURS_PER_DAY):
            local_hour = (utc_hour + self.day_offset_hours) % HOURS_PER_DAY
            cdfs.append(_poisson_cdf(peak_mean * HOUR_OF_DAY_WEIGHTS[local_hour]))
        return tuple(cdfs)

    def _peak_mean(self, item_index: int, metric_index: int) -> float:
        key = stream_seed(self.seed, _ITEM_RATE_STREAM, 0, item_index, metric_index)
        rng = random.Random(key)
        low, high = _BUSY_MEAN if rng.random() < _BUSY_SHARE else _QUIET_MEAN
        mean = low + (high - low) * rng.random()
        return mean * _METRIC_SCALE[metric_index]

    def _compute_day_counts(
        self, item_index: int, metric_index: int, day_ordinal: int
    ) -> tuple[int, ...]:
        """Return the 24 final counts of one UTC day, with the revision applied."""
        cdfs = self._hour_cdfs(item_index, metric_index)
        key = stream_seed(
            self.seed, _DAY_COUNT_STREAM, 0, item_index, metric_index, day_ordinal
        )
        draw = random.Random(key).random
        counts = [bisect.bisect_right(cdf, draw()) for cdf in cdfs]
        if self.revision > 0:
            self._apply_revision(counts, item_index, metric_index, day_ordinal)
        return tuple(counts)

    def _apply_revision(
        self, counts: list[int], item_index: int, metric_index: int, day_ordinal: int
    ) -> None:
        """Set a `revision_share` of hours to base + revision, or to 1 if base is 0."""
        key = stream_seed(
            self.seed,
            _REVISION_STREAM,
            self.revision,
            item_index,
            metric_index,
            day_ordinal,
        )
        draw = random.Random(key).random
        for hour, base in enumerate(counts):
            if draw() < self.revision_share:
                counts[hour] = base + self.revision if base > 0 else 1
