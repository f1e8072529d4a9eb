"""Background analysis: a trace is analysed once it has gone quiet, and again when it changes."""

from __future__ import annotations

import random
import threading
import time
from datetime import datetime

import pyarrow as pa
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel

from tests.support.recorder import Recorder, prices, text
from tokentrail.analysis.run import Analyzer, _split
from tokentrail.server.settings import SettingsError, from_env
from tokentrail.store import claims
from tokentrail.store import ledger as stored_ledger


def test_quiet_traces_are_analysed_once_and_again_after_a_late_span(settings, store):
    rec = Recorder()
    with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a") as root:
        rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
    rec.store(store.client)
    analyzer = Analyzer(store.client, settings.with_(waste_idle_seconds=1.0), prices())
    time.sleep(1.1)
    assert analyzer.run_once() == 1
    assert analyzer.run_once() == 0  # nothing changed since
    ((total, productive, findings),) = store.client.query(
        "SELECT total_usd, productive_usd, findings FROM trace_waste FINAL"
    ).result_rows
    assert total == productive > 0 and findings == 0

    # the same request again, arriving later in the same trace: the trace is due again
    token = otel_context.attach(otel.set_span_in_context(otel.NonRecordingSpan(root.get_span_context())))
    try:
        rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
    finally:
        otel_context.detach(token)
    rec.store(store.client)
    assert analyzer.run_once() == 0  # not quiet yet
    time.sleep(1.1)
    assert analyzer.run_once() == 1
    ((total2, duplicate, findings2),) = store.client.query(
        "SELECT total_usd, duplicate_usd, findings FROM trace_waste FINAL"
    ).result_rows
    assert findings2 == 1 and total2 == pytest.approx(2 * total) and duplicate == pytest.approx(total)


def _quiet_traces(store, n: int) -> set[str]:
    """`n` stored traces of one call each, quiet for a second; their ids."""
    rec = Recorder()
    for i in range(n):
        with rec.span(f"invoke_agent a{i}", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
            rec.chat("gpt-4o", "openai", 900 + i, 40, messages=text(f"hello {i}"))
    rec.store(store.client)
    time.sleep(1.1)
    found = {r[0] for r in store.client.query("SELECT DISTINCT trace_id FROM traces").result_rows}
    assert len(found) == n
    return found


def _analysed(store) -> list[str]:
    return [
        r[0]
        for r in store.client.query("SELECT trace_id FROM trace_waste FINAL ORDER BY trace_id").result_rows
    ]


def test_collectors_on_one_database_analyse_each_trace_once(settings, store):
    traces = _quiet_traces(store, 60)
    quiet = settings.with_(waste_idle_seconds=1.0)
    analyzers = [Analyzer(store.new_client(), quiet, prices()) for _ in range(3)]
    start = threading.Barrier(len(analyzers))

    def run(analyzer: Analyzer) -> None:
        start.wait()
        while analyzer.run_once():
            pass

    threads = [threading.Thread(target=run, args=(a,)) for a in analyzers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = [(a.analyzed, a.left_to_others) for a in analyzers]
    assert sum(a.analyzed for a in analyzers) == len(traces), counts
    assert _analysed(store) == sorted(traces)
    assert all(a.run_once() == 0 for a in analyzers)


def test_of_concurrent_claims_to_the_same_work_exactly_one_wins(store):
    when = datetime(2026, 11, 30, 10, 0)
    items = [("p", f"trace-{i}", when) for i in range(200)]
    won: dict[str, set[claims.Item]] = {}
    start = threading.Barrier(4)

    def claim_all(holder: str) -> None:
        client = store.new_client()
        start.wait()
        won[holder] = claims.claim(client, "analysis", holder, items, 600)
        client.close()

    threads = [threading.Thread(target=claim_all, args=(f"collector-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(len(w) for w in won.values()) == len(items)  # none twice...
    assert set().union(*won.values()) == set(items)  # ...and none left
    # a new version of a subject is new work; another kind of work is claimed apart
    later = [("p", "trace-0", datetime(2026, 11, 30, 11, 0))]
    assert claims.claim(store.client, "analysis", "collector-9", later, 600) == set(later)
    assert claims.claim(store.client, "budget_alert", "collector-9", items[:1], 600) == set(items[:1])


class _SlowInsert:
    """A client whose claims insert is stamped when it starts but seen only once `go` is set, as
    on a server that delays an insert under merge pressure."""

    def __init__(self, client, stamped: threading.Event, go: threading.Event) -> None:
        self.client, self.stamped, self.go = client, stamped, go

    def insert(self, table, data, column_names, settings):
        stamp = self.client.query("SELECT now64(9)").result_rows[0][0]
        self.stamped.set()
        self.go.wait(30)
        rows = [[*row, stamp] for row in data]
        return self.client.insert(table, rows, column_names=[*column_names, "claimed_at"], settings=settings)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_claim_whose_insert_was_slow_never_makes_two_winners(store):
    when = datetime(2026, 11, 30, 10, 0)
    contested, alone = ("p", "trace-1", when), ("p", "trace-2", when)
    stamped, fast_done = threading.Event(), threading.Event()
    won: dict[str, set[claims.Item]] = {}

    def slow() -> None:
        client = _SlowInsert(store.new_client(), stamped, fast_done)
        won["slow"] = claims.claim(client, "analysis", "slow", [contested, alone], 600)

    def fast() -> None:
        stamped.wait(30)  # the slow claim is stamped first, but is not seen yet
        won["fast"] = claims.claim(store.new_client(), "analysis", "fast", [contested], 600)
        fast_done.set()

    threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # the fast one read before the slow claim was seen and won; the slow one sees it and leaves
    # the contested item to it, and keeps what no one else claimed
    assert won == {"fast": {contested}, "slow": {alone}}
    stamps = store.client.query(
        "SELECT holder FROM claims WHERE subject = 'trace-1' ORDER BY claimed_at"
    ).result_rows
    assert stamps == [("slow",), ("fast",)]  # the slow claim is the earlier one


def test_a_trace_claimed_by_a_collector_that_died_is_claimed_again(settings, store, monkeypatch):
    import tokentrail.analysis.run as run

    traces = _quiet_traces(store, 3)
    quiet = settings.with_(waste_idle_seconds=1.0)
    due = [
        (r["project"], r["trace_id"], r["version"])
        for r in stored_ledger.pending_traces(store.client, lookback_s=86_400, idle_ms=1000, limit=10)
    ]
    assert claims.claim(store.client, "analysis", "gone:1:dead", due, 600) == set(due)
    alive = Analyzer(store.client, quiet, prices())
    assert (alive.run_once(), alive.left_to_others) == (0, 3)
    monkeypatch.setattr(run, "CLAIM_LEASE_SECONDS", 3)
    time.sleep(2)  # with the second the claims took to settle, the dead one's have outlived the lease
    assert alive.run_once() == 3
    assert _analysed(store) == sorted(traces)


def test_waste_settings_are_checked():
    with pytest.raises(SettingsError, match="TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING"):
        from_env({"TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING": "1.5"})
    with pytest.raises(SettingsError, match="TOKENTRAIL_WASTE_LOOP_MIN_REPEATS"):
        from_env({"TOKENTRAIL_WASTE_LOOP_MIN_REPEATS": "1"})
    assert from_env({"TOKENTRAIL_WASTE_BLOAT_CARRY_TOKENS": "5000"}).waste.bloat_carry_tokens == 5000


def test_analyze_command_shows_progress(store, settings, monkeypatch, capsys):
    from tokentrail.cli import main

    rec = Recorder()
    for _ in range(3):
        with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
            rec.chat("gpt-4o", "openai", 900, 40)
    rec.store(store.client)
    monkeypatch.setenv("TOKENTRAIL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_DATABASE", settings.database)
    assert main(["analyze", "--since", "1d"]) == 0
    out = capsys.readouterr()
    assert "analysed 3 traces" in out.out and "3/3 traces" in out.err
    assert store.client.query("SELECT count() FROM trace_waste FINAL").result_rows == [(3,)]


def test_stored_waste_totals_are_the_latest_ledgers(settings, store):
    from tokentrail.analysis.run import analyze_range
    from tokentrail.store import ledger

    rec = Recorder()
    for _ in range(2):
        with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
            rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
            rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))  # the same request again
    rec.store(store.client)
    for _ in range(2):  # analysed twice: the totals count each trace's latest analysis once
        assert analyze_range(store.client, "default", 0, 2**62, prices()) == 2
    totals = ledger.waste_totals(store.client, "default")
    (duplicate,) = ledger.findings_by_detector(store.client, "default")
    ((spend, wasted),) = store.client.query(
        "SELECT sum(total_usd), sum(duplicate_usd) FROM trace_waste FINAL"
    ).result_rows
    assert totals == {"spend": pytest.approx(spend), "wasted": pytest.approx(wasted)} and wasted > 0
    assert duplicate == {"detector": "duplicate", "findings": 2, "usd": pytest.approx(wasted)}
    assert ledger.waste_totals(store.client, "other") == {"spend": 0.0, "wasted": 0.0}


@pytest.mark.parametrize("shuffled", [False, True])
def test_spans_read_for_several_chunks_go_each_to_its_chunk(shuffled):
    """The spans of several chunks, read at once in trace id order, are cut into one stream a
    chunk: each holds exactly its chunk's traces' rows, in the order read, whether the chunks'
    ids come in that order too (a range's) or not (traces due in the order they went quiet)."""
    traces = [f"t{n:02d}" for n in range(10)]
    rows = [(trace, f"{trace}-s{k}") for trace in traces for k in range(_spans_of(trace))]
    whole = pa.table({"trace_id": [t for t, _ in rows], "span_id": [s for _, s in rows]})
    table = pa.concat_tables([whole.slice(0, 7), whole.slice(7)])  # read in several batches
    ids = [*traces, "t99"]  # a trace with no spans read
    if shuffled:
        random.Random(3).shuffle(ids)
    chunks = [ids[i : i + 3] for i in range(0, len(ids), 3)]
    parts = [pa.ipc.open_stream(part).read_all() for part in _split(table, chunks)]
    for chunk, part in zip(chunks, parts, strict=True):
        assert part.schema == table.schema
        assert list(zip(part["trace_id"].to_pylist(), part["span_id"].to_pylist(), strict=True)) == [
            row for row in rows if row[0] in chunk
        ]


def _spans_of(trace: str) -> int:
    """Spans of a test trace: a few, and none for some."""
    return int(trace[1:]) % 4
