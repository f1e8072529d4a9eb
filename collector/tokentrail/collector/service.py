"""The collector as one object: spool, ingest path, writer, HTTP app and gRPC server, and their
metrics (`Stats`), wired together from the settings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette

from tokentrail.collector import grpc as grpc_receiver
from tokentrail.collector import http as http_receiver
from tokentrail.collector.ingest import Ingestor
from tokentrail.collector.redact import Redactor
from tokentrail.collector.spool import Spool
from tokentrail.collector.stats import Stats
from tokentrail.collector.writer import Writer, WriterConfig
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import Settings
from tokentrail.store import Store
from tokentrail.store.keys import KeyRing

__all__ = ["Collector", "writer_config"]

logger = logging.getLogger("tokentrail.collector")


def _iso(timestamp: float) -> str | None:
    """A Unix time as ISO 8601 UTC; None for 0 (never)."""
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def writer_config(settings: Settings, *, embedded: bool) -> WriterConfig:
    """How the writer batches and paces its work, from the settings (`embedded`: whether this
    process runs the database engine itself)."""
    return WriterConfig(
        batch_spans=settings.writer_batch_spans,
        idle_seconds=settings.writer_flush_seconds,
        summary_seconds=settings.summary_interval_seconds,
        workers=settings.writer_workers,
        # the embedded database reads the staged files itself; to a server the writer sends them
        # a record batch at a time, so that an insert is never held in memory whole
        stage_dir=settings.spool_dir / "staging",
        reads_files=embedded,
        task_attribute=settings.task_type_attribute,
        redactor=Redactor.from_settings(settings),
    )


class Collector:
    def __init__(self, settings: Settings, store: Store, *, pricer: PriceBook | None = None) -> None:
        self.settings = settings
        self.store = store
        self.stats = Stats()
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.writer = Writer(
            store.new_client(),
            self.spool,
            self.stats,
            writer_config(settings, embedded=store.embedded),
            pricer=pricer,
            summary_client=store.new_client(),
        )
        self.keys = KeyRing(settings, store.new_client())
        self.ingestor = Ingestor(
            settings, self.spool, self.stats, on_spooled=self.writer.wake, keys=self.keys
        )
        self.app: Starlette = http_receiver.create_app(self.ingestor, status=self.status)
        self._grpc: Any = None
        self.grpc_port = 0

    def status(self) -> dict[str, Any]:
        spool, writer = self.spool, self.writer
        try:
            free: int | None = spool.free_bytes()
        except OSError:
            free = None
        stats = self.stats.snapshot()
        return {
            "stats": stats,
            "spool": {
                "directory": str(spool.directory),
                "backlog_bytes": spool.backlog_bytes,
                "limit_bytes": spool.max_bytes,
                "free_bytes": free,
                "errors": spool.errors,
                "last_error": spool.last_error,
                "last_error_at": _iso(spool.last_error_at),
                "quarantined_records": spool.quarantined,
                "quarantine_directory": str(spool.quarantine_dir),
            },
            "writer": {
                "last_error": writer.last_error,
                "last_error_at": _iso(writer.last_error_at),
                "failing": writer.failing,
                "stalled": writer.stalled,
                "seconds_since_progress": round(writer.seconds_since_progress, 1),
                "dead_lettered_records": int(stats.get("tokentrail_records_dead_lettered_total") or 0),
                "dead_letter_directory": str(spool.dead_dir),
            },
            "clickhouse": self.settings.clickhouse_url.split("@")[-1],
            "redaction": {
                "rule_sets": list(self.settings.redact),
                "patterns": [name for name, _ in self.settings.redact_patterns],
                "keys": list(self.settings.redact_keys),
                "redacted": self.stats.redactions(),
            },
        }

    def start(self, *, grpc: bool = True) -> None:
        self.writer.start()
        if grpc:
            address = f"{self.settings.host}:{self.settings.otlp_grpc_port}"
            self._grpc, self.grpc_port = grpc_receiver.create_server(self.ingestor, address)
            self._grpc.start()
            logger.info("OTLP/gRPC listening on %s:%d", self.settings.host, self.grpc_port)

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=5).wait()
            self._grpc = None
        self.writer.stop()
        self.spool.close()
        self.keys.close()
