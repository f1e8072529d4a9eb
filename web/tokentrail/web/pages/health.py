"""`/health`: whether this UI can serve pages, for load balancers, probes and the image's health
check. It needs no sign-in and says nothing about the data: "ok" (200) when the database answers a
query, "database unreachable" (503) when it does not; the reason goes to the server's log only.
A request still has to name one of the UI's hosts (`TOKENTRAIL_UI_HOSTS`), as every request does.

A plain route, outside the pages' dependencies: those lend a database client before anything else,
so with the database gone they would fail before this could say so.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from tokentrail.web.clients import Clients

__all__ = ["health"]

log = logging.getLogger(__name__)


def health(request: Request) -> PlainTextResponse:
    clients: Clients = request.app.state.clients
    try:
        for client in clients.lend():  # a client that cannot connect is an unreachable database too
            client.query("SELECT 1")
    except Exception as exc:
        log.warning("health: the database does not answer: %s", exc)
        return PlainTextResponse("database unreachable\n", 503, headers={"Cache-Control": "no-store"})
    return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})
