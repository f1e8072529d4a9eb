"""Web UI server times: the trace page at 100, 1,000 and 10,000 spans, and the trace list and
the reports over a 10M-span database. The database is built once and kept (bench.dataset says
how and where); pages are fetched in-process through the ASGI app (query + template), median of
repeated runs.

Run: `python -m bench.ui [--spans 10000000] [--trace-only]` (`--trace-only`: the trace pages alone,
for comparing one change to them quickly).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from bench.dataset import open_dataset
from tokentrail.web.app import create_app


def _median_ms(
    client: TestClient, url: str | Callable[[int], str], runs: int, headers: dict[str, str] | None = None
) -> tuple[float, int]:
    times, size = [], 0
    for run in range(runs):
        address = url(run) if callable(url) else url
        start = time.perf_counter()
        response = client.get(address, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{address}: HTTP {response.status_code}: {response.text[:300]}")
        size = len(response.content)
    return statistics.median(times), size


def _new_term(word: str) -> Callable[[int], str]:
    """A span-name search for `word` in another mix of upper and lower case each run: the same
    traces match, and the engine has no result of an earlier run to reuse (ClickHouse keeps which
    granules a filter ruled out), as when a user searches for something new."""

    def url(run: int) -> str:
        q = "".join(c.upper() if run >> i & 1 else c for i, c in enumerate(word))
        return f"/traces?range=all&q={q}"

    return url


def _others(web: TestClient, spans: int, runs: int) -> None:
    """The trace list and the reports."""
    first: Any = web.get("/traces.json?range=all").json()
    cases: list[tuple[Any, ...]] = [
        ("list, all time, newest first", "/traces?range=all"),
        ("list, all time, by cost", "/traces?range=all&sort=cost"),
        ("list, by waste, only traces with waste", "/traces?range=all&sort=waste&has_waste=1"),
        ("waste report by agent", "/waste?range=all&by=agent"),
        ("waste report by model", "/waste?range=all&by=model"),
        ("list, next page (keyset)", "/traces?range=all&cursor=" + first["next"]["cursor"]),
        ("list, next page as htmx swaps it", "/traces?range=all&cursor=" + first["next"]["cursor"], "page"),
        ("list, filter change as htmx swaps it", "/traces?range=all&sort=cost", "results"),
        ("list, one model", "/traces?range=all&model=gpt-4o-2024-08-06"),
        ("list, span-name search, most traces match", _new_term("refund")),
        ("list, span-name search, no trace matches", _new_term("nosuchspan")),
        ("list JSON, all time", "/traces.json?range=all"),
        ("conversations, all time", "/conversations?range=all"),
    ]
    print(f"{f'at {spans:,} spans':<44}{'median ms':>10}{'HTML KB':>10}")
    for label, url, *target in cases:
        headers = {"HX-Request": "true", "HX-Target": target[0]} if target else None
        ms, size = _median_ms(web, url, runs * 2, headers)
        print(f"{label:<44}{ms:>10.1f}{size / 1024:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=10_000_000, help="spans in the database")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--trace-only", action="store_true", help="time the trace pages alone")
    args = parser.parse_args()
    start = time.perf_counter()
    data = open_dataset(args.spans)
    print(
        f"{data.spans:,} spans / {data.traces:,} traces, all analysed, open in {time.perf_counter() - start:.0f}s"
    )
    with TestClient(create_app(data.settings, data.store), base_url="http://127.0.0.1") as web:
        print(f"{'trace page (server render)':<44}{'median ms':>10}{'HTML KB':>10}")
        for n, trace_id in sorted(data.big.items()):
            ms, size = _median_ms(web, f"/trace/{trace_id}", args.runs)
            print(f"{f'{n:,} spans':<44}{ms:>10.1f}{size / 1024:>10.0f}")
        if not args.trace_only:
            _others(web, data.spans, args.runs)
    data.close()


if __name__ == "__main__":
    main()
