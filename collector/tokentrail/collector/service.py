"""The collector as one object: spool, ingest path, writer thread, HTTP app and gRPC server."""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette

from tokentrail.collector import grpc as grpc_receiver
from tokentrail.collector import http as http_receiver
from tokentrail.collector.ingest import Ingestor
from tokentrail.collector.pricing import PriceBook
from tokentrail.collector.spool import Spool
from tokentrail.collector.stats import Stats
from tokentrail.collector.writer import Writer
from tokentrail.server.settings import Settings
from tokentrail.server.store import Store

__all__ = ["Collector"]

logger = logging.getLogger("tokentrail.collector")


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
            pricer=pricer,
            batch_spans=settings.writer_batch_spans,
            idle_seconds=settings.writer_flush_seconds,
            summary_seconds=settings.summary_interval_seconds,
            workers=settings.writer_workers,
            stage_dir=settings.spool_dir / "staging" if settings.embedded else None,
            summary_client=store.new_client(),
            task_attribute=settings.task_type_attribute,
        )
        self.ingestor = Ingestor(settings, self.spool, self.stats, on_spooled=self.writer.wake)
        self.stats.gauge(
            "tokentrail_spool_backlog_bytes", "Bytes in the spool not yet written to ClickHouse.",
            lambda: float(self.spool.backlog_bytes),
        )  # fmt: skip
        self.app: Starlette = http_receiver.create_app(self.ingestor, status=self.status)
        self._grpc: Any = None
        self.grpc_port = 0

    def status(self) -> dict[str, Any]:
        return {
            "stats": self.stats.snapshot(),
            "spool": {
                "directory": str(self.spool.directory),
                "backlog_bytes": self.spool.backlog_bytes,
                "limit_bytes": self.spool.max_bytes,
            },
            "writer": {"last_error": self.writer.last_error},
            "clickhouse": self.settings.clickhouse_url.split("@")[-1],
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
