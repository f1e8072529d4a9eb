"""ClickHouse access for both modes: embedded chDB and a ClickHouse server over HTTP.

One URL setting chooses; everything above `connect` is the same clickhouse-connect client.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from tokentrail.server.settings import Settings

__all__ = ["Client", "DatabaseInUse", "Store", "connect"]

Client = Any  # clickhouse_connect.driver.Client; the package ships no precise types


class DatabaseInUse(RuntimeError):
    """The embedded database directory is held by another process."""


@dataclass
class Store:
    """A connected client plus what is needed to open more (one per thread that queries)."""

    settings: Settings
    client: Client
    _lock: Path | None = None

    def new_client(self) -> Client:
        return _client(self.settings, self.settings.database)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                _unlock_embedded(self._lock)
                self._lock = None


def _chdb_path(url: str) -> Path:
    path = url[len("chdb://") :]
    if not path.startswith("/"):
        raise ValueError(f"chDB URL needs an absolute path: {url!r}")
    return Path(path)


_held: dict[Path, list[int]] = {}  # lock path -> [fd, users in this process]


def _lock_embedded(settings: Settings) -> Path:
    """chDB allows one process per database path and its own error does not say so; say it.

    Within one process the lock is shared: several stores (databases) may use one path.
    """
    path = _chdb_path(settings.clickhouse_url)
    lock_path = path.parent / f".{path.name}.lock"
    if lock_path in _held:
        _held[lock_path][1] += 1
        return lock_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DatabaseInUse(
            f"the embedded database {path} is in use by pid {holder}. Stop that Tokentrail "
            "process, or ask it through its HTTP API (`tokentrail status` does)."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[lock_path] = [fd, 1]
    return lock_path


def _unlock_embedded(lock_path: Path) -> None:
    entry = _held.get(lock_path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] <= 0:
        del _held[lock_path]
        os.close(entry[0])


def _client(settings: Settings, database: str | None) -> Client:
    url = settings.clickhouse_url
    if url.startswith("chdb:"):
        return clickhouse_connect.get_client(
            dsn=url,
            database=database,
            settings={"max_memory_usage": settings.chdb_max_memory_bytes},
        )
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "https",
        database=database,
    )


def connect(settings: Settings, *, create_database: bool = True) -> Store:
    """Open the store; in embedded mode this process becomes the database's only user."""
    lock = _lock_embedded(settings) if settings.embedded else None
    try:
        if create_database:
            admin = _client(settings, None)
            on_cluster = f" ON CLUSTER {settings.cluster}" if settings.cluster else ""
            admin.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}{on_cluster}")
            admin.close()
        return Store(settings, _client(settings, settings.database), lock)
    except BaseException:
        if lock is not None:
            _unlock_embedded(lock)
        raise
