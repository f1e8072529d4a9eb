"""The store's clients lent to requests, and the settings, as FastAPI dependencies."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from fastapi import Request

from tokentrail.server.settings import Settings
from tokentrail.store import Client, Store

__all__ = ["Clients", "get_client", "get_settings"]


class Clients:
    """Clients of one store, each lent to one request at a time (a client runs one query at a
    time); closed together when the app stops."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._idle: list[Client] = []
        self._all: list[Client] = []
        self._lock = threading.Lock()

    def lend(self) -> Iterator[Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._store.new_client()
            with self._lock:
                self._all.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
            self._idle.clear()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_client(request: Request) -> Iterator[Client]:
    """A client for this request alone."""
    clients: Clients = request.app.state.clients
    yield from clients.lend()
