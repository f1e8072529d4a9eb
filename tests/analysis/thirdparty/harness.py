"""Run the third-party corpus end to end: a real collector, the emitters sending it OTLP, the
analysis, and the per-detector score. Shared by the test and `python -m bench.waste_corpus`."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.analysis.thirdparty.corpus import (
    EMITTERS,
    Emitted,
    expected_charges,
    found_charges,
    ingest_key,
    run_emitters,
)
from tests.analysis.thirdparty.emit._runtime import CACHE_TTL
from tests.support.collector import running_collector
from tests.support.scoring import Score, score
from tokentrail.analysis.ledger import Thresholds
from tokentrail.analysis.run import analyze_range
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import Settings
from tokentrail.store import Store

__all__ = ["THRESHOLDS", "Result", "run_corpus"]

#: the default thresholds, but the prompt-cache lifetime of the stand-in in corpus runs
THRESHOLDS = Thresholds(cache_ttl_seconds=CACHE_TTL)


@dataclass
class Result:
    emitted: list[Emitted]
    expected: dict[tuple[Any, str], float | None]
    found: dict[tuple[Any, str], float | None]
    scores: list[Score]


def run_corpus(
    settings: Settings,
    store: Store,
    prices: PriceBook,
    names: Iterable[str] = EMITTERS,
    workdir: Path | None = None,
) -> Result:
    names = list(names)
    settings = settings.with_(api_keys={ingest_key(n): n for n in names})  # a project per emitter
    with (
        tempfile.TemporaryDirectory(prefix="tokentrail-corpus-") as tmp,
        running_collector(settings, store, pricer=prices) as collector,
    ):
        emitted = run_emitters(collector.http_url, workdir or Path(tmp), names)
        collector.flush()
    for name in names:
        analyze_range(store.client, name, 0, 2**62, prices, THRESHOLDS)
    expected = expected_charges(emitted, prices)
    found = found_charges(store.client, emitted)
    return Result(emitted, expected, found, score(expected, found))
