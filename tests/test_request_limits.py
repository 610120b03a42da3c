"""Reading a 400 that limits the request's size, whatever its wording."""

from __future__ import annotations

import pytest

from harvester.client import request_size_error
from harvester.errors import BatchTooLargeError, WindowTooLargeError

PARAMS = {"ids": ",".join(f"MLA{n}" for n in range(50)), "last": "720"}


@pytest.mark.parametrize(
    ("message", "max_ids"),
    [
        ("maximum amount of items to query is 20", 20),
        ("too many ids: at most 20 per request", 20),
        ("ids limit exceeded", 25),
    ],
)
def test_batch_limit_messages(message: str, max_ids: int) -> None:
    error = request_size_error(message, "/items/contacts/questions/time_window", PARAMS)

    assert isinstance(error, BatchTooLargeError)
    assert error.max_ids == max_ids


@pytest.mark.parametrize(
    ("message", "max_last"),
    [
        ("invalid last 721: the maximum is 720", 360),
        ("last may not exceed 100", 100),
        ("parameter last exceeds the limit", 360),
    ],
)
def test_window_limit_messages(message: str, max_last: int) -> None:
    error = request_size_error(message, "/items/contacts/questions/time_window", PARAMS)

    assert isinstance(error, WindowTooLargeError)
    assert error.max_last == max_last


def test_unknown_id_message_not_a_limit() -> None:
    message = "item MLA600000123 not found, maximum one retry"
    params = {"ids": "MLA600000123", "last": "24"}

    error = request_size_error(message, "/items/contacts/questions/time_window", params)

    assert error is None
