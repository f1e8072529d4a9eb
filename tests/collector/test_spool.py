from __future__ import annotations

import threading

import pytest

from tokentrail.collector.spool import (
    KIND_LOGS,
    KIND_TRACES,
    CorruptRecord,
    Position,
    Spool,
    SpoolFull,
    load_payload,
)


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
        (KIND_TRACES, "alpha", b"", 1500), (KIND_LOGS, "beta", b"", 3)]  # fmt: skip
    assert [load_payload(r.stored) for r in records if r.stored] == [b"from an earlier process", b"one" * 500, b"two"]
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
