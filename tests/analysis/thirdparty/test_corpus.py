"""The waste detectors on traces made by real third-party instrumentations (OpenInference,
OpenLLMetry, OpenLIT, the OTel contrib instrumentors, pydantic-ai, the OpenAI Agents SDK, LangChain,
the anthropic client, hand-written v1.26 OTel), sent over OTLP to a real collector: per detector
precision and recall ≥ 0.95, and the wasted dollars of the rules that take a call's whole cost
within 1% of what the model stand-in billed."""

from __future__ import annotations

import math

import pytest

from tests.analysis.thirdparty.corpus import EMITTERS, missing_envs, span_labels
from tests.analysis.thirdparty.harness import run_corpus
from tests.support.recorder import prices
from tests.support.scoring import DOLLAR_DETECTORS, misses, table
from tokentrail.analysis.ledger import BUCKETS

pytestmark = pytest.mark.slow


def test_detectors_hold_on_third_party_traces(settings, store, capsys):
    if missing := missing_envs():
        pytest.fail(f"the corpus environments {missing} are missing: `make corpus-envs` builds them")
    result = run_corpus(settings, store, prices())
    with capsys.disabled():
        print("\n" + table("Third-party corpus", result.scores))

    # every emitter ran, and every request it made can be told apart in what it recorded
    assert sorted(e.emitter for e in result.emitted) == sorted(EMITTERS)
    found_labels = set(span_labels(store.client).values())
    for run in result.emitted:
        labels = {item["label"] for item in run.expected}
        recorded = {item["label"] for item in run.expected if not item["unrecorded"]}
        assert recorded and recorded == labels & found_labels, (
            run.emitter,
            sorted(recorded ^ labels & found_labels),
        )
        assert {c["label"] for c in run.calls} == labels, run.emitter  # each request was scripted
    assert sum(s.expected for s in result.scores) >= 150  # a corpus, not a sample

    wrong = misses(result.expected, result.found)
    for s in result.scores:
        assert s.expected > 0, s.detector  # every bucket is exercised by some emitter
        assert s.precision >= 0.95 and s.recall >= 0.95, (s.detector, wrong.get(s.detector))
        if s.detector in DOLLAR_DETECTORS:
            assert s.dollars_match, (s.detector, s.found_usd, s.expected_usd)

    # each trace's buckets add up to its cost, which is the summary's cost
    ledgers = store.client.query(
        "SELECT w.trace_id, w.total_usd, " + " + ".join(f"w.{b}_usd" for b in BUCKETS) + ", t.cost_usd "
        "FROM trace_waste AS w FINAL JOIN traces AS t FINAL ON w.project = t.project AND w.trace_id = t.trace_id"
    ).result_rows
    assert len(ledgers) >= 150
    for trace_id, total, summed, summary_cost in ledgers:
        assert math.isclose(total, summed, rel_tol=1e-9, abs_tol=1e-12), trace_id
        assert math.isclose(total, summary_cost, rel_tol=1e-9, abs_tol=1e-12), trace_id
