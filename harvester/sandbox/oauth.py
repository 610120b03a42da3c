"""OAuth refresh-token grant with rotation, and access-token checks."""

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from harvester.sandbox.responses import ApiError
from harvester.sandbox.settings import SandboxSettings

logger = logging.getLogger(__name__)

TOKEN_SCOPE = "offline_access read"


def invalid_access_token() -> ApiError:
    return ApiError(401, "unauthorized", "invalid access token")


def missing_access_token() -> ApiError:
    return ApiError(
        401, "unauthorized", "missing access token: send Authorization: Bearer TOKEN"
    )


class OAuthState:
    """Issued access tokens and the one refresh token that is valid right now.

    Each successful refresh issues a new refresh token and invalidates the one
    it used. Access tokens expire `token_ttl_s` seconds after issue, by the
    sandbox clock.
    """

    def __init__(
        self,
        settings: SandboxSettings,
        clock: Callable[[], datetime],
        user_id: int,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._user_id = user_id
        self.current_refresh_token = settings.refresh_token
        self._access_expiry: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"OAuthState(client_id={self._settings.client_id!r})"

    def refresh(self, form: Mapping[str, str]) -> dict[str, Any]:
        """Run the refresh_token grant and return the token response body.

        Raises ApiError 400 for an unsupported grant or an invalid refresh
        token, and 401 for a wrong client_id or client_secret.
        """
        if form.get("grant_type") != "refresh_token":
            raise ApiError(
                400, "unsupported_grant_type", "grant_type must be refresh_token"
            )
        self._check_client(form)
        self._check_refresh_token(form.get("refresh_token", ""))
        return self._issue_tokens()

    def check_access(self, token: str) -> None:
        """Raise ApiError 401 unless the token is the static or a live issued token."""
        static = self._settings.token
        if static is not None and hmac.compare_digest(token, static):
            return
        expiry = self._access_expiry.get(token)
        if expiry is None or self._clock() >= expiry:
            raise invalid_access_token()

    def _check_client(self, form: Mapping[str, str]) -> None:
        expected_id = self._settings.client_id
        expected_secret = self._settings.client_secret
        if expected_id is None or expected_secret is None:
            raise ApiError(401, "invalid_client", "no OAuth client is configured")
        id_ok = hmac.compare_digest(form.get("client_id", ""), expected_id)
        secret_ok = hmac.compare_digest(form.get("client_secret", ""), expected_secret)
        if not (id_ok and secret_ok):
            raise ApiError(401, "invalid_client", "invalid client_id or client_secret")

    def _check_refresh_token(self, refresh_token: str) -> None:
        current = self.current_refresh_token
        if current is None or not hmac.compare_digest(refresh_token, current):
            logger.info("rejected an invalid or already used refresh token")
            raise ApiError(
                400, "invalid_grant", "invalid or already used refresh_token"
            )

    def _issue_tokens(self) -> dict[str, Any]:
        now = self._clock()
        self._drop_expired(now)
        access_token = f"APP_USR-{secrets.token_hex(24)}"
        refresh_token = f"TG-{secrets.token_hex(24)}"
        ttl = self._settings.token_ttl_s
        self._access_expiry[access_token] = now + timedelta(seconds=ttl)
        self.current_refresh_token = refresh_token
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": TOKEN_SCOPE,
            "user_id": self._user_id,
            "refresh_token": refresh_token,
        }

    def _drop_expired(self, now: datetime) -> None:
        expired = [t for t, expiry in self._access_expiry.items() if expiry <= now]
        for token in expired:
            del self._access_expiry[token]
