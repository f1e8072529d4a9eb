"""Claims: of several collectors on one database, one does each piece of work.

A collector that finds work any of them could do (a due trace to analyse, a budget alert to send)
writes a claim for it, waits a moment, then reads the claims back: the earliest live claim wins,
as the database's clock stamped it on insert.

The wait is what makes it safe. A claim is stamped when its insert starts and seen once the insert
ends, so a claim stamped before mine may still be unseen when my insert has ended. Every insert
that started before mine has ended `SETTLE_SECONDS` later (claims are a few rows; inserting them
takes milliseconds), so by then every claim earlier than mine is seen, by me and by any later
reader: two collectors never both win, on one server or on a cluster (a subject's claims live on
one shard, stamped by one clock). A claim older than its lease no longer counts: the work of a
collector that died is claimed again.

An insert can take longer than that (a server under merge pressure delays it). Then others may
have read the claims while mine, stamped earlier, was still unseen, and each won what it saw. So a
collector whose insert took `SETTLE_SECONDS` or more wins only the items no one else claimed: any
collector that read before my claim was seen had written its own claim before that, and I see it.
Such an item may then go to no one until my claim's lease ends (those who saw my claim first left
it to me); it is never done twice.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tokentrail.store._rows import rows

__all__ = ["claim", "holder_name"]

_WINNERS = """
SELECT project, subject, version, argMin(holder, (claimed_at, holder)) AS winner,
    uniqExact(holder) AS holders
FROM claims
WHERE kind = {kind:String} AND subject IN (SELECT arrayJoin({subjects:Array(String)}))
  AND claimed_at > now64(9) - toIntervalSecond({lease:UInt32})
GROUP BY project, subject, version
"""

Item = tuple[str, str, datetime]  # (project, subject, version)

#: how long after its insert a claim is judged (see above)
SETTLE_SECONDS = 1.0


def holder_name() -> str:
    """A name for a claimant, unique across machines, processes and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def claim(client: Any, kind: str, holder: str, items: Sequence[Item], lease_s: int) -> set[Item]:
    """Claim these items of work for `holder`; returns those it won (`SETTLE_SECONDS` later)."""
    if not items:
        return set()
    started = time.monotonic()
    client.insert(
        "claims",
        [[kind, project, subject, version, holder] for project, subject, version in items],
        column_names=["kind", "project", "subject", "version", "holder"],
        settings={"async_insert": 0},
    )
    # an upper bound on how long the claim was stamped but unseen
    slow = time.monotonic() - started >= SETTLE_SECONDS
    time.sleep(SETTLE_SECONDS)
    params = {"kind": kind, "subjects": sorted({subject for _, subject, _ in items}), "lease": lease_s}
    won = {
        (r["project"], r["subject"], r["version"])
        for r in rows(client, _WINNERS, params)
        if r["winner"] == holder and (r["holders"] == 1 or not slow)
    }
    return won & set(items)
