"""ClickHouse access for both modes: embedded chDB and a ClickHouse server over HTTP.

One URL setting chooses; everything above `connect` is the same clickhouse-connect client. The
embedded engine is configured for a small machine's memory (`_CHDB_CONFIG`, `_CHDB_MALLOC_CONF`).

The embedded database belongs to the one process that opened it. That process serves it over
ClickHouse's HTTP interface (tokentrail.server.clickhouse_http) and says where in an endpoint file
beside the database (mode 0600: whoever may read the database's files may use it). Another process
that finds the database in use connects there instead, so `tokentrail keys revoke`, `users add`
and the reports work while `tokentrail up` runs, and several collectors can share one database.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect

from tokentrail.server.settings import Settings

__all__ = ["Client", "DatabaseInUse", "Store", "connect", "endpoint_file", "publish_endpoint"]

logger = logging.getLogger("tokentrail")

#: what a connection asks for in cluster mode (tokentrail.store.cluster says why)
CLUSTER_SETTINGS = {"distributed_product_mode": "local", "insert_distributed_sync": 1}

Client = Any  # clickhouse_connect.driver.Client; the package ships no precise types


class DatabaseInUse(RuntimeError):
    """The embedded database directory is held by another process (`holder`: its pid)."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


@dataclass
class Store:
    """A connected client plus what is needed to open more (one per thread that queries)."""

    settings: Settings
    client: Client
    _lock: Path | None = None
    #: where this process reaches the database: the settings' URL, or the endpoint of the process
    #: that holds the embedded database
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.url or self.settings.clickhouse_url

    @property
    def embedded(self) -> bool:
        """Whether this process runs the database engine itself (it can read files it stages)."""
        return self.url.startswith("chdb:")

    def new_client(self) -> Client:
        return _client(self.settings, self.settings.database, self.url)

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
            f"the embedded database {path} is in use by pid {holder}, which serves it to no "
            "other process (yet: is it starting?). Try again, or stop that process.",
            holder,
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


def endpoint_file(settings: Settings) -> Path:
    """Where the process holding the embedded database says how to reach it."""
    path = _chdb_path(settings.clickhouse_url)
    return path.parent / f".{path.name}.endpoint"


def publish_endpoint(settings: Settings, url: str) -> Path:
    """Write the endpoint file (readable by this user only); returns its path."""
    target = endpoint_file(settings)
    staging = target.with_name(f"{target.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "pid": os.getpid()}, out)
    os.replace(staging, target)
    return target


def _running_endpoint(settings: Settings, busy: DatabaseInUse) -> str:
    """The URL the holder of the embedded database serves it at; re-raises `busy` if none."""
    try:
        published = json.loads(endpoint_file(settings).read_text())
        url, pid = str(published["url"]), int(published["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        raise busy from None
    if str(pid) != busy.holder:
        raise busy  # a file left by an earlier process
    return url


#: The embedded engine's settings for a small machine (a server keeps its own configuration):
#: parts are merged a column at a time, whatever their size (all columns at once hold a read and
#: a write buffer per column of every part being merged: ~0.5 GB for `spans`), and a part is
#: written in compressed blocks of up to 256 KiB instead of 1 MiB (a buffer of that size per
#: column and stream: an insert into `spans` took ~370 MB, now ~170).
_CHDB_CONFIG = """<clickhouse>
  <merge_tree>
    <vertical_merge_algorithm_min_rows_to_activate>1</vertical_merge_algorithm_min_rows_to_activate>
    <vertical_merge_algorithm_min_columns_to_activate>1</vertical_merge_algorithm_min_columns_to_activate>
    <max_compress_block_size>262144</max_compress_block_size>
  </merge_tree>
</clickhouse>
"""
#: The embedded engine's allocator (jemalloc, inside chDB) gives freed memory back after 1 s
#: instead of 5: what one insert or merge freed is otherwise still resident while the next ones
#: allocate. (At once, 0, cost ~50% more CPU per insert.) Read once, when the engine is loaded;
#: a JE_MALLOC_CONF set already is kept.
_CHDB_MALLOC_CONF = "dirty_decay_ms:1000"


def _chdb_client(url: str, database: str | None, max_memory: int) -> Client:
    """A client of the embedded engine, with the settings above (written beside the database)."""
    path = _chdb_path(url)
    config = path.parent / f".{path.name}.config.xml"
    if not config.exists() or config.read_text() != _CHDB_CONFIG:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = config.with_name(f"{config.name}.{os.getpid()}")
        staging.write_text(_CHDB_CONFIG)
        os.replace(staging, config)
    if "chdb" not in sys.modules:
        os.environ.setdefault("JE_MALLOC_CONF", _CHDB_MALLOC_CONF)
    return clickhouse_connect.get_client(
        dsn=url,
        database=database,
        settings={"max_memory_usage": max_memory},
        chdb_options={"config-file": str(config)},
    )


def _client(settings: Settings, database: str | None, url: str = "") -> Client:
    url = url or settings.clickhouse_url
    if url.startswith("chdb:"):
        return _chdb_client(url, database, settings.chdb_max_memory_bytes)
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        # percent-encoded in the URL (an @, : or / in a password), as URLs spell them
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        secure=parts.scheme == "https",
        database=database,
        settings=CLUSTER_SETTINGS if settings.cluster else None,
    )


def connect(settings: Settings, *, create_database: bool = True) -> Store:
    """Open the store. In embedded mode this process becomes the database's only user, unless
    another process holds it: then this one is a client of that process's endpoint."""
    lock: Path | None = None
    url = settings.clickhouse_url
    if settings.embedded:
        try:
            lock = _lock_embedded(settings)
        except DatabaseInUse as busy:
            url = _running_endpoint(settings, busy)
            logger.debug(
                "the embedded database is held by pid %s: using it through its endpoint", busy.holder
            )
    try:
        if create_database:
            admin = _client(settings, None, url)
            on_cluster = f" ON CLUSTER {settings.cluster}" if settings.cluster else ""
            admin.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}{on_cluster}")
            admin.close()
        return Store(settings, _client(settings, settings.database, url), lock, url)
    except BaseException:
        if lock is not None:
            _unlock_embedded(lock)
        raise
