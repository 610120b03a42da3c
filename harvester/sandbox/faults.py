"""Random fault injection: error statuses, slow responses and broken 200 bodies."""

import random
from enum import Enum

from aiohttp import web

from harvester.sandbox.responses import ApiError, too_many_requests
from harvester.sandbox.settings import SandboxSettings

BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


class FaultKind(Enum):
    """A fault kind, in the order the draw checks them."""

    INTERNAL_ERROR = "500"
    BAD_GATEWAY = "502"
    SERVICE_UNAVAILABLE = "503"
    TOO_MANY_REQUESTS = "429"
    SLOW = "slow"
    TRUNCATE = "truncate"
    EMPTY = "empty"


def fault_rates(settings: SandboxSettings) -> list[tuple[FaultKind, float]]:
    return [
        (FaultKind.INTERNAL_ERROR, settings.p500),
        (FaultKind.BAD_GATEWAY, settings.p502),
        (FaultKind.SERVICE_UNAVAILABLE, settings.p503),
        (FaultKind.TOO_MANY_REQUESTS, settings.p429),
        (FaultKind.SLOW, settings.p_slow),
        (FaultKind.TRUNCATE, settings.p_truncate),
        (FaultKind.EMPTY, settings.p_empty),
    ]


class FaultPicker:
    """Draw at most one fault per request from a generator seeded with fault_seed."""

    def __init__(self, settings: SandboxSettings) -> None:
        self._rates = [(kind, p) for kind, p in fault_rates(settings) if p > 0]
        self._rng = random.Random(settings.fault_seed)

    def pick(self) -> FaultKind | None:
        """Return the fault for the next request, or None for a normal response."""
        if not self._rates:
            return None
        draw = self._rng.random()
        threshold = 0.0
        for kind, probability in self._rates:
            threshold += probability
            if draw < threshold:
                return kind
        return None


def error_fault(kind: FaultKind, settings: SandboxSettings) -> web.Response | None:
    """Return the response of a fault that replaces the normal response, else None."""
    if kind is FaultKind.INTERNAL_ERROR:
        return ApiError(500, "internal_error", "internal server error").to_response()
    if kind is FaultKind.SERVICE_UNAVAILABLE:
        error = ApiError(503, "service_unavailable", "service unavailable")
        return error.to_response()
    if kind is FaultKind.TOO_MANY_REQUESTS:
        return too_many_requests(settings.retry_after_s).to_response()
    if kind is FaultKind.BAD_GATEWAY:
        return web.Response(text=BAD_GATEWAY_HTML, status=502, content_type="text/html")
    return None


def break_body(kind: FaultKind, response: web.Response) -> web.Response:
    """Return a 200 response whose JSON body is cut in half or empty.

    Only a 200 response with a bytes body is changed, and any other response
    is returned as it is.
    """
    body = response.body
    if response.status != 200 or not isinstance(body, bytes):
        return response
    kept = b"" if kind is FaultKind.EMPTY else body[: len(body) // 2]
    return web.Response(
        body=kept,
        status=200,
        content_type=response.content_type,
        charset=response.charset,
    )
