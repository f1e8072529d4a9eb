"""Run the servers: `tokentrail up` (collector + web UI on one embedded database, one process)
and `tokentrail collector` / `tokentrail web` as separate processes against a ClickHouse server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from tokentrail.collector.http import server_config
from tokentrail.server.settings import Settings
from tokentrail.store import Store, connect, upgrade

__all__ = ["serve"]

logger = logging.getLogger("tokentrail")


class _Server(uvicorn.Server):
    """Signals are handled once for all servers in the process, not by each uvicorn server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _pricer() -> Any:
    from tokentrail.pricing import PriceBook

    return PriceBook()


def _web_app(settings: Settings, store: Store) -> Any | None:
    """The web UI's ASGI app, or None in an install that has no web UI."""
    try:
        module = importlib.import_module("tokentrail.web.app")
    except ModuleNotFoundError:
        return None
    return module.create_app(settings, store)


async def _serve_all(servers: list[_Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))


class _Background:
    """The collector and the threads beside it (waste analysis, budget alerts), stopped in reverse."""

    def __init__(self) -> None:
        self.collector: Any = None
        self.analyzer: Any = None
        self.alerter: Any = None

    def start(self, settings: Settings, store: Store) -> Any:
        """Start them; returns the collector's ASGI app."""
        from tokentrail.analysis.run import Analyzer
        from tokentrail.collector.service import Collector

        pricer = _pricer()
        self.collector = Collector(settings, store, pricer=pricer)
        self.collector.start()
        # traces are analysed for waste once they have been quiet for waste_idle_seconds
        self.analyzer = Analyzer(store.new_client(), settings, pricer)
        self.analyzer.start()
        if settings.budgets and settings.budget_webhook:
            from tokentrail.analysis.budgets import BudgetAlerter

            self.alerter = BudgetAlerter(
                store.new_client(),
                list(settings.budgets),
                settings.budget_webhook,
                ui_url=f"http://{settings.ui_host}:{settings.ui_port}",
            )
            self.alerter.start()
        return self.collector.app

    def stop(self) -> None:
        for worker in (self.alerter, self.analyzer):
            if worker is not None:
                worker.stop()
                worker.client.close()
        if self.collector is not None:
            self.collector.stop()


def _announce(settings: Settings, *, collector: bool, web: bool, web_app: Any) -> None:
    if collector:
        print(
            f"OTLP/HTTP  http://{settings.host}:{settings.otlp_http_port}  "
            f"(OTEL_EXPORTER_OTLP_ENDPOINT=http://{settings.host}:{settings.otlp_http_port})\n"
            f"OTLP/gRPC  {settings.host}:{settings.otlp_grpc_port}",
            flush=True,
        )
    if web_app is not None:
        print(f"Web UI     http://{settings.ui_host}:{settings.ui_port}/", flush=True)
    elif web:
        print("Web UI     not part of this install", flush=True)


def serve(settings: Settings, *, collector: bool = True, web: bool = True) -> None:
    store = connect(settings)
    done = upgrade(store)
    if done.applied:
        logger.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in done.applied))
    for change in done.retention:
        logger.info("%s", change)
    servers: list[_Server] = []
    background = _Background()
    try:
        if collector:
            app = background.start(settings, store)
            servers.append(_Server(server_config(app, settings, settings.otlp_http_port)))
        web_app = _web_app(settings, store) if web else None
        if web_app is not None:
            # the same limits and deadlines as the collector's port: trickling clients are no
            # kinder to the UI
            servers.append(_Server(server_config(web_app, settings, settings.ui_port, settings.ui_host)))
        _announce(settings, collector=collector, web=web, web_app=web_app)
        if not servers:
            raise OSError("nothing to serve")
        print(f"Database   {settings.clickhouse_url} (database {settings.database})", flush=True)
        asyncio.run(_serve_all(servers))
    finally:
        background.stop()
        store.close()
