"""Request counters of a running sandbox, served at /_sandbox/stats."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SandboxStats:
    """Counters of API requests, excluding requests to /_sandbox/ paths.

    `ids_served` counts item ids whose series or range total was returned.
    Seller requests do not add to it.
    """

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    too_many_requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    ids_served: int = 0

    def record_response(self, status: int) -> None:
        self.requests += 1
        self.by_status[status] += 1
        if status == 429:
            self.too_many_requests += 1

    def record_fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def record_ids_served(self, count: int) -> None:
        self.ids_served += count

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data, with status codes as string keys."""
        return {
            "requests": self.requests,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "too_many_requests": self.too_many_requests,
            "faults": dict(sorted(self.faults.items())),
            "ids_served": self.ids_served,
        }
