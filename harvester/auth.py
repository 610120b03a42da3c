"""Access tokens: a fixed one from the config, or the OAuth refresh-token grant.

Refresh tokens are single-use and rotate on every refresh, so the pair lives in
PostgreSQL (oauth_tokens) and every refresh happens under a row lock: one
process refreshes, the others wait and then adopt the pair it stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp

from harvester.buckets import utc_now
from harvester.client import decode_error
from harvester.config import ApiSettings
from harvester.errors import AuthError, RetryableApiError
from harvester.retry import RetryPolicy
from harvester.store import LockedTokens, Store, TokenPair

logger = logging.getLogger(__name__)

# Refresh this long before the access token expires, so no request carries a
# token that dies in flight. Short-lived tokens use a tenth of their lifetime.
REFRESH_MARGIN = timedelta(minutes=5)
# The expiry given to the config's access token: it is used until rejected.
NO_KNOWN_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC)


class TokenSource(Protocol):
    async def token(self) -> str:
        """Return the access token to send; empty for none."""
        ...

    async def refresh(self, rejected: str) -> str:
        """Return a new access token after the API rejected `rejected`."""
        ...


class FixedToken:
    """The access token from the config; it cannot be refreshed."""

    def __init__(self, access_token: str) -> None:
        self._access_token = access_token

    def __repr__(self) -> str:
        return "FixedToken(***)"

    async def token(self) -> str:
        return self._access_token

    async def refresh(self, rejected: str) -> str:
        raise AuthError(
            "the API rejected the access token: set a valid one in [api] "
            "access_token or HARVESTER_ACCESS_TOKEN, or set [api] client_id, "
            "client_secret and refresh_token so that it is refreshed automatically"
        )


class OAuthTokens:
    """Access tokens from the refresh-token grant, refreshed once at a time."""

    def __init__(
        self,
        settings: ApiSettings,
        session: aiohttp.ClientSession,
        store: Store,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._session = session
        self._store = store
        self._policy = policy
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pair: TokenPair | None = None
        self._margin = REFRESH_MARGIN
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"OAuthTokens(client_id={self._settings.client_id!r})"

    async def token(self) -> str:
        pair = self._pair
        if pair is not None and self._is_fresh(pair):
            return pair.access_token
        async with self._lock:
            if self._pair is None:
                self._pair = await self._initial_pair()
            if self._is_fresh(self._pair):
                return self._pair.access_token
            return await self._refresh_locked(self._pair.access_token)

    async def refresh(self, rejected: str) -> str:
        async with self._lock:
            pair = self._pair
            if pair is not None and pair.access_token != rejected:
                return pair.access_token  # another task refreshed already
            return await self._refresh_locked(rejected)

    def _is_fresh(self, pair: TokenPair) -> bool:
        if not pair.access_token:
            return False
        return pair.expires_at - self._margin > self._now()

    def _now(self) -> datetime:
        return self._clock()

    async def _initial_pair(self) -> TokenPair:
        """Prefer the stored pair; else the config's access token until rejected."""
        stored = await self._store.read_tokens(self._settings.client_id)
        if stored is not None and self._is_fresh(stored):
            return stored
        seed = stored or TokenPair("", self._settings.refresh_token, self._now())
        if self._settings.access_token:
            access_token = self._settings.access_token
            return TokenPair(access_token, seed.refresh_token, NO_KNOWN_EXPIRY)
        return seed

    async def _refresh_locked(self, rejected: str) -> str:
        client_id = self._settings.client_id
        async with self._store.lock_tokens(
            client_id, self._settings.refresh_token
        ) as locked:
            stored = locked.pair
            if stored.access_token != rejected and self._is_fresh(stored):
                logger.info("adopted the access token another process refreshed")
                self._pair = stored
                return stored.access_token
            pair = await self._exchange_rotating(locked)
        self._pair = pair
        return pair.access_token

    async def _exchange_rotating(self, locked: LockedTokens) -> TokenPair:
        """Redeem the stored refresh token; on invalid_grant try the config's once."""
        candidates = [locked.pair.refresh_token]
        if self._settings.refresh_token not in candidates:
            candidates.append(self._settings.refresh_token)
        for refresh_token in candidates:
            pair = await self._exchange(refresh_token)
            if pair is not None:
                await locked.save(pair)
                self.refreshes += 1
                logger.info("access token refreshed; it expires at %s", pair.expires_at)
                return pair
        raise AuthError(
            "the API rejected the refresh token (invalid_grant): the account must "
            "be authorised again; put the new refresh token in [api] refresh_token "
            "or HARVESTER_REFRESH_TOKEN"
        )

    async def _exchange(self, refresh_token: str) -> TokenPair | None:
        """POST the refresh grant; return None when the token was already used."""
        async for attempt in self._policy.retrying("token refresh"):
            with attempt:
                return await self._post_grant(refresh_token)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _post_grant(self, refresh_token: str) -> TokenPair | None:
        # NOTE: if the API rotates the pair but its response is lost on the way,
        # the retry sends a used refresh token and gets invalid_grant. No client
        # can recover from that, so the account must be authorised again.
        form = {
            "grant_type": "refresh_token",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret,
            "refresh_token": refresh_token,
        }
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with self._session.post(
                self._settings.token_endpoint, data=form, timeout=timeout
            ) as response:
                status, body = response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise RetryableApiError(
                f"token refresh failed: {type(error).__name__}"
            ) from None
        return self._read_grant(status, body)

    def _read_grant(self, status: int, body: bytes) -> TokenPair | None:
        document = decode_error(body)
        if status == 200:
            return self._pair_from(document)
        code = str(document.get("error", ""))
        if status == 400 and code == "invalid_grant":
            logger.warning("the refresh token was rejected as invalid or already used")
            return None
        if status == 429 or status >= 500:
            raise RetryableApiError(f"token refresh failed with status {status}")
        raise AuthError(
            f"token refresh failed with status {status} ({code or 'no error code'}): "
            "check [api] client_id and client_secret"
        )

    def _pair_from(self, document: dict[str, object]) -> TokenPair:
        access = document.get("access_token")
        refresh = document.get("refresh_token")
        expires_in = document.get("expires_in")
        if not (isinstance(access, str) and access and isinstance(refresh, str)):
            raise RetryableApiError("token refresh response lacks the token pair")
        if not isinstance(expires_in, int) or isinstance(expires_in, bool):
            raise RetryableApiError("token refresh response lacks expires_in")
        lifetime = timedelta(seconds=expires_in)
        self._margin = min(REFRESH_MARGIN, lifetime / 10)
        return TokenPair(access, refresh, self._now() + lifetime)
