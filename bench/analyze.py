"""Waste analysis over a whole database: `python -m bench.analyze [--spans 1000000]`.

Opens a database of realistic agent traces (bench.payloads, ~20 spans a trace; built once and
kept, see bench.dataset), then times `analyze_range` over all of them: read the spans' typed
columns, run the ledger per trace, write `trace_waste` and `waste_findings`. Prints the wall time,
traces/s and what was found, and the CPU time of each run: this process (the reads and inserts,
the engine's threads with them) and the judging workers (its children, counted once the run has
ended them), per span, and how many cores the run kept busy on average. On a machine whose cores
are all busy the wall time is about the CPU time over the cores: a change that saves no CPU saves
no time.

The rules' thresholds come from `TOKENTRAIL_WASTE_*`, as for `tokentrail analyze` (deploy/README.md
documents each): `TOKENTRAIL_WASTE_CACHE_MIN_TOKENS=1000000000` times the analysis with the
cache-miss rule out of reach, say. Each run rewrites the kept database's ledgers with them.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import NamedTuple

from bench.dataset import open_dataset
from tokentrail.analysis.ledger import Thresholds
from tokentrail.analysis.run import analyze_range
from tokentrail.pricing import PriceBook
from tokentrail.server.no_pandas import leave_out_pandas
from tokentrail.server.settings import from_env
from tokentrail.store import ledger


class Run(NamedTuple):
    wall: float
    parent_cpu: float  # seconds, user + system
    workers_cpu: float


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], int]) -> tuple[Run, int]:
    """What `run` returns, and its wall and CPU time (it must end the worker processes it starts:
    a child's CPU time is counted once it has ended)."""
    parent, workers = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    return Run(wall, _cpu(resource.RUSAGE_SELF) - parent, _cpu(resource.RUSAGE_CHILDREN) - workers), result


def describe(run: Run, spans: int) -> str:
    cpu = run.parent_cpu + run.workers_cpu
    return (
        f"{run.wall:.1f}s wall, CPU {cpu:.1f}s ({cpu / run.wall:.2f} cores busy): this process "
        f"{run.parent_cpu:.1f}s ({run.parent_cpu / spans * 1e6:.1f} µs a span), workers "
        f"{run.workers_cpu:.1f}s ({run.workers_cpu / spans * 1e6:.1f} µs a span)"
    )


def thresholds() -> Thresholds:
    """The rules' thresholds `tokentrail analyze` would use here (`TOKENTRAIL_WASTE_*`)."""
    return from_env().waste


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    leave_out_pandas()  # as `tokentrail analyze` does
    pricer = PriceBook()
    t = thresholds()
    if t != Thresholds():
        print(f"thresholds: {t}")
    data = open_dataset(args.spans)
    store, spans = data.store, data.spans
    traces = 0
    runs = []
    for n in range(args.runs):
        run, traces = timed(lambda: analyze_range(store.client, "default", 0, 2**62, pricer, t))
        runs.append(run)
        print(f"run {n + 1}: {describe(run, spans)}", flush=True)
    times = [r.wall for r in runs]
    best = sorted(times)[len(times) // 2]
    print(
        f"analysed {traces:,} traces ({spans:,} spans): median {best:.1f}s of {args.runs} runs "
        f"({traces / best:,.0f} traces/s, {spans / best:,.0f} spans/s; runs "
        + ", ".join(f"{t:.1f}" for t in times)
        + f"); median CPU {sorted(r.parent_cpu + r.workers_cpu for r in runs)[len(runs) // 2]:.1f}s"
    )
    found = ledger.findings_by_detector(store.client, "default")
    total = ledger.waste_totals(store.client, "default")
    print(
        f"spend ${total['spend']:,.2f}, wasted ${total['wasted']:,.2f}; findings: "
        + ", ".join(f"{r['detector']} {r['findings']:,} (${r['usd']:,.2f})" for r in found)
    )
    data.close()


if __name__ == "__main__":
    main()
