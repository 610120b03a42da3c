"""The sandbox aiohttp application, and starting and stopping it on loopback."""

import ipaddress
import logging
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from harvester.sandbox import handlers
from harvester.sandbox.middleware import (
    auth_middleware,
    error_middleware,
    limits_middleware,
    stats_middleware,
)
from harvester.sandbox.settings import SandboxSettings
from harvester.sandbox.state import STATE_KEY, Clock, SandboxState, utc_now
from harvester.sandbox.stats import SandboxStats
from harvester.sandbox.traffic import Traffic

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"


def build_app(
    settings: SandboxSettings, traffic: Traffic, clock: Clock | None = None
) -> web.Application:
    """Build the sandbox app.

    `clock` returns the aware UTC now and defaults to real time.
    """
    app = web.Application(
        middlewares=[
            stats_middleware,
            error_middleware,
            limits_middleware,
            auth_middleware,
        ]
    )
    app[STATE_KEY] = SandboxState(settings, traffic, clock or utc_now)
    _add_routes(app)
    return app


def _add_routes(app: web.Application) -> None:
    contacts = "contacts/{metric}"
    app.router.add_get(f"/items/{contacts}/time_window", handlers.multi_item_series)
    app.router.add_get(
        f"/items/{{item_id}}/{contacts}/time_window", handlers.item_series
    )
    app.router.add_get(f"/items/{{item_id}}/{contacts}", handlers.item_range_total)
    app.router.add_get(
        f"/users/{{user_id}}/{contacts}/time_window", handlers.user_series
    )
    app.router.add_get(f"/users/{{user_id}}/{contacts}", handlers.user_range_total)
    app.router.add_post("/oauth/token", handlers.oauth_token)
    app.router.add_get("/_sandbox/stats", handlers.sandbox_stats)


def require_loopback(host: str) -> None:
    """Raise ValueError unless `host` is localhost or a loopback IP address.

    The sandbox accepts made-up credentials and injects faults on purpose, so
    it only listens where other machines cannot reach it.
    """
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid host {host!r}: use a loopback address such as 127.0.0.1"
        ) from None
    if not address.is_loopback:
        raise ValueError(f"host {host} is not a loopback address: use 127.0.0.1 or ::1")


@dataclass
class RunningSandbox:
    """A sandbox server listening on `url` until `close()`."""

    url: str
    port: int
    state: SandboxState
    runner: web.AppRunner

    @property
    def stats(self) -> SandboxStats:
        return self.state.stats

    async def close(self) -> None:
        await self.runner.cleanup()
        logger.info("sandbox at %s stopped", self.url)

    async def __aenter__(self) -> "RunningSandbox":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def start_sandbox(
    settings: SandboxSettings,
    traffic: Traffic,
    host: str = LOOPBACK_HOST,
    port: int = 0,
    clock: Clock | None = None,
) -> RunningSandbox:
    """Start the sandbox on a loopback `host`; port 0 picks a free port."""
    require_loopback(host)
    runner = web.AppRunner(build_app(settings, traffic, clock), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = _bound_port(runner)
    url = _url(host, bound_port)
    logger.info("sandbox listening at %s", url)
    return RunningSandbox(url, bound_port, runner.app[STATE_KEY], runner)


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


def _url(host: str, port: int) -> str:
    if ":" in host:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"
