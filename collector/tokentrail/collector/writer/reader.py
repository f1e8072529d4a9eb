"""The writer's side of the spool: records taken a chunk at a time, and the checkpoint committed.

The writer reads records after a position in chunks of about so many spans (a record's spans are
estimated from its size), and commits once they are in ClickHouse: the spool's checkpoint moves
past them, fsynced, and spent segments are deleted. Nothing moves the checkpoint past a record
that is not stored, quarantined or dead-lettered, so a crash at any moment replays records and
never loses one. A record whose bytes no longer match their checksum is quarantined by the spool;
one that can never be stored is dead-lettered (kept in spool/dead, fsynced before the commit that
passes it), counted and logged.

The spool's health is exposed here too: backlog, free bytes, errors, quarantined records.
"""

from __future__ import annotations

import logging
import time

from tokentrail.collector.spool import Position, Record, Spool
from tokentrail.collector.stats import Stats

__all__ = ["SpoolReader", "approx_spans"]

logger = logging.getLogger("tokentrail.collector")


def approx_spans(record: Record) -> int:
    return max(1, record.size // 2048)  # rough: ~2 KB per span


class SpoolReader:
    def __init__(self, spool: Spool, stats: Stats) -> None:
        self.spool = spool
        self.stats = stats
        #: (monotonic) the last commit, or the last look that found nothing to write
        self.progress_at = time.monotonic()
        _expose(stats, spool)

    @property
    def checkpoint(self) -> Position:
        return self.spool.checkpoint

    def take(self, start: Position, spans: int, *, payloads: bool, single: bool = False) -> list[Record]:
        """Records after `start`, about `spans` spans' worth (one with `single`). Without
        `payloads`, records this process appended come with where their payload is instead
        (worker processes read it themselves)."""
        records: list[Record] = []
        items = 0
        for record in self.spool.read(start, payloads=payloads):
            records.append(record)
            items += approx_spans(record)
            if single or items >= spans:
                break
        if not records:
            self.progress_at = time.monotonic()
        return records

    def commit(self, position: Position) -> None:
        """Everything before `position` is stored or set aside; raises OSError if the checkpoint
        could not be written."""
        self.spool.commit(position)
        self.progress_at = time.monotonic()

    def quarantine(self, record: Record, reason: str) -> Position:
        """Set aside a record whose bytes are damaged; returns where reading goes on."""
        return self.spool.quarantine(record, reason)

    def dead_letter(self, record: Record, exc: BaseException) -> None:
        """Keep a record that cannot be stored in spool/dead, durably (raises OSError if it could
        not be), count it and log it: the checkpoint moves past it right after."""
        if self.spool.dead_letter(record, f"{type(exc).__name__}: {exc}") is not None:
            self.stats.add("tokentrail_records_dead_lettered_total")
        logger.error(
            "spool record %016d-%012d cannot be stored (%s: %s); kept in %s",
            record.end.segment,
            record.end.offset,
            type(exc).__name__,
            exc,
            self.spool.dead_dir,
        )


def _expose(stats: Stats, spool: Spool) -> None:
    stats.gauge(
        "tokentrail_spool_backlog_bytes",
        "Bytes in the spool not yet written to ClickHouse.",
        lambda: float(spool.backlog_bytes),
    )
    stats.gauge(
        "tokentrail_spool_free_bytes",
        "Bytes free on the spool's filesystem.",
        lambda: float(spool.free_bytes()),
    )
    stats.gauge(
        "tokentrail_spool_last_error_timestamp_seconds",
        "When a spool write or fsync last failed (Unix time; 0: never).",
        lambda: spool.last_error_at,
    )
    stats.counter(
        "tokentrail_spool_errors_total",
        "Spool writes or fsyncs that failed (disk full, I/O error); "
        "their requests were answered 503/UNAVAILABLE.",
        lambda: spool.errors,
    )
    stats.counter(
        "tokentrail_spool_quarantined_records_total",
        "Damaged spool records (checksum mismatch) copied to spool/quarantine and skipped.",
        lambda: spool.quarantined,
    )
