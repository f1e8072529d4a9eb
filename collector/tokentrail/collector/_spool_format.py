"""The spool's on-disk format: records, where they lie, the checkpoint's slots, and how a reader
finds whole records again after damaged bytes (`tokentrail.collector.spool` documents the
guarantees this serves)."""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "CHECKPOINT_SLOT",
    "HEADER",
    "KIND_LOGS",
    "KIND_METRICS",
    "KIND_TRACES",
    "MIN_BODY",
    "CorruptRecord",
    "Position",
    "Record",
    "Stored",
    "checkpoint_slot",
    "load_payload",
    "next_record",
    "plausible",
    "read_slot",
    "sane",
    "sane_prefix",
    "scan",
    "split",
]

HEADER = struct.Struct("<II")
KIND_TRACES = 1
KIND_LOGS = 2
KIND_METRICS = 3
#: every kind a record may have; a spool written before a kind was added reads as it always did
_KINDS = (KIND_TRACES, KIND_LOGS, KIND_METRICS)
MIN_BODY = 2  # kind + project length
#: where a record may start again after a damaged region: its kind byte follows the 8-byte header
_KIND_BYTE = re.compile(b"[" + bytes(_KINDS) + b"]")


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
    if len(body) != stored.length or zlib.crc32(body) != stored.crc or not sane(body):
        raise CorruptRecord(f"spool record at {stored.path}:{stored.offset} does not match its checksum")
    return split(body)[2]


def sane(body: bytes) -> bool:
    return len(body) >= MIN_BODY and sane_prefix(body, len(body))


def sane_prefix(prefix: bytes, length: int) -> bool:
    return prefix[0] in _KINDS and MIN_BODY + prefix[1] <= length


def split(body: bytes) -> tuple[int, str, bytes]:
    """A record body's (kind, project, payload)."""
    project_len = body[1]
    return body[0], body[2 : 2 + project_len].decode(errors="replace"), body[2 + project_len :]


CHECKPOINT_SLOT = 64


def checkpoint_slot(gen: int, position: Position) -> bytes:
    text = f"{gen} {position.segment} {position.offset}"
    return f"{text} {zlib.crc32(text.encode()):08x}".encode().ljust(CHECKPOINT_SLOT - 1) + b"\n"


def read_slot(raw: bytes) -> tuple[int, Position] | None:
    try:
        gen, seg, off, crc = raw.decode().split()
        if int(crc, 16) != zlib.crc32(f"{gen} {seg} {off}".encode()):
            return None
        return int(gen), Position(int(seg), int(off))
    except ValueError:
        return None


# --- finding records again after a damaged region ------------------------------------------------


def plausible(mm: mmap.mmap, at: int, stop: int) -> bool:
    """Could a record (or a torn one, or zero fill) start at `at`? Cheap: no checksum."""
    if at + HEADER.size + MIN_BODY > stop:
        return at + HEADER.size > stop or not any(mm[at:stop])  # a short tail
    length = HEADER.unpack_from(mm, at)[0]
    kind, project_len = mm[at + HEADER.size], mm[at + HEADER.size + 1]
    if length == 0 and kind == 0:
        return True  # zero fill
    return length >= MIN_BODY + project_len and kind in _KINDS


def _valid_at(mm: mmap.mmap, at: int, stop: int) -> bool:
    if at + HEADER.size + MIN_BODY > stop:
        return False
    length, crc = HEADER.unpack_from(mm, at)
    body_at = at + HEADER.size
    end = body_at + length
    if length < MIN_BODY or end > stop or mm[body_at] not in _KINDS or MIN_BODY + mm[body_at + 1] > length:
        return False
    # the next header must look like one before paying for the checksum of a long body
    if end != stop and not plausible(mm, end, stop):
        return False
    return bool(zlib.crc32(memoryview(mm)[body_at:end]) == crc)


def next_record(mm: mmap.mmap, offset: int, stop: int) -> int | None:
    """Where the first valid record after the invalid one at `offset` starts, if any."""
    length = HEADER.unpack_from(mm, offset)[0] if offset + HEADER.size <= stop else 0
    after = offset + HEADER.size + length
    if length >= MIN_BODY and after <= stop and (after == stop or _valid_at(mm, after, stop)):
        return after  # the usual damage: some bytes of one record's body; its header still holds
    return scan(mm, offset, stop)


def scan(mm: mmap.mmap, offset: int, stop: int) -> int | None:
    """The first valid record that starts after `offset`, not trusting the header there."""
    for match in _KIND_BYTE.finditer(mm, offset + 1 + HEADER.size, stop):  # type: ignore[call-overload]
        at = match.start() - HEADER.size
        if _valid_at(mm, at, stop):
            return at
    return None
