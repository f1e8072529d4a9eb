"""A durable on-disk queue between the receivers and the ClickHouse writer.

A request is acknowledged only after its record is written and fsynced here, so a crash at
any moment loses nothing that was acknowledged; the writer drains the spool into ClickHouse
and advances a checkpoint. Replaying records after a crash is harmless: span rows are keyed
on (project, trace_id, span_id) and replace each other.

Layout: numbered segment files `NNNNNNNNNNNNNNNN.seg`, appended to and never rewritten. Each
record is `length u32 | crc32 u32 | kind u8 | project_len u8 | project | payload`, its kind 1
for traces, 2 for logs, 3 for metrics. A process always appends to a fresh segment, so a torn
record can only be the last one of a segment that no process writes to any more. Concurrent
appends share one fsync (group commit). The checkpoint is two checksummed slots overwritten in
place, in turn: committing needs no free block (a full disk can still be drained, and drained
segments deleted) and a torn write leaves the other slot. One process at a time: the `lock` file
is held (flock) while the spool is open, and a second one fails to open it, naming the pid that
holds it.

Failure modes, and what a sender sees:

- A write that fails or comes up short (disk full, file too large, I/O error) is rolled back to
  the end of the last whole record (`ftruncate`) and raises `SpoolUnavailable` (503 /
  UNAVAILABLE); the spool stays usable and takes the next record once there is room. A failed
  fsync raises `SpoolUnavailable` for every record it covered, which are not read: the kernel
  may have dropped their pages. Appends go on in a fresh segment.
- A record larger than the whole spool raises `RecordTooLarge` (413): retrying cannot help.
  The spool holding more than its limit raises `SpoolFull` (503): retry once it has drained.
- Reading, a header that cannot be a record's (zeros; a length below the smallest record or
  beyond the end of the segment) or a body that does not match its checksum starts a damaged
  region. If a valid record follows in the segment, the region is copied to `quarantine/`
  (fsynced), counted, and reading goes on after it: one bad byte costs one record, not the rest
  of the segment. If nothing valid follows, it is the torn tail of a crash or a power loss
  (never acknowledged: it was not fsynced) and is skipped; in a segment this process wrote and
  fsynced, such a tail is quarantined instead.
- A record the writer cannot store at all (flattening or ClickHouse refuses it on its own) is
  kept as it was sent in `dead/` (`dead_letter`), fsynced like a quarantined one before the
  checkpoint moves past it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tokentrail.collector._spool_format import (
    CHECKPOINT_SLOT,
    HEADER,
    KIND_LOGS,
    KIND_METRICS,
    KIND_TRACES,
    MIN_BODY,
    CorruptRecord,
    Position,
    Record,
    Stored,
    checkpoint_slot,
    load_payload,
    next_record,
    plausible,
    read_slot,
    sane,
    sane_prefix,
    scan,
    split,
)

__all__ = [
    "KIND_LOGS",
    "KIND_METRICS",
    "KIND_TRACES",
    "CorruptRecord",
    "Position",
    "Record",
    "RecordTooLarge",
    "Spool",
    "SpoolFull",
    "SpoolInUse",
    "SpoolUnavailable",
    "Stored",
    "load_payload",
]

logger = logging.getLogger("tokentrail.collector")

_SEGMENT_BYTES = 64 << 20


class SpoolFull(RuntimeError):
    """The spool holds more undelivered bytes than allowed; senders should retry later."""


class SpoolUnavailable(SpoolFull):
    """The spool cannot write durably now (disk full, an I/O error): nothing of the record was
    kept, and senders should retry later (503 / UNAVAILABLE)."""


class RecordTooLarge(ValueError):
    """One record larger than the whole spool may hold: retrying cannot help (413)."""


class SpoolInUse(OSError):
    """Another process has the spool directory open."""


def _segment_name(seq: int) -> str:
    return f"{seq:016d}.seg"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _keep_aside(folder: Path, name: str, data: bytes, note: str) -> bool:
    """Keep `data` (`name` with its suffix) and a `.txt` note beside it in `folder` of the spool,
    durably before returning: the checkpoint moves past them right after. False if it was kept
    already (the same name and size)."""
    if not folder.exists():
        folder.mkdir(exist_ok=True)
        _fsync_dir(folder.parent)
    target = folder / name
    if target.exists() and target.stat().st_size == len(data):
        return False
    _durable_write(target, data)
    _durable_write(target.with_suffix(".txt"), note.encode())
    _fsync_dir(folder)
    return True


def _lock(directory: Path) -> int:
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise SpoolInUse(
            f"the spool {directory} is in use by {who}: run one collector per data directory "
            "(TOKENTRAIL_DATA_DIR)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Spool:
    def __init__(
        self, directory: Path, max_bytes: int = 1 << 30, segment_bytes: int = _SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = directory / "quarantine"
        #: records that cannot be stored (`dead_letter`)
        self.dead_dir = directory / "dead"
        self._lock_fd = _lock(directory)
        self._checkpoint_path = directory / "checkpoint"
        self._lock = threading.Lock()  # guards appends, segment rollover and the maps below
        self._sync_lock = threading.Lock()
        #: health, for /metrics and /api/status
        self.quarantined = 0  # records (or damaged regions) copied to quarantine/ by this process
        self.errors = 0  # writes or fsyncs that failed
        self.last_error = ""
        self.last_error_at = 0.0  # Unix time
        self._logged_at = 0.0
        # Segment -> offset where its readable records end, for segments not read to their end:
        # rolled by this process (`_ends`), or found with a torn tail (`_torn`).
        self._ends: dict[int, int] = {}
        self._torn: dict[int, int] = {}
        #: segment -> offset from which its records were answered 503 after a failed fsync
        self._lost: dict[int, int] = {}
        #: (segment, offset) of a damaged region -> where the next valid record starts
        self._skips: dict[tuple[int, int], int] = {}
        self._quarantined_at: set[tuple[int, int]] = set()
        try:
            self._checkpoint_gen, self._checkpoint = self._read_checkpoint()
            self._checkpoint_fd = self._open_checkpoint()
            existing = self._segments()
            self._seq = (existing[-1] + 1) if existing else max(self._checkpoint.segment, 1)
            self._first_seq = self._seq  # segments before this one were written by an earlier process
            self._file = open(directory / _segment_name(self._seq), "ab", buffering=0)  # noqa: SIM115
            self._written = 0
            self._broken = False  # the current segment could not be rolled back: start a fresh one
            self._synced_pos = Position(self._seq, 0)
            self._retired: list[BinaryIO] = []
            self._backlog = sum(self._size(s) for s in existing) - self._consumed_in(existing)
            _fsync_dir(directory)
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- appending (receivers) -------------------------------------------------------------

    def append(self, kind: int, project: str, payload: bytes) -> Position:
        """Write one record durably; returns once it is on disk.

        Raises RecordTooLarge (never fits), SpoolFull (retry later) or SpoolUnavailable (the
        disk refused it; nothing of it is kept)."""
        project_bytes = project.encode()
        prefix = bytes((kind, len(project_bytes))) + project_bytes
        length = len(prefix) + len(payload)
        size = HEADER.size + length
        if size > self.max_bytes:
            raise RecordTooLarge(
                f"a request of {size} bytes is larger than the spool may hold ({self.max_bytes} bytes): "
                "send smaller batches"
            )
        record = b"".join((HEADER.pack(length, zlib.crc32(payload, zlib.crc32(prefix))), prefix, payload))
        with self._lock:
            if self._backlog + size > self.max_bytes:
                raise SpoolFull(
                    f"spool holds {self._backlog} undelivered bytes (limit {self.max_bytes}); retry later"
                )
            if self._broken or (self._written and self._written + size > self.segment_bytes):
                self._roll()
            self._write(record)
            self._written += size
            self._backlog += size
            end = Position(self._seq, self._written)
        self._sync(end)
        return end

    def _write(self, record: bytes) -> None:  # called with self._lock held
        start = self._written
        view = memoryview(record)
        done = 0
        try:
            while done < len(record):
                n = self._file.write(view[done:])
                if not n:
                    raise OSError(errno.ENOSPC, "short write")
                done += n
        except OSError as exc:
            self._failed("write", exc)
            try:
                # A partial record must not stay in front of the next one; O_APPEND writes go
                # to the new end.
                os.ftruncate(self._file.fileno(), start)
            except OSError:
                self._broken = True
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: OSError) -> SpoolUnavailable:
        return SpoolUnavailable(
            f"the spool cannot store this request now ({exc.strerror or exc}); retry later"
        )

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what} in {self.directory}: {exc}"[:500]
        self.last_error_at = time.time()
        if self.last_error_at - self._logged_at > 10:  # once in a while, not once per refused request
            self._logged_at = self.last_error_at
            logger.error("spool %s failed: %s; answering 503 until it works again", what, exc)

    def _sync(self, end: Position) -> None:
        # Group commit: one fsync covers every record written before it started. Files are
        # closed only here (after their fsync) and in close(), so the fd stays valid.
        with self._sync_lock:
            with self._lock:
                if self._is_lost(end):
                    raise SpoolUnavailable("the spool could not make this request durable; retry later")
                if self._synced_pos >= end:
                    return
                target = Position(self._seq, self._written)
                file = self._file
                retired, self._retired = self._retired, []
            try:
                os.fsync(file.fileno())
            except OSError as exc:
                with self._lock:
                    self._failed("fsync", exc)
                    if file is self._file:
                        self._abandon()
                    for old in retired:
                        old.close()
                    if self._is_lost(end) or self._synced_pos < end:
                        raise self._unavailable(exc) from exc
                return
            with self._lock:
                self._synced_pos = max(self._synced_pos, target)
            for old in retired:
                old.close()

    def _is_lost(self, end: Position) -> bool:
        lost = self._lost.get(end.segment)
        return lost is not None and end.offset > lost

    def _durable_offset(self, seq: int) -> int:
        return self._synced_pos.offset if self._synced_pos.segment == seq else 0

    def _lose(self, seq: int, written: int, file: BinaryIO) -> int:
        """An fsync of segment `seq` failed: what it covered may not be on disk (the kernel may
        have dropped the pages), so its records from the last good fsync on are answered 503
        and not read. Returns that offset."""
        durable = self._durable_offset(seq)
        self._lost[seq] = durable
        self._ends[seq] = durable
        self._backlog -= written - durable
        with contextlib.suppress(OSError):
            os.ftruncate(file.fileno(), durable)
        return durable

    def _abandon(self) -> None:  # called with self._lock held, after the current segment's fsync failed
        self._written = self._lose(self._seq, self._written, self._file)
        try:
            self._roll(sync_old=False)
        except SpoolUnavailable:
            self._broken = True  # the next append tries again

    def _roll(self, sync_old: bool = True) -> None:  # called with self._lock held
        seq = self._seq + 1
        path = self.directory / _segment_name(seq)
        try:
            new = open(path, "ab", buffering=0)  # noqa: SIM115
            try:
                _fsync_dir(self.directory)
            except OSError:
                new.close()
                path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._failed("starting a new segment", exc)
            raise self._unavailable(exc) from exc
        old, old_seq = self._file, self._seq
        if sync_old:
            try:
                os.fsync(old.fileno())
                self._synced_pos = max(self._synced_pos, Position(old_seq, self._written))
            except OSError as exc:
                self._failed("fsync", exc)
                self._written = self._lose(old_seq, self._written, old)
        self._ends.setdefault(old_seq, self._written)
        self._retired.append(old)
        self._seq = seq
        self._file = new
        self._written = 0
        self._broken = False

    # --- reading (writer) ------------------------------------------------------------------

    def read(
        self, start: Position | None = None, max_bytes: int = 32 << 20, payloads: bool = True
    ) -> Iterator[Record]:
        """Durable records after `start` (default: the checkpoint), in order, up to ~max_bytes.

        With `payloads=False`, records this process appended (complete and fsynced: no torn
        tail to look for) come without their payload, to be read with `load_payload`, which
        checks it; those of earlier processes are read and checked here as always. Damaged
        regions are quarantined and skipped as they are met (see the module's docstring)."""
        pos = start or self._checkpoint
        with self._lock:
            limit = self._synced_pos
            ends = dict(self._ends)
        budget = max_bytes
        for seq in self._segments():
            if seq < pos.segment:
                continue
            if seq > limit.segment:
                return
            offset = pos.offset if seq == pos.segment else 0
            end = limit.offset if seq == limit.segment else ends.get(seq)
            ours = seq >= self._first_seq
            for record in self._records(seq, offset, end, skim=ours and not payloads, ours=ours):
                yield record
                budget -= record.stored.length if record.stored else record.size
                if budget <= 0:
                    return

    def _records(self, seq: int, offset: int, end: int | None, *, skim: bool, ours: bool) -> Iterator[Record]:
        path = self.directory / _segment_name(seq)
        try:
            f = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return
        with f:
            stop = os.fstat(f.fileno()).st_size
            if end is not None:
                stop = min(stop, end)
            stop = min(stop, self._torn.get(seq, stop))
            f.seek(offset)
            while offset < stop:
                header = f.read(HEADER.size)
                length, crc = HEADER.unpack(header) if len(header) == HEADER.size else (0, 0)
                room = stop - offset - HEADER.size
                if skim:
                    prefix = f.read(2)
                    if MIN_BODY <= length <= room and len(prefix) == 2 and sane_prefix(prefix, length):
                        project = f.read(prefix[1]).decode(errors="replace")
                        body_at = offset + HEADER.size
                        offset = body_at + length
                        f.seek(offset)
                        stored = Stored(str(path), body_at, length, crc)
                        yield Record(
                            prefix[0], project, b"", Position(seq, offset), length - 2 - prefix[1], stored
                        )
                        continue
                    skim = False  # a header of our own that does not parse: read on the careful way
                    f.seek(offset)
                    continue
                if MIN_BODY <= length <= room:
                    body = f.read(length)
                    if len(body) == length and zlib.crc32(body) == crc and sane(body):
                        kind, project, payload = split(body)
                        stored = Stored(str(path), offset + HEADER.size, length, crc)
                        offset += HEADER.size + length
                        yield Record(kind, project, payload, Position(seq, offset), len(payload), stored)
                        continue
                resume = self._recover(f, seq, offset, stop, ours=ours, current=seq == self._seq)
                if resume is None:
                    return
                offset = resume
                f.seek(offset)

    def _recover(
        self, f: BinaryIO, seq: int, offset: int, stop: int, *, ours: bool, current: bool
    ) -> int | None:
        """No valid record starts at `offset`: find where one does, and keep what lies between.
        Returns that offset, or None if nothing valid follows."""
        known = self._skips.get((seq, offset))
        if known is not None:
            return known
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            resume = next_record(mm, offset, stop)
            if resume is not None:
                self._quarantine_region(mm, seq, offset, resume, "does not match its checksum")
                self._skips[(seq, offset)] = resume
                return resume
            if ours:
                # written and fsynced by this process, so acknowledged: damaged, not torn
                self._quarantine_region(mm, seq, offset, stop, "does not match its checksum")
            else:
                logger.warning(
                    "spool segment %s ends with %d bytes that are not a whole record (a crash or "
                    "power loss while it was written; never acknowledged): skipped",
                    _segment_name(seq),
                    stop - offset,
                )
        if not current:
            with self._lock:
                if seq not in self._torn:
                    self._backlog = max(0, self._backlog - (self._size(seq) - offset))
                    self._torn[seq] = offset
        return None

    def quarantine(self, record: Record, reason: str) -> Position:
        """Set aside a record whose payload turned out not to match its checksum (found by a
        reader given only `record.stored`); returns where reading goes on."""
        if record.stored is None:
            raise ValueError("only a record read from a segment can be quarantined")
        seq = record.end.segment
        start = record.stored.offset - HEADER.size
        with open(record.stored.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with self._lock:
                stop = (
                    self._ends.get(seq, len(mm))
                    if seq != self._synced_pos.segment
                    else self._synced_pos.offset
                )
            stop = min(stop, len(mm))
            end = record.end.offset
            if not (end == stop or plausible(mm, end, stop)):
                # its length was damaged too: the next record starts somewhere else
                found = scan(mm, start, stop)
                end = stop if found is None else found
            self._quarantine_region(mm, seq, start, end, reason)
        self._skips[(seq, start)] = end
        return Position(seq, end)

    def _quarantine_region(self, mm: mmap.mmap, seq: int, start: int, end: int, reason: str) -> None:
        if (seq, start) in self._quarantined_at:
            return
        target = self.quarantine_dir / f"{seq:016d}-{start:012d}.bad"
        note = f"{end - start} bytes of spool segment {_segment_name(seq)} at offset {start}: {reason}\n"
        _keep_aside(self.quarantine_dir, target.name, mm[start:end], note)
        self._quarantined_at.add((seq, start))
        self.quarantined += 1
        logger.error(
            "spool segment %s: %d bytes at offset %d %s; copied to %s and skipped",
            _segment_name(seq),
            end - start,
            start,
            reason,
            target,
        )

    def dead_letter(self, record: Record, reason: str) -> Path | None:
        """Keep a record that cannot be stored, as it was sent, in `dead/` (durably: the checkpoint
        moves past it right after). Returns where, or None if it was kept there already."""
        payload = record.payload
        if not payload and record.stored is not None:
            payload = load_payload(record.stored)
        target = self.dead_dir / f"{record.end.segment:016d}-{record.end.offset:012d}.pb"
        note = f"kind={record.kind} project={record.project}\n{reason}\n"
        return target if _keep_aside(self.dead_dir, target.name, payload, note) else None

    def commit(self, position: Position) -> None:
        """Everything up to `position` is in ClickHouse: record it and delete spent segments."""
        # Overwritten in place, in the slot the last checkpoint is not in: no new block is needed,
        # so a full disk can still be drained, and a torn write leaves the other slot valid.
        gen = self._checkpoint_gen + 1
        os.pwrite(self._checkpoint_fd, checkpoint_slot(gen, position), (gen % 2) * CHECKPOINT_SLOT)
        os.fsync(self._checkpoint_fd)
        self._checkpoint_gen = gen
        with self._lock:
            released = self._distance(self._checkpoint, position)
            self._checkpoint = position
            self._backlog = max(0, self._backlog - released)
            current = self._seq
        for seq in self._segments():
            if seq < position.segment and seq != current:
                (self.directory / _segment_name(seq)).unlink(missing_ok=True)
        with self._lock:
            for table in (self._ends, self._torn, self._lost):
                for seq in [s for s in table if s < position.segment]:
                    del table[seq]
            for key in [k for k in self._skips if k[0] < position.segment]:
                del self._skips[key]
            self._quarantined_at = {k for k in self._quarantined_at if k[0] >= position.segment}

    @property
    def checkpoint(self) -> Position:
        return self._checkpoint

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    def free_bytes(self) -> int:
        """Bytes free for this process on the spool's filesystem."""
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize

    def close(self) -> None:
        with self._sync_lock, self._lock:
            for f in [*self._retired, self._file]:
                f.close()
            self._retired = []
            if self._lock_fd >= 0:
                os.close(self._checkpoint_fd)
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    # --- helpers ---------------------------------------------------------------------------

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _size(self, seq: int) -> int:
        try:
            size = (self.directory / _segment_name(seq)).stat().st_size
        except FileNotFoundError:
            return 0
        return min(size, self._torn.get(seq, size), self._ends.get(seq, size))

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

    def _read_checkpoint(self) -> tuple[int, Position]:
        try:
            raw = self._checkpoint_path.read_bytes()
        except FileNotFoundError:
            return 0, Position(0, 0)
        slots = [read_slot(raw[i : i + CHECKPOINT_SLOT]) for i in (0, CHECKPOINT_SLOT)]
        valid = [slot for slot in slots if slot is not None]
        if valid:
            return max(valid)
        try:  # the format before slots: "segment offset"
            seg, off = raw.decode().split()
            return 0, Position(int(seg), int(off))
        except ValueError:
            return 0, Position(0, 0)

    def _open_checkpoint(self) -> int:
        """The checkpoint file, both slots written, open for commit()."""
        try:
            if self._checkpoint_path.stat().st_size == 2 * CHECKPOINT_SLOT:
                return os.open(self._checkpoint_path, os.O_RDWR)
        except FileNotFoundError:
            pass
        tmp = self._checkpoint_path.with_suffix(".tmp")
        slot = checkpoint_slot(self._checkpoint_gen, self._checkpoint)
        with open(tmp, "wb") as f:
            f.write(slot + slot)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._checkpoint_path)
        return os.open(self._checkpoint_path, os.O_RDWR)
