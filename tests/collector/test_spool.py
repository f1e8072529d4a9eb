from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import threading

import pytest

from tokentrail.collector.spool import (
    KIND_LOGS,
    KIND_TRACES,
    CorruptRecord,
    Position,
    RecordTooLarge,
    Spool,
    SpoolFull,
    SpoolInUse,
    SpoolUnavailable,
    load_payload,
)

SEGMENT = "0000000000000001.seg"


def test_records_come_back_in_order_with_project_and_kind(tmp_path):
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "alpha", b"one")
    spool.append(KIND_LOGS, "beta", b"two" * 1000)
    records = list(spool.read())
    assert [(r.kind, r.project, r.payload) for r in records] == [
        (KIND_TRACES, "alpha", b"one"),
        (KIND_LOGS, "beta", b"two" * 1000),
    ]
    assert records[0].end < records[1].end


def test_commit_survives_restart_and_unconsumed_records_are_replayed(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(KIND_TRACES, "p", f"r{i}".encode())
    records = list(spool.read())
    spool.commit(records[1].end)
    spool.close()

    reopened = Spool(tmp_path)
    assert [r.payload for r in reopened.read()] == [b"r2", b"r3", b"r4"]
    reopened.append(KIND_TRACES, "p", b"r5")
    assert [r.payload for r in reopened.read()] == [b"r2", b"r3", b"r4", b"r5"]


def test_torn_tail_from_a_crash_is_skipped(tmp_path):
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "p", b"complete")
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with open(segment, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a header promising 64 bytes that never came
    reopened = Spool(tmp_path)
    reopened.append(KIND_TRACES, "p", b"after")
    assert [r.payload for r in reopened.read()] == [b"complete", b"after"]


def test_records_read_without_payloads_are_loaded_and_checked_elsewhere(tmp_path):
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "before", b"from an earlier process")
    spool.close()
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "alpha", b"one" * 500)
    spool.append(KIND_LOGS, "beta", b"two")
    records = list(spool.read(payloads=False))
    # an earlier process's segment may end torn: it is read and checked here, as always
    assert (records[0].project, records[0].payload) == ("before", b"from an earlier process")
    assert [(r.kind, r.project, r.payload, r.size) for r in records[1:]] == [
        (KIND_TRACES, "alpha", b"", 1500),
        (KIND_LOGS, "beta", b"", 3),
    ]
    assert [load_payload(r.stored) for r in records if r.stored] == [
        b"from an earlier process",
        b"one" * 500,
        b"two",
    ]
    assert [r.end for r in records] == [r.end for r in spool.read()]

    stored = records[1].stored
    assert stored is not None
    with open(stored.path, "r+b") as f:  # a flipped byte on disk
        f.seek(stored.offset + stored.length - 1)
        f.write(b"X")
    with pytest.raises(CorruptRecord, match="does not match its checksum"):
        load_payload(stored)


def test_full_spool_refuses_and_accepts_again_after_commit(tmp_path):
    spool = Spool(tmp_path, max_bytes=300)
    spool.append(KIND_TRACES, "p", b"x" * 100)
    spool.append(KIND_TRACES, "p", b"x" * 100)
    with pytest.raises(SpoolFull, match="retry later"):
        spool.append(KIND_TRACES, "p", b"x" * 100)
    spool.commit(list(spool.read())[-1].end)
    spool.append(KIND_TRACES, "p", b"x" * 100)
    assert spool.backlog_bytes < 300


def test_segments_roll_and_spent_ones_are_deleted(tmp_path):
    spool = Spool(tmp_path, segment_bytes=1000)
    for _ in range(30):
        spool.append(KIND_TRACES, "p", b"y" * 200)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    records = list(spool.read())
    assert len(records) == 30
    spool.commit(records[-1].end)
    assert len(list(tmp_path.glob("*.seg"))) <= 2
    assert list(spool.read()) == []


def test_concurrent_appends_all_land(tmp_path):
    spool = Spool(tmp_path, segment_bytes=4096)

    def work(n: int) -> None:
        for i in range(50):
            spool.append(KIND_TRACES, "p", f"{n}-{i}".encode())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    payloads = {r.payload for r in spool.read()}
    assert payloads == {f"{n}-{i}".encode() for n in range(8) for i in range(50)}


def test_position_orders_by_segment_then_offset():
    assert Position(1, 900) < Position(2, 0) < Position(2, 5)


def test_a_record_larger_than_the_whole_spool_is_too_large_not_full(tmp_path):
    spool = Spool(tmp_path, max_bytes=300)
    with pytest.raises(RecordTooLarge, match="larger than the spool may hold"):
        spool.append(KIND_TRACES, "p", b"x" * 300)
    spool.append(KIND_TRACES, "p", b"x" * 100)
    assert [len(r.payload) for r in spool.read()] == [100]


def test_a_second_spool_on_the_same_directory_is_refused_naming_it_and_its_holder(tmp_path):
    spool = Spool(tmp_path)
    with pytest.raises(SpoolInUse, match=rf"the spool {tmp_path} is in use by pid {os.getpid()}"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()  # released on close


_FILL_UNDER_A_FILE_SIZE_LIMIT = """
import json, resource, sys
from pathlib import Path
from tokentrail.collector.spool import KIND_TRACES, Spool, SpoolUnavailable

spool = Spool(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
acked, refused = [], []
for i in range(12):
    try:
        spool.append(KIND_TRACES, "p", b"%03d" % i * 50)
        acked.append(i)
    except SpoolUnavailable as exc:
        refused.append(str(exc))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # room again
spool.append(KIND_TRACES, "p", b"after" * 30)
print(json.dumps({"acked": acked, "refused": refused, "errors": spool.errors, "last_error": spool.last_error}))
spool.close()
"""


def test_a_write_the_disk_cuts_short_is_rolled_back_and_the_spool_goes_on(tmp_path):
    """A real short write: the kernel writes what fits under the file size limit, then refuses."""
    out = subprocess.run(
        [sys.executable, "-c", _FILL_UNDER_A_FILE_SIZE_LIMIT, str(tmp_path), "1000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["acked"] == [0, 1, 2, 3, 4, 5], (
        "records of 161 bytes: six fit under 1000, the 7th is cut short"
    )
    assert result["refused"] and all("File too large" in m and "retry later" in m for m in result["refused"])
    assert result["errors"] == len(result["refused"])
    spool = Spool(tmp_path)
    payloads = [r.payload for r in spool.read()]
    assert payloads == [b"%03d" % i * 50 for i in result["acked"]] + [b"after" * 30]
    assert spool.quarantined == 0


def test_a_failed_fsync_acknowledges_nothing_it_covered(tmp_path, monkeypatch):
    """An fsync error cannot be caused here without a faulty device: os.fsync fails on request."""
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "p", b"durable")
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(SpoolUnavailable, match=r"Input/output error.*retry later"):
        spool.append(KIND_TRACES, "p", b"not durable")
    monkeypatch.setattr(os, "fsync", real_fsync)
    spool.append(KIND_TRACES, "p", b"after")
    assert [r.payload for r in spool.read()] == [b"durable", b"after"]
    assert spool.errors == 1 and "fsync" in spool.last_error
    spool.close()
    assert [r.payload for r in Spool(tmp_path).read()] == [b"durable", b"after"]


def test_a_segment_cut_anywhere_gives_back_every_whole_record(tmp_path):
    """A crash (cut) or a power loss (cut, then zeros) at every byte of a segment."""
    source = Spool(tmp_path / "source")
    ends = [source.append(KIND_TRACES, f"p{i}", bytes([i + 1]) * (i * 7 + 1)).offset for i in range(6)]
    source.close()
    segment = (tmp_path / "source" / SEGMENT).read_bytes()
    for cut in range(len(segment) + 1):
        for fill in (b"", bytes(4096)):
            directory = tmp_path / f"{cut}-{len(fill)}"
            directory.mkdir()
            (directory / SEGMENT).write_bytes(segment[:cut] + fill)
            spool = Spool(directory)
            whole = [f"p{i}" for i, end in enumerate(ends) if end <= cut]
            assert [r.project for r in spool.read()] == whole, (cut, len(fill))
            assert spool.quarantined == 0, "a torn tail was never acknowledged: nothing to keep"
            spool.append(KIND_TRACES, "next", b"x")
            records = list(spool.read())
            assert [r.project for r in records] == [*whole, "next"]
            spool.commit(records[-1].end)
            assert spool.backlog_bytes == 0
            spool.close()


def _offsets(segment: bytes) -> list[int]:
    offsets, at = [], 0
    while at < len(segment):
        offsets.append(at)
        at += 8 + struct.unpack_from("<I", segment, at)[0]
    return offsets


@pytest.mark.parametrize("field", ["length", "crc", "kind", "project", "payload", "zeros"])
def test_one_damaged_record_mid_segment_costs_that_record_only(tmp_path, field):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(KIND_TRACES, "team", f"request {i} ".encode() * 20)
    spool.close()
    path = tmp_path / SEGMENT
    segment = bytearray(path.read_bytes())
    start, end = _offsets(bytes(segment))[2:4]
    if field == "zeros":  # a block that never reached the disk
        segment[start:end] = bytes(end - start)
    else:
        at = {
            "length": start + 2,
            "crc": start + 5,
            "kind": start + 8,
            "project": start + 11,
            "payload": end - 3,
        }[field]
        segment[at] ^= 0x5A
    path.write_bytes(bytes(segment))

    spool = Spool(tmp_path)
    assert [r.payload[:9] for r in spool.read()] == [b"request 0", b"request 1", b"request 3", b"request 4"]
    assert spool.quarantined == 1
    kept = tmp_path / "quarantine" / f"0000000000000001-{start:012d}.bad"
    assert kept.read_bytes() == bytes(segment[start:end])
    assert "does not match its checksum" in kept.with_suffix(".txt").read_text()
    records = list(spool.read())  # met again: neither counted nor copied twice
    assert spool.quarantined == 1
    spool.commit(records[-1].end)
    assert spool.backlog_bytes == 0


def test_a_damaged_record_found_by_a_reader_without_payloads_is_quarantined(tmp_path):
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append(KIND_TRACES, "p", f"request {i}".encode() * 10)
    records = list(spool.read(payloads=False))
    stored = records[1].stored
    assert stored is not None
    with open(stored.path, "r+b") as f:
        f.seek(stored.offset + 7)
        f.write(b"#")
    with pytest.raises(CorruptRecord) as exc:
        load_payload(stored)
    resume = spool.quarantine(records[1], str(exc.value))
    assert resume == records[1].end
    assert spool.quarantined == 1 and len(list((tmp_path / "quarantine").glob("*.bad"))) == 1
    spool.commit(resume)
    assert [load_payload(r.stored) for r in spool.read(payloads=False) if r.stored] == [b"request 2" * 10]

    # a damaged length: reading without payloads notices and reads on the careful way
    spool.append(KIND_TRACES, "p", b"fine")
    spool.append(KIND_TRACES, "p", b"bad length")
    spool.append(KIND_TRACES, "p", b"fine again")
    bad = list(spool.read(payloads=False))[-2].stored
    assert bad is not None
    with open(bad.path, "r+b") as f:
        f.seek(bad.offset - 8)
        f.write(struct.pack("<I", 1 << 30))
    read = [r.payload or load_payload(r.stored) for r in spool.read(payloads=False) if r.stored]
    assert read[-2:] == [b"fine", b"fine again"]
    assert spool.quarantined == 2


def test_a_checkpoint_from_before_slots_and_a_torn_slot_are_read(tmp_path):
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append(KIND_TRACES, "p", f"r{i}".encode())
    first, *_ = [r.end for r in spool.read()]
    spool.close()
    (tmp_path / "checkpoint").write_text(f"{first.segment} {first.offset}\n")  # the old format
    spool = Spool(tmp_path)
    assert [r.payload for r in spool.read()] == [b"r1", b"r2"]
    r1, _ = spool.read()
    spool.commit(r1.end)
    spool.close()
    raw = bytearray((tmp_path / "checkpoint").read_bytes())
    raw[64 + 3] ^= 0x01 if raw[64 + 3] != 0x20 else 0x10  # the newest slot, torn
    (tmp_path / "checkpoint").write_bytes(bytes(raw))
    assert [r.payload for r in Spool(tmp_path).read()] == [b"r1", b"r2"], "the older slot still holds"
