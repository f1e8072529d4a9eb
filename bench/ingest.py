"""Ingest throughput: spans/s *persisted* in ClickHouse by a real collector process.

Pre-encoded 1,000-span ExportTraceServiceRequest payloads (~2 KB a span, realistic GenAI
attributes) are sent concurrently over OTLP/HTTP to `tokentrail collector` running on its own
embedded database. The clock stops when the collector reports every span stored; the stored
count is then checked in ClickHouse itself (count of distinct rows), and peak memory is read from
/proc. Run: `python -m bench.ingest [--requests 150] [--concurrency 4] [--runs 3]`. The
collector takes `TOKENTRAIL_WRITER_*` and `TOKENTRAIL_REDACT*` from the environment
(`TOKENTRAIL_REDACT=none` measures ingest without redaction).

Two write paths are measured, run by run in turn (`--transport`): `embedded`, the collector holding
the chDB database itself, and `http`, the collector writing over ClickHouse's HTTP interface (the
path taken with a ClickHouse server) to `tokentrail database` holding the same engine in its own
process. The peak memory is the collector's and its flattening workers': the sum of their peak
RSS (which counts a page shared by several of them, such as a library's, in each), and the peak
of their summed PSS (which counts it once, split between them), sampled every 0.1 s; beside them,
the peaks of anonymous (heap) and file-backed (libraries) resident memory.

Each run also measures, in the same database, the engine's own ceiling: the stored rows copied by
`INSERT INTO … SELECT` into a table made like `spans`, inside the engine (no parsing, no Python),
and prints persisted spans/s as a share of it (the machine's speed varies 2-3x from day to day; the
share varies less). CPU time is read from /proc per process: the collector (receiving, spooling,
inserting, reconciling; with `embedded`, the engine too), its flattening workers, and with `http`
the database process; as µs per span. Flattening's own stages are timed once per series in a
process of their own (`bench.stages`).

`--baseline REF` runs the collector of git revision REF too (extracted to a temporary directory),
run by run in turn with this tree's, to compare the write paths in one series, on one machine's
load; medians and their ratio are printed.

The default run (150,000 spans, ~7 s) measures sustained ingest. Shorter runs mostly measure
their edges: the first chunk flattened before anything can be inserted, and the last insert
with nothing left to overlap it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench import tree_pythonpath
from bench.payloads import encoded_batches
from tests.support.collector import (
    child_pids,
    collector_env,
    free_port,
    start_collector_process,
    start_database_process,
)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _kib_fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """Fields of a /proc file of `Name:  123 kB` lines, in KiB (missing: 0)."""
    found = dict.fromkeys(names, 0)
    for line in Path(path).read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in found:
            found[name] = int(rest.split()[0])
    return found


class _MemorySampler:
    """Samples the memory of the collector and its workers every `interval` seconds, on a thread
    of its own: the peak of their summed PSS (proportional set size: a page shared by n processes,
    such as a library's, counts 1/n in each, so the sum counts it once; /proc keeps no peak of it),
    and each process's peak of anonymous and file-backed resident memory (the heap against mapped
    libraries and files)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_pss_kib = 0
        #: "collector" / "workers" -> the peaks of RssAnon and RssFile (workers: of their sums)
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        pss = 0
        groups = {"collector": [self.pid], "workers": child_pids(self.pid)}
        for group, pids in groups.items():
            anon = file = 0
            for pid in pids:
                try:
                    status = _kib_fields(f"/proc/{pid}/status", ("RssAnon", "RssFile"))
                    pss += _kib_fields(f"/proc/{pid}/smaps_rollup", ("Pss",))["Pss"]
                except (OSError, ValueError, IndexError):
                    continue  # the process ended meanwhile
                anon += status["RssAnon"]
                file += status["RssFile"]
            peaks = self.peaks.setdefault(group, {"anon": 0, "file": 0})
            peaks["anon"] = max(peaks["anon"], anon)
            peaks["file"] = max(peaks["file"], file)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)


#: counts the stored spans, then times the engine copying them into a table made like `spans`
_COUNT_AND_CEILING = """
import json, time
from tokentrail.server.settings import from_env
from tokentrail.store import connect
client = connect(from_env()).client
count = client.query("SELECT count() FROM spans FINAL").result_rows[0][0]
client.command("DROP TABLE IF EXISTS bench_ceiling")
client.command("CREATE TABLE bench_ceiling AS spans")
started = time.perf_counter()
client.command("INSERT INTO bench_ceiling SELECT * FROM spans", settings={"async_insert": 0})
seconds = time.perf_counter() - started
copied = client.query("SELECT count() FROM bench_ceiling").result_rows[0][0]
client.command("DROP TABLE bench_ceiling")
print(json.dumps({"count": count, "ceiling": copied / seconds}))
"""


def _count_and_ceiling(env: dict[str, str]) -> tuple[int, float]:
    """The spans stored (each once), and the engine's rows/s inserting them again by INSERT … SELECT."""
    out = subprocess.run(
        [sys.executable, "-c", _COUNT_AND_CEILING], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return int(found["count"]), float(found["ceiling"])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu(pids: list[int]) -> float:
    """The processes' CPU seconds once they are idle (started: imports, workers, price catalog),
    so that a run's CPU per span leaves their start out."""
    before = sum(map(_cpu_seconds, pids))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(map(_cpu_seconds, pids))
        if now - before < 0.02:
            return now
        before = now
    return before


def _tree(ref: str, into: Path) -> str:
    """Extract git revision `ref` of this repository into `into`; returns its PYTHONPATH."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return tree_pythonpath(into)


def _peak_rss_with_workers_mib(pid: int) -> float:
    return _peak_rss_mib(pid) + sum(_peak_rss_mib(child) for child in child_pids(pid))


def run_once(
    payloads: list[bytes],
    spans_per_request: int,
    concurrency: int,
    transport: str = "embedded",
    pythonpath: str | None = None,
) -> dict[str, float]:
    """One run; `pythonpath`: the tree whose collector runs (default: this one)."""
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as tmp:
        port = free_port()
        extra = {
            k: v for k, v in os.environ.items() if k.startswith(("TOKENTRAIL_WRITER_", "TOKENTRAIL_REDACT"))
        }
        if pythonpath is not None:
            extra["PYTHONPATH"] = pythonpath
        database = None
        if transport == "http":
            database, _ = start_database_process(Path(tmp) / "db", pythonpath)
            extra["TOKENTRAIL_CLICKHOUSE_URL"] = f"chdb://{Path(tmp) / 'db' / 'chdb'}"
        proc = start_collector_process(collector_env(f"{tmp}/collector", port, **extra), port)
        env = collector_env(f"{tmp}/collector", port, **extra)
        url = f"http://127.0.0.1:{port}"
        queue = list(payloads)
        lock = threading.Lock()
        refused = 0

        def send() -> None:
            nonlocal refused
            with httpx.Client(timeout=60) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    while True:
                        r = client.post(
                            f"{url}/v1/traces",
                            content=body,
                            headers={"content-type": "application/x-protobuf"},
                        )
                        if r.status_code == 200:
                            break
                        with lock:
                            refused += 1
                        time.sleep(0.5)  # 503: spool full, back off like an exporter

        total = len(payloads) * spans_per_request
        workers = child_pids(proc.pid)
        idle = {
            "collector": _idle_cpu([proc.pid]),
            "workers": _idle_cpu(workers),
            "database": _idle_cpu([database.pid]) if database is not None else 0.0,
        }
        sampler = _MemorySampler(proc.pid)
        with sampler:
            start = time.perf_counter()
            threads = [threading.Thread(target=send) for _ in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            acked = time.perf_counter() - start
            while True:
                stored = httpx.get(f"{url}/api/status").json()["stats"]["tokentrail_spans_stored_total"]
                if stored >= total:
                    break
                time.sleep(0.05)
            persisted = time.perf_counter() - start
        rss = _peak_rss_with_workers_mib(proc.pid)
        collector_rss = _peak_rss_mib(proc.pid)
        collector_cpu = _cpu_seconds(proc.pid) - idle["collector"]
        late = [pid for pid in child_pids(proc.pid) if pid not in workers]  # started during the run
        workers_cpu = sum(map(_cpu_seconds, workers + late)) - idle["workers"]
        database_cpu = _cpu_seconds(database.pid) - idle["database"] if database is not None else 0.0
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        counted, ceiling = _count_and_ceiling(env)
        if database is not None:
            database.send_signal(signal.SIGTERM)
            database.wait(timeout=120)
        if counted != total:
            raise SystemExit(f"ClickHouse holds {counted} spans, expected {total}")
        return {
            "spans": total,
            "ack_per_s": total / acked,
            "persisted_per_s": total / persisted,
            "ceiling_per_s": ceiling,
            "share": total / persisted / ceiling,
            "peak_rss_mib": rss,
            "collector_rss_mib": collector_rss,
            "peak_pss_mib": sampler.peak_pss_kib / 1024,
            "collector_anon_mib": sampler.peaks["collector"]["anon"] / 1024,
            "collector_file_mib": sampler.peaks["collector"]["file"] / 1024,
            "workers_anon_mib": sampler.peaks["workers"]["anon"] / 1024,
            "workers_file_mib": sampler.peaks["workers"]["file"] / 1024,
            "refused": refused,
            "collector_us": collector_cpu / total * 1e6,
            "workers_us": workers_cpu / total * 1e6,
            "database_us": database_cpu / total * 1e6,
        }


def _stages(pythonpath: str | None, requests: int) -> dict[str, float]:
    """Flattening's CPU µs per span by stage, in a process running `pythonpath`'s tree."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    if pythonpath is not None:  # that tree's packages first; this tree's bench
        env["PYTHONPATH"] = os.pathsep.join((pythonpath, here))
    out = subprocess.run(
        [sys.executable, "-m", "bench.stages", "--requests", str(requests)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=here,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _line(label: str, result: dict[str, float]) -> str:
    cpu = f"collector {result['collector_us']:.0f}, workers {result['workers_us']:.0f}"
    if result["database_us"]:
        cpu += f", database {result['database_us']:.0f}"
    return (
        f"{label}: persisted {result['persisted_per_s']:,.0f} spans/s "
        f"({result['share']:.0%} of the engine's {result['ceiling_per_s']:,.0f} rows/s), "
        f"acknowledged {result['ack_per_s']:,.0f} spans/s, "
        f"peak RSS {result['peak_rss_mib']:.0f} MiB (collector {result['collector_rss_mib']:.0f}; "
        f"anonymous/file: collector {result['collector_anon_mib']:.0f}/{result['collector_file_mib']:.0f}, "
        f"workers {result['workers_anon_mib']:.0f}/{result['workers_file_mib']:.0f}), "
        f"peak PSS {result['peak_pss_mib']:.0f} MiB, "
        f"503s {result['refused']:.0f}; CPU µs/span: {cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--spans", type=int, default=1000, help="spans per request")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--transport", default="embedded,http", help="write paths to measure, in turn: embedded, http"
    )
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the collector of git revision REF, in turn with this one"
    )
    args = parser.parse_args()
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    if not transports or set(transports) - {"embedded", "http"}:
        parser.error("--transport takes embedded, http or both")
    payloads = encoded_batches(args.requests, spans_per_request=args.spans, seed=7)
    size = sum(map(len, payloads)) / (args.requests * args.spans)
    print(
        f"{args.requests} requests x {args.spans} spans, {size:.0f} bytes/span, concurrency {args.concurrency}"
    )
    with tempfile.TemporaryDirectory(prefix="tokentrail-baseline-") as tmp:
        trees: dict[str, str | None] = {"new": None}
        if args.baseline:
            trees = {"old": _tree(args.baseline, Path(tmp)), "new": None}
        for name, pythonpath in trees.items():
            stages = _stages(pythonpath, requests=5)
            print(f"flattening, CPU µs/span by stage ({name}): " + json.dumps(stages))
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for i in range(args.runs):
            for transport in transports:
                for name, pythonpath in trees.items():
                    result = run_once(payloads, args.spans, args.concurrency, transport, pythonpath)
                    results.setdefault((name, transport), []).append(result)
                    label = f"run {i + 1} {transport:8}" + (f" {name}" if len(trees) > 1 else "")
                    print(_line(label, result), flush=True)
    summary: dict[str, dict[str, float]] = {}
    for (name, transport), runs in results.items():
        key = f"{transport} {name}" if len(trees) > 1 else transport
        summary[key] = {
            "median_persisted_spans_per_s": round(statistics.median(r["persisted_per_s"] for r in runs)),
            "median_share_of_ceiling": round(statistics.median(r["share"] for r in runs), 3),
            "median_ceiling_rows_per_s": round(statistics.median(r["ceiling_per_s"] for r in runs)),
            "median_acknowledged_spans_per_s": round(statistics.median(r["ack_per_s"] for r in runs)),
            "max_peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
            "max_peak_pss_mib": round(max(r["peak_pss_mib"] for r in runs)),
            "median_collector_cpu_us_per_span": round(statistics.median(r["collector_us"] for r in runs), 1),
            "median_workers_cpu_us_per_span": round(statistics.median(r["workers_us"] for r in runs), 1),
            "median_database_cpu_us_per_span": round(statistics.median(r["database_us"] for r in runs), 1),
        }
    if len(trees) > 1:
        for transport in transports:
            old, new = summary[f"{transport} old"], summary[f"{transport} new"]
            ratio = new["median_persisted_spans_per_s"] / old["median_persisted_spans_per_s"]
            print(
                f"{transport}: {old['median_persisted_spans_per_s']:,} -> "
                f"{new['median_persisted_spans_per_s']:,} spans/s persisted (x{ratio:.2f}), "
                f"share of ceiling {old['median_share_of_ceiling']:.0%} -> {new['median_share_of_ceiling']:.0%}; "
                f"peak memory of collector and workers, RSS {old['max_peak_rss_mib']:,} -> "
                f"{new['max_peak_rss_mib']:,} MiB, PSS {old['max_peak_pss_mib']:,} -> {new['max_peak_pss_mib']:,} MiB"
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
