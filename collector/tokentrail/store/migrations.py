"""The ClickHouse schema: numbered SQL files in migrations/, applied once each, in order."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokentrail.store.connection import Store

__all__ = ["Migration", "load_migrations", "migrate", "migrations_dir"]

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


def _on_cluster(stmt: str, cluster: str) -> str:
    if not cluster:
        return stmt
    return re.sub(
        r"^(CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW|VIEW)\s+IF\s+NOT\s+EXISTS\s+\S+|ALTER\s+TABLE\s+\S+)",
        rf"\1 ON CLUSTER {cluster}",
        stmt,
        count=1,
        flags=re.IGNORECASE,
    )


def migrate(store: Store, directory: Path | None = None) -> list[Migration]:
    """Apply every migration not yet recorded; returns the ones applied now. Idempotent."""
    client = store.client
    client.command(
        _on_cluster(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
            "checksum String, applied_at DateTime64(3) DEFAULT now64(3)) "
            "ENGINE = ReplacingMergeTree ORDER BY version",
            store.settings.cluster,
        )
    )
    done = {
        row[0]: row[1]
        for row in client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    }
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            continue
        for stmt in migration.statements():
            client.command(_on_cluster(stmt, store.settings.cluster))
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration)
    return applied
