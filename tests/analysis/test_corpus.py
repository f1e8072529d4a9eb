"""The detectors against the labelled corpus, through ClickHouse: precision and recall per
detector (target ≥ 0.95) and wasted dollars within 1% of the expected figures."""

from __future__ import annotations

import math
import re
from collections import defaultdict

from tests.analysis.corpus import CASES
from tests.web.data import Recorder, prices
from tokentrail.analysis.ledger import BUCKETS, DEFINITE
from tokentrail.analysis.run import analyze_range

_LABEL = re.compile(r"\[([\w+-]+)\]$")


def test_detectors_find_what_the_corpus_labels(store, capsys):
    rec = Recorder()
    expected: dict[tuple[str, str, str], float] = {}  # (case, label, detector) -> usd
    roots: dict[str, str] = {}
    for case in CASES:
        before = len(rec.exporter.get_finished_spans())
        for label, (detector, usd) in case.build(rec).items():
            expected[(case.name, label.rstrip("+"), detector)] = usd  # "+": a second finding on one call
        root = rec.exporter.get_finished_spans()[-1]
        assert len(rec.exporter.get_finished_spans()) > before and root.parent is None
        roots[format(root.context.trace_id, "032x")] = case.name
    rec.store(store.client)
    analyzed = analyze_range(store.client, "default", 0, 2**62, prices())
    assert analyzed == len(CASES)

    labels = {
        (trace_id, span_id): _LABEL.search(name).group(1)  # type: ignore[union-attr]
        for trace_id, span_id, name in store.client.query("SELECT trace_id, span_id, name FROM spans").result_rows
        if _LABEL.search(name)
    }
    found: dict[tuple[str, str, str], float | None] = {}
    rows = store.client.query(
        "SELECT trace_id, span_id, detector, wasted_usd FROM waste_findings "
        "WHERE (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL)").result_rows
    for trace_id, span_id, detector, usd in rows:
        found[(roots[trace_id], labels[(trace_id, span_id)], detector)] = usd

    report = []
    for detector in BUCKETS[:-1]:
        want = {k for k in expected if k[2] == detector}
        got = {k for k in found if k[2] == detector}
        tp = len(want & got)
        precision = tp / len(got) if got else 1.0
        recall = tp / len(want) if want else 1.0
        expected_usd = sum(expected[k] for k in want)
        found_usd = sum(found[k] or 0.0 for k in got)
        report.append((detector, len(want), len(got), precision, recall, expected_usd, found_usd))
        assert precision >= 0.95 and recall >= 0.95, (detector, sorted(want ^ got))
        assert math.isclose(found_usd, expected_usd, rel_tol=0.01, abs_tol=1e-12), (detector, found_usd, expected_usd)
    with capsys.disabled():
        print(f"\n{'detector':<16}{'expected':>9}{'found':>7}{'precision':>10}{'recall':>8}{'expected $':>12}{'found $':>12}")
        for d, n_want, n_got, p, r, e, f in report:
            print(f"{d:<16}{n_want:>9}{n_got:>7}{p:>10.2f}{r:>8.2f}{e:>12.6f}{f:>12.6f}")

    # every trace's buckets add up to its cost, which is the summary's cost
    ledgers = store.client.query(
        "SELECT w.trace_id, w.total_usd, " + " + ".join(f"w.{b}_usd" for b in BUCKETS) + ", t.cost_usd "
        "FROM trace_waste AS w FINAL JOIN traces AS t FINAL ON w.project = t.project AND w.trace_id = t.trace_id"
    ).result_rows
    assert len(ledgers) == len(CASES)
    for trace_id, total, summed, summary_cost in ledgers:
        assert math.isclose(total, summed, rel_tol=1e-9, abs_tol=1e-12), roots[trace_id]
        assert math.isclose(total, summary_cost, rel_tol=1e-9, abs_tol=1e-12), roots[trace_id]
    assert set(DEFINITE) < set(BUCKETS)


def test_reanalysis_replaces_the_previous_ledger(store):
    rec = Recorder()
    with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
        for _ in range(2):
            rec.chat("gpt-4o", "openai", 900, 40, messages=[{"role": "user", "parts": [{"type": "text", "content": "x"}]}])
    rec.store(store.client)
    for _ in range(2):
        analyze_range(store.client, "default", 0, 2**62, prices())
    current = store.client.query(
        "SELECT detector, count() FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) GROUP BY detector").result_rows
    assert current == [("duplicate", 1)]
    by_trace: dict[str, int] = defaultdict(int)
    for (trace_id,) in store.client.query("SELECT trace_id FROM trace_waste FINAL").result_rows:
        by_trace[trace_id] += 1
    assert list(by_trace.values()) == [1]
