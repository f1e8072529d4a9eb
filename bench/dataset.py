"""Databases of realistic agent traces (bench.payloads) for the read-side benchmarks, built once
and kept.

`open_dataset(spans)` opens the database for that many spans, building it the first time into a
directory of its own under `TOKENTRAIL_BENCH_DATA` (default `~/.cache/tokentrail-bench`) and
reusing it afterwards: a 10M-span database takes minutes to build and seconds to open. A build
that did not finish leaves no dataset behind (it is renamed into place at the end). Opening
applies any migration the database has not had yet, as an upgrade would.

How it is made:

1. Base: up to 1M spans of ~20-span agent traces over seven days, plus one trace each of 100,
   1,000 and 10,000 spans, through the collector's own flatten → insert → summary path
   (`ensure_spans`). Every trace of the base is analysed for waste (`analyze_range`).
2. Copies: for more spans, the base is copied inside ClickHouse (INSERT … SELECT) as many times as
   needed, each copy eight days later than the one before, with new trace ids (an MD5 of the old
   id and the copy number, 32 hex digits like a real one) and its own conversation ids. Spans,
   trace summaries, ledgers, findings and the oversized-model evidence are all copied with the
   same ids and times, so they agree with one another as if each copy had been sent and
   analysed: what the analysis finds in a trace depends only on the trace and its conversation,
   and each copy's conversations are its own. Span ids are unchanged (they are unique per trace).

`python -m bench.dataset --resummarize` writes a kept dataset's trace summaries again from its
spans after the summary gained columns; `--reanalyse` analyses it again after the ledger did.

A 10M-span dataset is therefore ten weeks of the same week of traffic, shifted: realistic in its
rows, their sizes and the spread of values, not in week-to-week variety.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import agent_trace, export_request
from tokentrail.analysis.run import analyze_range
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import Settings, from_env
from tokentrail.store import Store, connect, migrate
from tokentrail.store.reconcile import summarize

__all__ = ["BASE_SPANS", "Dataset", "ensure_spans", "one_trace", "open_dataset", "reanalyse", "resummarize"]

#: spans loaded through the write path; more are copies of these
BASE_SPANS = 1_000_000
#: the sizes of the single large traces every dataset holds (for the trace page)
BIG_TRACES = (100, 1_000, 10_000)
#: what a dataset's directory name and manifest record; a change here builds new datasets
_VERSION = 1
_PERIOD_S = 8 * 86_400  # each copy starts this much later than the one before
_PROJECT = "default"


@dataclass
class Dataset:
    """An open dataset: its store and settings, its span and trace counts, and the ids of its
    single large traces (span count → trace id)."""

    store: Store
    settings: Settings
    spans: int
    traces: int
    big: dict[int, str]
    path: Path
    #: how many times over the base is held (1: no copies)
    copies: int = 1

    def close(self) -> None:
        self.store.close()


def data_root() -> Path:
    return Path(os.environ.get("TOKENTRAIL_BENCH_DATA") or "~/.cache/tokentrail-bench").expanduser()


def open_dataset(spans: int, seed: int = 11, root: Path | None = None) -> Dataset:
    """The dataset of `spans` spans (all analysed for waste), built the first time."""
    root = root or data_root()
    path = root / f"spans-{spans}-seed{seed}-v{_VERSION}"
    manifest = path / "manifest.json"
    if not manifest.exists():
        building = root / f"{path.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        start = time.perf_counter()
        dataset = _open(building)
        copies = _build(dataset, spans, seed)
        dataset.close()
        manifest_text = {
            "spans": spans,
            "seed": seed,
            "version": _VERSION,
            "big": dataset.big,
            "copies": copies,
        }
        (building / "manifest.json").write_text(json.dumps(manifest_text, indent=1))
        building.rename(path)
        print(f"built {path} in {time.perf_counter() - start:.0f}s", flush=True)
    dataset = _open(path)
    recorded = json.loads(manifest.read_text())
    dataset.big = {int(k): v for k, v in recorded["big"].items()}
    dataset.copies = recorded.get("copies", math.ceil(spans / BASE_SPANS))
    dataset.spans, dataset.traces = _counts(dataset.store)
    return dataset


def _open(path: Path) -> Dataset:
    settings = from_env({"TOKENTRAIL_DATA_DIR": str(path)})
    store = connect(settings)
    migrate(store)
    return Dataset(store, settings, 0, 0, {}, path)


def _counts(store: Store) -> tuple[int, int]:
    query = store.client.query
    spans = int(query("SELECT count() FROM spans").result_rows[0][0])
    traces = int(query("SELECT uniqExact(trace_id) FROM traces").result_rows[0][0])
    return spans, traces


def one_trace(spans: int, rng: random.Random) -> tuple[bytes, str]:
    """One encoded request holding a single agent trace of `spans` spans, and its trace id."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench"
    scope = resource.scope_spans.add()
    agent_trace(rng, scope, spans=spans)
    return request.SerializeToString(), scope.spans[0].trace_id.hex()


def _build(dataset: Dataset, spans: int, seed: int) -> int:
    """Fill the dataset; returns how many times over it holds the base."""
    store, pricer = dataset.store, PriceBook()
    rng = random.Random(7)
    for n in BIG_TRACES:
        payload, trace_id = one_trace(n, rng)
        load(store.client, _PROJECT, [payload], pricer)
        dataset.big[n] = trace_id
    start = time.perf_counter()
    base = ensure_spans(store, min(spans, BASE_SPANS), pricer, seed)
    print(f"base: {base:,} spans in {time.perf_counter() - start:.0f}s", flush=True)
    copies = max(1, math.ceil(spans / base))
    for k in range(1, copies):
        start = time.perf_counter()
        _copy(store, k, ("spans", "traces"))
        print(f"spans, copy {k} of {copies - 1}: {time.perf_counter() - start:.0f}s", flush=True)
    store.client.command("OPTIMIZE TABLE traces FINAL")
    reanalyse(dataset, copies)
    return copies


def reanalyse(dataset: Dataset, copies: int) -> None:
    """Analyse the base for waste again, from scratch, and copy its ledgers, findings and evidence
    into every copy: what a dataset holds after the analysis changed what it writes."""
    store = dataset.store
    for table in _LEDGER_TABLES:
        store.client.command(f"TRUNCATE TABLE {table}")
    first = store.client.query("SELECT toUnixTimestamp64Nano(min(start_time)) FROM traces").result_rows[0][0]
    start = time.perf_counter()
    analysed = analyze_range(store.client, _PROJECT, first, first + _PERIOD_S * 10**9, PriceBook())
    print(f"base: {analysed:,} traces analysed in {time.perf_counter() - start:.0f}s", flush=True)
    for k in range(1, copies):
        start = time.perf_counter()
        _copy(store, k, _LEDGER_TABLES)
        print(f"ledgers, copy {k} of {copies - 1}: {time.perf_counter() - start:.0f}s", flush=True)
    store.client.command("OPTIMIZE TABLE trace_waste FINAL")


def resummarize(dataset: Dataset) -> None:
    """Write every trace's summary again from its spans, as the collector writes it now: what a
    dataset holds after the summary changed what it writes (`traces` gained columns)."""
    store = dataset.store
    ids = [r[0] for r in store.client.query("SELECT DISTINCT trace_id FROM traces").result_rows]
    start = time.perf_counter()
    for i in range(0, len(ids), 50_000):
        summarize(store.client, _PROJECT, ids[i : i + 50_000])
        print(
            f"  summaries: {min(i + 50_000, len(ids)):,} of {len(ids):,}, {time.perf_counter() - start:.0f}s",
            flush=True,
        )
    store.client.command("OPTIMIZE TABLE traces FINAL")


_LEDGER_TABLES = ("trace_waste", "waste_findings", "model_steps")
# table -> (columns to replace in a copy, whether to read the newest row per trace only)
_COPIED = {
    "spans": (
        "start_time + toIntervalSecond({shift:UInt32}) AS start_time, "
        "end_time + toIntervalSecond({shift:UInt32}) AS end_time, "
        "arrayMap(x -> x + toIntervalSecond({shift:UInt32}), `events.time`) AS `events.time`, "
        "{conversation} AS conversation_id, "
        "if(mapContains(attributes, 'gen_ai.conversation.id'), "
        "mapUpdate(attributes, map('gen_ai.conversation.id', {conversation})), attributes) AS attributes"
    ),
    "traces": (
        "start_time + toIntervalSecond({shift:UInt32}) AS start_time, "
        "end_time + toIntervalSecond({shift:UInt32}) AS end_time, {conversation} AS conversation_id"
    ),
    "trace_waste": "start_time + toIntervalSecond({shift:UInt32}) AS start_time",
    "waste_findings": "start_time + toIntervalSecond({shift:UInt32}) AS start_time",
    "model_steps": "start_time + toIntervalSecond({shift:UInt32}) AS start_time",
}


def _copy(store: Store, k: int, tables: tuple[str, ...]) -> None:
    """Copy the base's rows of `tables` (the rows that start in the first period) as copy `k`, `k`
    periods later."""
    conversation = "if(conversation_id = '', '', concat(conversation_id, '.', toString({k:UInt32})))"
    for table in tables:
        replaced = _COPIED[table]
        columns = replaced.replace("{conversation}", conversation)
        source = f"{table} FINAL" if table in ("traces", "trace_waste") else table
        store.client.command(
            f"INSERT INTO {table} SELECT * REPLACE (lower(hex(MD5(concat(trace_id, '/', toString({{k:UInt32}}))))) "
            f"AS trace_id, {columns}) FROM (SELECT * FROM {source} "
            # in a subquery: outside it, start_time would name the shifted one
            "WHERE start_time < (SELECT min(start_time) FROM traces) + toIntervalSecond({period:UInt32}))",
            parameters={"k": k, "shift": k * _PERIOD_S, "period": _PERIOD_S},
        )


def ensure_spans(store: Store, spans: int, pricer: PriceBook, seed: int = 11) -> int:
    """Load 1,000-span requests until the database holds at least `spans` spans; returns the count."""
    have = int(store.client.query("SELECT count() FROM spans").result_rows[0][0])
    if have >= spans:
        print(f"reusing {have:,} spans already loaded")
        return have
    rng = random.Random(seed + have)
    start = time.perf_counter()
    step = 50  # requests per load() call: summaries are refreshed once per call
    while have < spans:
        batch = [
            export_request(1000, rng).SerializeToString()
            for _ in range(min(step, (spans - have + 999) // 1000))
        ]
        have += load(store.client, _PROJECT, batch, pricer)
        print(f"  loaded {have:,} spans, {time.perf_counter() - start:.0f}s", flush=True)
    store.client.command("OPTIMIZE TABLE traces FINAL")
    return have


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument(
        "--reanalyse", action="store_true", help="analyse the dataset again and copy its new ledgers"
    )
    parser.add_argument(
        "--resummarize", action="store_true", help="write every trace's summary again from its spans"
    )
    args = parser.parse_args()
    data = open_dataset(args.spans)
    if args.resummarize:
        resummarize(data)
    if args.reanalyse:
        reanalyse(data, data.copies)
    print(f"{data.path}: {data.spans:,} spans, {data.traces:,} traces")
    data.close()


if __name__ == "__main__":
    main()
