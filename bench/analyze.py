"""Waste analysis over a whole database: `python -m bench.analyze [--spans 1000000]`.

Opens a database of realistic agent traces (bench.payloads, ~20 spans a trace; built once and
kept, see bench.dataset), then times `analyze_range` over all of them: read the spans' typed columns, run the ledger per trace, write
`trace_waste` and `waste_findings`. Prints the wall time, traces/s and what was found.
"""

from __future__ import annotations

import argparse
import time

from bench.dataset import open_dataset
from tokentrail.analysis.run import analyze_range
from tokentrail.pricing import PriceBook
from tokentrail.server.no_pandas import leave_out_pandas
from tokentrail.store import ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    leave_out_pandas()  # as `tokentrail analyze` does
    pricer = PriceBook()
    data = open_dataset(args.spans)
    store, spans = data.store, data.spans
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        traces = analyze_range(store.client, "default", 0, 2**62, pricer)
        times.append(time.perf_counter() - start)
    best = sorted(times)[len(times) // 2]
    print(
        f"analysed {traces:,} traces ({spans:,} spans): median {best:.1f}s of {args.runs} runs "
        f"({traces / best:,.0f} traces/s, {spans / best:,.0f} spans/s; runs "
        + ", ".join(f"{t:.1f}" for t in times)
        + ")"
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
