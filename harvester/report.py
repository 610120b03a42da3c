"""The summary of a run, as printed at its end and logged."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Failed items listed one by one in the summary; the rest are in harvest_runs.
LISTED_FAILURES = 20


@dataclass
class RunReport:
    """The outcome of one harvest or backfill."""

    run_id: int
    kind: str
    status: str
    duration_s: float
    items: int
    requests: int
    retries: int
    rows_inserted: int
    rows_changed: int
    failed_items: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        failed = len(self.failed_items)
        lines = [
            f"{self.kind} run {self.run_id} {self.status} in {self.duration_s:.1f}s: "
            f"{self.requests} requests ({self.retries} retries), "
            f"{self.rows_inserted} rows inserted, {self.rows_changed} changed; "
            f"{self.items - failed} items ok, {failed} failed"
        ]
        reasons = Counter(
            reason_kind(reason)
            for item_reasons in self.failed_items.values()
            for reason in item_reasons
        )
        for reason, count in reasons.most_common():
            lines.append(f"  {count} x {reason}")
        listed = sorted(self.failed_items.items())[:LISTED_FAILURES]
        for item_id, item_reasons in listed:
            line = f"  {item_id}: {item_reasons[0]}"
            if len(item_reasons) > 1:
                line += f" (and {len(item_reasons) - 1} more)"
            lines.append(line)
        if failed > LISTED_FAILURES:
            more = failed - LISTED_FAILURES
            lines.append(f"  ... and {more} more in harvest_runs.failed_items")
        return "\n".join(lines)


def reason_kind(reason: str) -> str:
    """Return a failure reason without the error's own words.

    Reasons read `metric/unit: kind: details`, for example
    `questions/hour: gave up after 6 attempts: server error 503: ...`.
    """
    return ": ".join(reason.split(": ")[:2])
