"""Run the servers: `tokentrail up` (collector + web UI on one embedded database, one process)
and `tokentrail collector` / `tokentrail web` / `tokentrail database` as separate processes.

The process that holds the embedded database also serves it over ClickHouse's HTTP interface on
`TOKENTRAIL_DATABASE_HOST:TOKENTRAIL_DATABASE_PORT` (loopback, any free port by default) and
publishes where in the endpoint file (tokentrail.store.connection): every other process on the
same database connects there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from tokentrail.collector.http import server_config
from tokentrail.server.settings import Settings
from tokentrail.store import Store, connect, upgrade
from tokentrail.store.connection import endpoint_file, publish_endpoint

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


#: the account clients of the embedded database's endpoint sign in as
DATABASE_USER = "tokentrail"


class _Database:
    """The embedded database's ClickHouse HTTP endpoint, when this process holds the database."""

    def __init__(self, settings: Settings) -> None:
        from tokentrail.server.clickhouse_http import Endpoint, create_app

        self.settings = settings
        self.password = settings.database_password or secrets.token_urlsafe(24)
        self.endpoint = Endpoint(
            settings.clickhouse_url[len("chdb://") :], user=DATABASE_USER, password=self.password
        )
        family = socket.AF_INET6 if ":" in settings.database_host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((settings.database_host, settings.database_port))
        self.socket.listen(128)
        self.port = self.socket.getsockname()[1]
        self.server = _Server(
            server_config(create_app(self.endpoint), settings, self.port, settings.database_host)
        )
        host = f"[{settings.database_host}]" if family == socket.AF_INET6 else settings.database_host
        self.url = f"http://{host}:{self.port}"
        self.file = publish_endpoint(settings, f"http://{DATABASE_USER}:{self.password}@{host}:{self.port}")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            # only this process's file: a later process may have published its own
            if json.loads(endpoint_file(self.settings).read_text())["pid"] == os.getpid():
                self.file.unlink()
        self.endpoint.close()
        self.socket.close()


async def _serve_all(servers: list[_Server], database: _Database | None = None) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    serving = [server.serve() for server in servers]
    if database is not None:
        servers.append(database.server)
        serving.append(database.server.serve(sockets=[database.socket]))
    await asyncio.gather(*serving)


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
        self.analyzer = analyzer = Analyzer(store.new_client(), settings, pricer)
        self.analyzer.start()
        self.collector.stats.counter(
            "tokentrail_traces_analyzed_total",
            "Traces whose waste this collector analysed (of several collectors, one analyses each).",
            lambda: analyzer.analyzed,
        )
        self.collector.stats.counter(
            "tokentrail_traces_left_to_others_total",
            "Due traces another collector on the same database claimed first.",
            lambda: analyzer.left_to_others,
        )
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


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _announce(
    settings: Settings, *, collector: bool, web: bool, web_app: Any, database: _Database | None
) -> None:
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
    if database is not None:
        print(
            f"Database   {database.url}  (ClickHouse HTTP interface of the embedded database; "
            f"user {DATABASE_USER}, password in {database.file})",
            flush=True,
        )


def serve(settings: Settings, *, collector: bool = True, web: bool = True) -> None:
    """Serve what is asked for, and the embedded database's endpoint when this process holds it."""
    store = connect(settings)
    servers: list[_Server] = []
    background = _Background()
    database: _Database | None = None
    try:
        if store.embedded:
            database = _Database(settings)
        done = upgrade(store)
        if done.applied:
            logger.info(
                "applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in done.applied)
            )
        for change in done.retention:
            logger.info("%s", change)
        if collector:
            app = background.start(settings, store)
            servers.append(_Server(server_config(app, settings, settings.otlp_http_port)))
        web_app = _web_app(settings, store) if web else None
        if web_app is not None:
            # the same limits and deadlines as the collector's port: trickling clients are no
            # kinder to the UI
            servers.append(_Server(server_config(web_app, settings, settings.ui_port, settings.ui_host)))
        _announce(settings, collector=collector, web=web, web_app=web_app, database=database)
        if not servers and database is None:
            raise OSError("nothing to serve (`tokentrail database` serves an embedded chdb:// database only)")
        where = settings.clickhouse_url if database is not None else _without_password(store.url)
        print(f"Data       {where} (database {settings.database})", flush=True)
        asyncio.run(_serve_all(servers, database))
    finally:
        background.stop()
        if database is not None:
            database.close()
        store.close()
