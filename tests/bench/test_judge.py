"""`bench.judge` saves a run's chunks as the analysis reads them, and judges them in a child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.judge import collected, judge_saved, save_chunks
from tests.support.corpus import agent, call
from tests.support.recorder import Recorder
from tokentrail.store import ledger

_ROOT = Path(__file__).resolve().parents[2]


def _traces(store) -> list[str]:  # type: ignore[no-untyped-def]
    rec = Recorder()
    for n in range(3):
        with agent(rec, "support", outcome=True):
            call(rec, f"a{n}", "gpt-4o", 3000, 200)
            call(rec, f"b{n}", "gpt-4o", 9000, 200)  # re-sends the first call's context, uncached
        rec.tick(1000)
    rec.store(store.client)
    return list(ledger.trace_ids_started(store.client, "default", 0, 2**62))


def test_saved_chunks_are_judged_as_the_analysis_reads_them(store, tmp_path):
    ids = _traces(store)
    assert len(ids) == 3
    path = tmp_path / "chunks.pickle"
    assert save_chunks(store.client, "default", ids, path, size=2) == 2  # 2 traces, then 1
    assert judge_saved(path, 0)[0] == 0
    assert judge_saved(path, 1)[0] == 2
    assert judge_saved(path, 2)[0] == 3
    # the child process callgrind counts: it prints the traces it judged
    done = subprocess.run(
        [sys.executable, "-m", "bench.judge", "--judge", str(path), "--count", "2"],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split()[0] == "3"


def test_the_instruction_count_is_read_from_callgrinds_report():
    report = "==4242== Events    : Ir\n==4242== Collected : 7208866811\n==4242==\n==4242== I   refs:      7,208,866,811\n"
    assert collected(report) == 7_208_866_811
    with pytest.raises(RuntimeError, match="no instruction count"):
        collected("valgrind: command not found\n")
