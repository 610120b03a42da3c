"""Validation of time_window responses, from raw bytes to buckets keyed by item.

Everything the API sends is checked here before anything can reach the tables.
The API's known quirks are normalised: a single object where an array was
expected, zero buckets left out of `results`, an extra bucket past the window,
`last` sent as a string, and rows out of order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from harvester.buckets import SECONDS_PER_HOUR, Unit, Window, day_index
from harvester.errors import InvalidResponseError


@dataclass
class BatchResponse:
    """Validated series of one request: bucket totals per item, failures per item."""

    totals: dict[str, dict[int, int]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def parse_batch(
    body: bytes, ids: list[str], unit: Unit, window: Window
) -> BatchResponse:
    """Parse a multi-id time_window body for `ids` over `window`.

    Raises InvalidResponseError when the body is not JSON, has the wrong shape or
    contradicts the request. Ids missing from the response are reported as
    `not_returned`, never as zero.
    """
    document = decode(body)
    elements = document if isinstance(document, list) else [document]
    answer = BatchResponse()
    wanted = set(ids)
    for element in elements:
        read_element(element, wanted, unit, window, answer)
    for item_id in ids:
        if item_id not in answer.totals and item_id not in answer.failed:
            answer.failed[item_id] = "not_returned"
    return answer


def decode(body: bytes) -> Any:
    if not body:
        raise InvalidResponseError("empty body in a 200 response")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidResponseError(f"body is not valid JSON: {error}") from None


def read_element(
    element: object, wanted: set[str], unit: Unit, window: Window, answer: BatchResponse
) -> None:
    if not isinstance(element, dict):
        raise InvalidResponseError(f"series entry is not an object: {element!r:.80}")
    item_id = element.get("item_id")
    if not isinstance(item_id, str) or item_id not in wanted:
        raise InvalidResponseError(
            f"response names item {item_id!r}, which was not requested"
        )
    if "results" not in element and ("error" in element or "status" in element):
        reject_repeat(
            item_id, answer.failed.get(item_id), error_reason(element), answer
        )
        answer.failed[item_id] = error_reason(element)
        return
    totals = read_series(element, item_id, unit, window)
    reject_repeat(item_id, answer.totals.get(item_id), totals, answer)
    answer.totals[item_id] = totals


def reject_repeat(
    item_id: str, earlier: object, later: object, response: BatchResponse
) -> None:
    """Raise unless an item appears once, or again with identical content.

    A prefixed multi-id request names its first id twice, in the path and in
    `ids`, and a server may return a series for both.
    """
    seen = item_id in response.totals or item_id in response.failed
    if seen and earlier != later:
        raise InvalidResponseError(
            f"response repeats item {item_id!r} with other values"
        )


def error_reason(element: dict[str, Any]) -> str:
    reason = element.get("error") or element.get("status") or "error"
    return f"api_error:{reason}"


def read_series(
    element: dict[str, Any], item_id: str, unit: Unit, window: Window
) -> dict[int, int]:
    """Return the totals of every bucket of `window` that the response covers."""
    check_unit(element, item_id, unit)
    check_last(element, item_id)
    answered_first, answered_end = response_window(element, item_id, unit)
    results = element.get("results")
    if not isinstance(results, list):
        raise InvalidResponseError(f"series of {item_id} has no results list")

    reported = read_results(results, item_id, unit, answered_first, answered_end)
    check_total(element, item_id, sum(reported.values()))

    first = max(window.first, answered_first)
    end = min(window.end, answered_end)
    return {index: reported.get(index, 0) for index in range(first, end)}


def check_unit(element: dict[str, Any], item_id: str, unit: Unit) -> None:
    if element.get("unit") != unit.value:
        raise InvalidResponseError(
            f"series of {item_id} has unit {element.get('unit')!r}, requested {unit}"
        )


def check_last(element: dict[str, Any], item_id: str) -> None:
    """Accept `last` as a number, as a string of digits, or absent (it is unused)."""
    last = element.get("last")
    if last is None or (isinstance(last, str) and last.isdigit()):
        return
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise InvalidResponseError(f"series of {item_id} has invalid last {last!r}")


def check_total(element: dict[str, Any], item_id: str, summed: int) -> None:
    total = element.get("total")
    if not is_count(total):
        raise InvalidResponseError(f"series of {item_id} has invalid total {total!r}")
    if total != summed:
        raise InvalidResponseError(
            f"series of {item_id} has total {total} but its results add up to {summed}"
        )


def response_window(
    element: dict[str, Any], item_id: str, unit: Unit
) -> tuple[int, int]:
    """Return the first and one-past-last bucket of the response's own window."""
    first = label_index(element.get("date_from"), unit, item_id)
    end = label_index(element.get("date_to"), unit, item_id)
    if end < first:
        raise InvalidResponseError(f"series of {item_id} has date_to before date_from")
    return first, end


def read_results(
    results: list[Any], item_id: str, unit: Unit, first: int, end: int
) -> dict[int, int]:
    """Map bucket index to total; buckets may come sparse and in any order.

    Some responses also carry the bucket labelled `date_to`, so both ends of the
    response's window are accepted; the caller keeps only the requested window.
    """
    reported: dict[int, int] = {}
    # This loop runs once per bucket of every response, so it avoids calls.
    known_labels = LABEL_INDEXES[unit]
    for row in results:
        if type(row) is not dict:
            raise InvalidResponseError(f"result row of {item_id} is not an object")
        label = row.get("date")
        index = known_labels.get(label) if type(label) is str else None
        if index is None:
            index = remember_label(label, unit, item_id)
        total = row.get("total")
        # type() rather than isinstance(): a bool is not a count.
        if type(total) is not int or total < 0:
            raise InvalidResponseError(
                f"result of {item_id} at {row.get('date')} has invalid total {total!r}"
            )
        if not first <= index <= end:
            raise InvalidResponseError(
                f"result of {item_id} at {row.get('date')} lies outside the "
                "response's window"
            )
        if index in reported:
            raise InvalidResponseError(f"result of {item_id} repeats {row.get('date')}")
        reported[index] = total
    return reported


# Bucket index of every label seen, per unit; responses repeat the same labels.
LABEL_INDEXES: dict[Unit, dict[str, int]] = {Unit.HOUR: {}, Unit.DAY: {}}
MAX_REMEMBERED_LABELS = 100_000


def remember_label(label: object, unit: Unit, item_id: str) -> int:
    index = label_index(label, unit, item_id)
    known = LABEL_INDEXES[unit]
    if len(known) >= MAX_REMEMBERED_LABELS:
        known.clear()
    known[label] = index  # type: ignore[index]  # label_index checked it is a str
    return index


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def label_index(label: object, unit: Unit, item_id: str) -> int:
    if not isinstance(label, str):
        raise InvalidResponseError(f"series of {item_id} has invalid date {label!r}")
    try:
        return parse_label(label, unit)
    except ValueError as error:
        raise InvalidResponseError(
            f"series of {item_id} has invalid date {label!r}: {error}"
        ) from None


def parse_label(label: str, unit: Unit) -> int:
    """Return the bucket index of a label; raises ValueError for a bad one.

    Hour labels must fall on a whole hour. Day labels count by the calendar date
    as written: `2026-12-01T04:00:00Z` and `2026-12-01T00:00:00Z` are both
    1 December, because the API labels local midnight either way.
    """
    instant = datetime.fromisoformat(label)
    if unit is Unit.DAY:
        return day_index(instant.date())
    if instant.tzinfo is None:
        raise ValueError("an hour label needs an offset")
    seconds = int(instant.astimezone(UTC).timestamp())
    if seconds % SECONDS_PER_HOUR or instant.microsecond:
        raise ValueError("an hour label must fall on a whole hour")
    return seconds // SECONDS_PER_HOUR
