"""`bench.analyze` times a run's CPU in this process and in the workers it starts and ends, with the
thresholds `tokentrail analyze` would use."""

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from bench.analyze import describe, thresholds, timed
from tokentrail.analysis.ledger import Thresholds


def _spin(seconds: float) -> None:
    """Keep a core busy for this much CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _work() -> int:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_spin, 0.4).result()
    _spin(0.2)
    return 7


def test_a_runs_cpu_is_split_between_this_process_and_the_workers_it_ended():
    run, result = timed(_work)
    assert result == 7
    assert run.workers_cpu >= 0.4  # the worker's spin, and its start
    assert 0.2 <= run.parent_cpu < run.workers_cpu
    assert run.wall >= 0.6
    line = describe(run, 1_000_000)
    assert f"workers {run.workers_cpu:.1f}s ({run.workers_cpu:.1f} µs a span)" in line
    assert f"({(run.parent_cpu + run.workers_cpu) / run.wall:.2f} cores busy)" in line


def test_the_rules_thresholds_come_from_the_environment_as_for_tokentrail_analyze(monkeypatch):
    for name in [n for n in os.environ if n.startswith("TOKENTRAIL_WASTE_")]:
        monkeypatch.delenv(name)
    assert thresholds() == Thresholds()
    monkeypatch.setenv("TOKENTRAIL_WASTE_CACHE_MIN_TOKENS", "1000000000")
    monkeypatch.setenv("TOKENTRAIL_WASTE_BLOAT_MIN_TOKENS", "5000")
    assert thresholds() == replace(Thresholds(), cache_min_tokens=1_000_000_000, bloat_min_tokens=5000)
