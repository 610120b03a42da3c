"""Fetch one OAuth access token in a separate process, for the cross-process tests.

The first stdin line is a JSON object with database_url, base_url, client_id,
client_secret and refresh_token. The process opens its own Store, prints
"ready", waits for a second stdin line and then calls OAuthTokens.token(). Its
last stdout line is a JSON object with either access_token and refreshes, or
error.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from harvester.auth import OAuthTokens
from harvester.config import ApiSettings
from harvester.errors import HarvesterError
from harvester.retry import RetryPolicy
from harvester.store import Store


async def fetch_token(options: dict[str, str]) -> dict[str, object]:
    api = ApiSettings(
        base_url=options["base_url"],
        client_id=options["client_id"],
        client_secret=options["client_secret"],
        refresh_token=options["refresh_token"],
        timeout_s=10.0,
        attempts=3,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    store = await Store.open(options["database_url"], pool_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            tokens = OAuthTokens(api, session, store, RetryPolicy(api))
            print("ready", flush=True)
            sys.stdin.readline()
            try:
                access_token = await tokens.token()
            except HarvesterError as error:
                return {"error": str(error)}
            return {"access_token": access_token, "refreshes": tokens.refreshes}
    finally:
        await store.close()


def main() -> None:
    options = json.loads(sys.stdin.readline())
    result = asyncio.run(fetch_token(options))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
