"""A durable on-disk queue between the receivers and the ClickHouse writer.

A request is acknowledged only after its record is written and fsynced here, so a crash at
any moment loses nothing that was acknowledged; the writer drains the spool into ClickHouse
and advances a checkpoint. Replaying records after a crash is harmless: span rows are keyed
on (project, trace_id, span_id) and replace each other.

Layout: numbered segment files `NNNNNNNNNNNNNNNN.seg`, appended to and never rewritten. Each
record is `length u32 | crc32 u32 | kind u8 | project_len u8 | project | payload`. A process
always appends to a fresh segment, so a torn record can only be the last one of a segment
that no process writes to any more; the reader skips it (it was never acknowledged).
Concurrent appends share one fsync (group commit).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["CorruptRecord", "Position", "Record", "RecordTooLarge", "Spool", "SpoolFull", "SpoolUnavailable", "Stored",
           "load_payload"]  # fmt: skip

_HEADER = struct.Struct("<II")
_SEGMENT_BYTES = 64 << 20
KIND_TRACES = 1
KIND_LOGS = 2


class SpoolFull(RuntimeError):
    """The spool holds more undelivered bytes than allowed; senders should retry later."""


class SpoolUnavailable(SpoolFull):
    """The spool cannot write durably now (disk full, an I/O error): nothing of the record was
    kept, and senders should retry later (503 / UNAVAILABLE)."""


class RecordTooLarge(ValueError):
    """One record larger than the whole spool may hold: retrying cannot help (413)."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True)
class Stored:
    """Where a record's body lies on disk, for a reader in another process."""

    path: str
    offset: int
    length: int
    crc: int


@dataclass(frozen=True)
class Record:
    kind: int
    project: str
    #: b"" when read without payloads (`Spool.read(payloads=False)`): see `stored`
    payload: bytes
    end: Position  # position just after this record
    size: int = 0  # payload bytes
    stored: Stored | None = None


class CorruptRecord(ValueError):
    """A spool record's bytes do not match its checksum."""


def load_payload(stored: Stored) -> bytes:
    """Read and verify a record's payload: for a process that got the record without it."""
    with open(stored.path, "rb") as f:
        body = os.pread(f.fileno(), stored.length, stored.offset)
    if len(body) != stored.length or zlib.crc32(body) != stored.crc:
        raise CorruptRecord(f"spool record at {stored.path}:{stored.offset} does not match its checksum")
    return _split(body)[2]


def _split(body: bytes) -> tuple[int, str, bytes]:
    """A record body's (kind, project, payload)."""
    project_len = body[1]
    return body[0], body[2 : 2 + project_len].decode(), body[2 + project_len :]


def _segment_name(seq: int) -> str:
    return f"{seq:016d}.seg"


class Spool:
    def __init__(self, directory: Path, max_bytes: int = 1 << 30, segment_bytes: int = _SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._checkpoint_path = directory / "checkpoint"
        self._lock = threading.Lock()  # guards appends and segment rollover
        self._sync_lock = threading.Lock()
        self._checkpoint = self._read_checkpoint()
        existing = self._segments()
        self._seq = (existing[-1] + 1) if existing else max(self._checkpoint.segment, 1)
        self._first_seq = self._seq  # segments before this one were written by an earlier process
        self._file = open(directory / _segment_name(self._seq), "ab", buffering=0)  # noqa: SIM115
        self._written = 0
        self._synced_pos = Position(self._seq, 0)
        self._retired: list[BinaryIO] = []
        self._backlog = sum(self._size(s) for s in existing) - self._consumed_in(existing)
        self._fsync_dir()

    # --- appending (receivers) -------------------------------------------------------------

    def append(self, kind: int, project: str, payload: bytes) -> Position:
        """Write one record durably; returns once it is on disk."""
        project_bytes = project.encode()
        prefix = bytes((kind, len(project_bytes))) + project_bytes
        length = len(prefix) + len(payload)
        record = b"".join((_HEADER.pack(length, zlib.crc32(payload, zlib.crc32(prefix))), prefix, payload))
        with self._lock:
            if self._backlog + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool holds {self._backlog} undelivered bytes (limit {self.max_bytes}); retry later"
                )
            if self._written and self._written + len(record) > self.segment_bytes:
                self._roll()
            self._file.write(record)
            self._written += len(record)
            self._backlog += len(record)
            end = Position(self._seq, self._written)
        self._sync(end)
        return end

    def _sync(self, end: Position) -> None:
        # Group commit: one fsync covers every record written before it started. Files are
        # closed only here (after their fsync) and in close(), so the fd stays valid.
        with self._sync_lock:
            if self._synced_pos >= end:
                return
            with self._lock:
                target = Position(self._seq, self._written)
                file = self._file
                retired, self._retired = self._retired, []
            os.fsync(file.fileno())
            with self._lock:
                self._synced_pos = max(self._synced_pos, target)
            for old in retired:
                old.close()

    def _roll(self) -> None:  # called with self._lock held
        os.fsync(self._file.fileno())
        self._synced_pos = max(self._synced_pos, Position(self._seq, self._written))
        self._retired.append(self._file)
        self._seq += 1
        self._file = open(self.directory / _segment_name(self._seq), "ab", buffering=0)  # noqa: SIM115
        self._written = 0
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- reading (writer) ------------------------------------------------------------------

    def read(self, start: Position | None = None, max_bytes: int = 32 << 20, payloads: bool = True) -> Iterator[Record]:
        """Durable records after `start` (default: the checkpoint), in order, up to ~max_bytes.

        With `payloads=False`, records this process appended (complete and fsynced: no torn
        tail to look for) come without their payload, to be read with `load_payload`, which
        checks it; those of earlier processes are read and checked here as always."""
        pos = start or self._checkpoint
        limit = self._synced_pos
        budget = max_bytes
        for seq in self._segments():
            if seq < pos.segment:
                continue
            offset = pos.offset if seq == pos.segment else 0
            end = limit.offset if seq == limit.segment else None
            if seq > limit.segment:
                return
            path = self.directory / _segment_name(seq)
            skim = not payloads and seq >= self._first_seq
            with open(path, "rb") as f:
                f.seek(offset)
                while end is None or offset < end:
                    header = f.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    length, crc = _HEADER.unpack(header)
                    if skim:
                        prefix = f.read(2)
                        project = f.read(prefix[1]).decode()
                        f.seek(offset + _HEADER.size + length)
                        kind, payload = prefix[0], b""
                        size = length - 2 - prefix[1]
                    else:
                        body = f.read(length)
                        if len(body) < length or zlib.crc32(body) != crc:
                            break  # torn tail of a segment no process appends to any more
                        kind, project, payload = _split(body)
                        size = len(payload)
                    stored = Stored(str(path), offset + _HEADER.size, length, crc)
                    offset += _HEADER.size + length
                    yield Record(kind, project, payload, Position(seq, offset), size, stored)
                    budget -= length
                    if budget <= 0:
                        return

    def commit(self, position: Position) -> None:
        """Everything up to `position` is in ClickHouse: record it and delete spent segments."""
        tmp = self._checkpoint_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(f"{position.segment} {position.offset}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._checkpoint_path)
        with self._lock:
            released = self._distance(self._checkpoint, position)
            self._checkpoint = position
            self._backlog = max(0, self._backlog - released)
            current = self._seq
        for seq in self._segments():
            if seq < position.segment and seq != current:
                (self.directory / _segment_name(seq)).unlink(missing_ok=True)

    @property
    def checkpoint(self) -> Position:
        return self._checkpoint

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    def close(self) -> None:
        with self._sync_lock, self._lock:
            for f in [*self._retired, self._file]:
                f.close()
            self._retired = []

    # --- helpers ---------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _size(self, seq: int) -> int:
        try:
            return (self.directory / _segment_name(seq)).stat().st_size
        except FileNotFoundError:
            return 0

    def _consumed_in(self, segments: list[int]) -> int:
        cp = self._checkpoint
        return sum(self._size(s) for s in segments if s < cp.segment) + (
            cp.offset if cp.segment in segments else 0
        )

    def _distance(self, a: Position, b: Position) -> int:
        if b <= a:
            return 0
        if a.segment == b.segment:
            return b.offset - a.offset
        total = self._size(a.segment) - a.offset
        total += sum(self._size(s) for s in range(a.segment + 1, b.segment))
        return total + b.offset

    def _read_checkpoint(self) -> Position:
        try:
            seg, off = self._checkpoint_path.read_text().split()
            return Position(int(seg), int(off))
        except (FileNotFoundError, ValueError):
            return Position(0, 0)
