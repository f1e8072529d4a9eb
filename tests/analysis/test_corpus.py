"""The detectors against our SDK's labelled corpus, through ClickHouse: precision and recall per
detector (target ≥ 0.95) and wasted dollars within 1% of the expected figures."""

from __future__ import annotations

import math
from collections import defaultdict

from tests.support.corpus import CASES, run_own_corpus
from tests.support.recorder import Recorder, prices
from tests.support.scoring import misses, score, table
from tokentrail.analysis.ledger import BUCKETS
from tokentrail.analysis.run import analyze_range


def test_detectors_find_what_the_corpus_labels(store, capsys):
    expected, found = run_own_corpus(store.client, prices())
    scores = score(expected, found)
    with capsys.disabled():
        print("\n" + table("Our SDK's corpus", scores))
    wrong = misses(expected, found)
    for s in scores:
        assert s.precision >= 0.95 and s.recall >= 0.95, (s.detector, wrong.get(s.detector))
        assert s.dollars_match, (s.detector, s.found_usd, s.expected_usd)

    # every trace's buckets add up to its cost, which is the summary's cost
    ledgers = store.client.query(
        "SELECT w.trace_id, w.total_usd, " + " + ".join(f"w.{b}_usd" for b in BUCKETS) + ", t.cost_usd "
        "FROM trace_waste AS w FINAL JOIN traces AS t FINAL ON w.project = t.project AND w.trace_id = t.trace_id"
    ).result_rows
    assert len(ledgers) == len(CASES)
    for trace_id, total, summed, summary_cost in ledgers:
        assert math.isclose(total, summed, rel_tol=1e-9, abs_tol=1e-12), trace_id
        assert math.isclose(total, summary_cost, rel_tol=1e-9, abs_tol=1e-12), trace_id


def test_reanalysis_replaces_the_previous_ledger(store):
    rec = Recorder()
    with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
        for _ in range(2):
            rec.chat(
                "gpt-4o",
                "openai",
                900,
                40,
                messages=[{"role": "user", "parts": [{"type": "text", "content": "x"}]}],
            )
    rec.store(store.client)
    for _ in range(2):
        analyze_range(store.client, "default", 0, 2**62, prices())
    current = store.client.query(
        "SELECT detector, count() FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) GROUP BY detector"
    ).result_rows
    assert current == [("duplicate", 1)]
    by_trace: dict[str, int] = defaultdict(int)
    for (trace_id,) in store.client.query("SELECT trace_id FROM trace_waste FINAL").result_rows:
        by_trace[trace_id] += 1
    assert list(by_trace.values()) == [1]
