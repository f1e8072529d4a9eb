"""The ClickHouse schema: numbered SQL files in migrations/, applied once each, in order, and the
retention of telemetry (tokentrail.store.retention).

On a single server each statement runs as written; on a cluster (`TOKENTRAIL_CLICKHOUSE_CLUSTER`)
as tokentrail.store.cluster rewrites it. The statements are worked out without a database
(`schema_statements`), so what a cluster would run can be read and checked anywhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokentrail.store.cluster import check as check_cluster
from tokentrail.store.cluster import statements as cluster_statements
from tokentrail.store.connection import Store
from tokentrail.store.retention import RECORD_TABLE as RETENTION_RECORD
from tokentrail.store.retention import RetentionChange, apply_retention

__all__ = [
    "Migration",
    "Upgrade",
    "load_migrations",
    "migrate",
    "migration_statements",
    "migrations_dir",
    "record_statements",
    "schema_statements",
    "upgrade",
]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self) -> Iterator[str]:
        text = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        for stmt in re.split(r";\s*(?:\n|$)", text):
            if stmt.strip():
                yield stmt.strip()


def migrations_dir() -> Path:
    # Installed: tokentrail/migrations inside the package. Source checkout: the top-level folder.
    installed = Path(__file__).resolve().parent.parent / "migrations"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[3] / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_what.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {directory}")
    return found


#: migrate's record of the migrations applied
_RECORD_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, "
    "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version"
)


def _as_run(stmt: str, cluster: str, database: str) -> list[str]:
    """A statement as written, or on a cluster as cluster mode rewrites it."""
    return cluster_statements(stmt, cluster, database) if cluster else [stmt]


def record_statements(cluster: str = "", database: str = "") -> list[str]:
    """The statements that create migrate's own records (migrations applied, retention set)."""
    return [s for stmt in (_RECORD_TABLE, RETENTION_RECORD) for s in _as_run(stmt, cluster, database)]


def migration_statements(migration: Migration, cluster: str = "", database: str = "") -> list[str]:
    """The statements that apply `migration`: as written, or on a cluster as rewritten."""
    return [s for stmt in migration.statements() for s in _as_run(stmt, cluster, database)]


def schema_statements(cluster: str = "", database: str = "", directory: Path | None = None) -> list[str]:
    """Every statement `migrate` runs on an empty database, worked out without one."""
    found = record_statements(cluster, database)
    for migration in load_migrations(directory):
        found += migration_statements(migration, cluster, database)
    return found


@dataclass(frozen=True)
class Upgrade:
    """What one `upgrade` changed: the migrations applied, and the tables whose retention changed."""

    applied: list[Migration]
    retention: list[RetentionChange]


def upgrade(store: Store, directory: Path | None = None) -> Upgrade:
    """Apply every migration not yet recorded, then the retention the settings ask for. Idempotent."""
    client, cluster, database = store.client, store.settings.cluster, store.settings.database
    if cluster:
        check_cluster(client, cluster, database)
    for stmt in record_statements(cluster, database):
        client.command(stmt)
    done = {
        row[0]: row[1]
        for row in client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    }
    # every statement worked out first: a migration cluster mode has no rule for stops all of them
    pending = [
        (migration, migration_statements(migration, cluster, database))
        for migration in load_migrations(directory)
        if migration.version not in done
    ]
    applied = []
    for migration, statements in pending:
        for stmt in statements:
            client.command(stmt)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration)
    retention = apply_retention(client, store.settings.retention_days, cluster, database)
    return Upgrade(applied, retention)


def migrate(store: Store, directory: Path | None = None) -> list[Migration]:
    """`upgrade`, returning the migrations applied now."""
    return upgrade(store, directory).applied
