"""Middlewares: request stats, JSON errors, rate limits and faults, and auth."""

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from harvester.sandbox.faults import FaultKind, break_body, error_fault
from harvester.sandbox.oauth import missing_access_token
from harvester.sandbox.responses import ApiError, too_many_requests
from harvester.sandbox.state import get_state

logger = logging.getLogger(__name__)

SANDBOX_PATH_PREFIX = "/_sandbox/"
OAUTH_TOKEN_PATH = "/oauth/token"
BEARER_PREFIX = "bearer "


def _is_sandbox_path(request: web.Request) -> bool:
    return request.path.startswith(SANDBOX_PATH_PREFIX)


@web.middleware
async def stats_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Count every API response by status, leaving /_sandbox/ requests out."""
    response = await handler(request)
    if not _is_sandbox_path(request):
        get_state(request).stats.record_response(response.status)
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Turn API errors, HTTP errors and unexpected exceptions into JSON error bodies."""
    try:
        return await handler(request)
    except ApiError as error:
        logger.debug(
            "%s %s -> %d %s", request.method, request.path, error.status, error.message
        )
        return error.to_response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.lower().replace(" ", "_")
        message = f"{error.reason.lower()}: {request.method} {request.path}"
        return ApiError(error.status, code, message).to_response()
    except Exception:
        logger.exception("unexpected error serving %s %s", request.method, request.path)
        return ApiError(500, "internal_error", "internal server error").to_response()


@web.middleware
async def limits_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Apply the rate limit, then maybe inject one fault, on API paths."""
    if _is_sandbox_path(request):
        return await handler(request)
    state = get_state(request)
    if not state.rate_limiter.try_acquire():
        raise too_many_requests(state.settings.retry_after_s)
    kind = state.faults.pick()
    if kind is None:
        return await handler(request)
    state.stats.record_fault(kind.value)
    logger.debug(
        "injecting fault %s into %s %s", kind.value, request.method, request.path
    )
    return await _respond_with_fault(request, handler, kind)


async def _respond_with_fault(
    request: web.Request, handler: Handler, kind: FaultKind
) -> web.StreamResponse:
    settings = get_state(request).settings
    replacement = error_fault(kind, settings)
    if replacement is not None:
        return replacement
    if kind is FaultKind.SLOW:
        await asyncio.sleep(settings.slow_s)
        return await handler(request)
    response = await handler(request)
    if not isinstance(response, web.Response):
        return response
    return break_body(kind, response)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid Bearer token on API paths when auth is configured."""
    state = get_state(request)
    exempt = _is_sandbox_path(request) or request.path == OAUTH_TOKEN_PATH
    if state.settings.auth_required and not exempt:
        state.oauth.check_access(_bearer_token(request))
    return await handler(request)


def _bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith(BEARER_PREFIX):
        raise missing_access_token()
    return header[len(BEARER_PREFIX) :].strip()
