"""Waste in the UI, its JSON and CSV twins, and `tokentrail waste`: the figures match the ledger."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.support.corpus import agent, call, duplicate, loop, oversized, productive, retry
from tests.support.recorder import Recorder, prices
from tokentrail.analysis.run import analyze_range
from tokentrail.cli import main as cli
from tokentrail.store.filters import TraceFilter
from tokentrail.web.waste import reader as waste_reader


def _seed(store: Any) -> dict[str, float]:
    rec = Recorder()
    for build in (productive, retry, loop, duplicate, oversized):
        build(rec)
    with agent(rec, '=HYPERLINK("http://evil")'):  # a name a spreadsheet would run
        call(rec, "x", "gpt-4o", 900, 40, content="same")
        call(rec, "y", "gpt-4o", 900, 40, content="same")
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    rows = store.client.query(
        "SELECT agent_name, total_usd - productive_usd FROM trace_waste FINAL"
    ).result_rows
    return dict(rows)


def _soup(response) -> Any:
    assert response.status_code == 200, response.text[:300]
    return BeautifulSoup(response.text, "html.parser")


def test_report_by_agent_and_model_adds_up(web, store):
    wasted = _seed(store)
    report = web.get("/waste.json", params={"by": "agent"}).json()
    by_agent = {r["key"]: r for r in report["rows"]}
    assert {k: round(v["wasted_usd"], 12) for k, v in by_agent.items()} == {
        k: round(v, 12) for k, v in wasted.items()
    }
    total = report["totals"]
    assert math.isclose(sum(r["total_usd"] for r in report["rows"]), total["total_usd"], rel_tol=1e-9)
    assert math.isclose(sum(total["buckets"].values()), total["total_usd"], rel_tol=1e-9)
    assert by_agent["writer"]["buckets"]["retry"] > 0 and by_agent["researcher"]["buckets"]["loop"] > 0
    assert report["rows"][0]["key"] == max(wasted, key=lambda k: wasted[k])  # most waste first
    by_model = web.get("/waste.json", params={"by": "model"}).json()["rows"]
    assert math.isclose(sum(r["total_usd"] for r in by_model), total["total_usd"], rel_tol=1e-9)
    assert math.isclose(sum(r["wasted_usd"] for r in by_model), total["wasted_usd"], rel_tol=1e-9)
    assert {d["detector"] for d in report["detectors"]} == {"retry", "loop", "duplicate", "oversized_model"}
    assert report["top"][0]["wasted_usd"] == max(t["wasted_usd"] for t in report["top"])
    assert web.get("/waste.json", params={"by": "colour"}).status_code == 400


def test_report_page_csv_and_overview(web, store):
    wasted = _seed(store)
    page = _soup(web.get("/waste"))
    assert page.select_one("[data-total=wasted]").get_text(strip=True) == f"${sum(wasted.values()):.4f}"
    assert len(page.select("table.waste-by tbody tr")) == len(wasted)
    assert page.select("table.top-findings tbody tr")
    exported = web.get("/waste.csv", params={"by": "agent"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["agent"] for r in rows} == {k for k in wasted if not k.startswith("=")} | {
        '\'=HYPERLINK("http://evil")'
    }
    assert math.isclose(sum(float(r["wasted_usd"]) for r in rows), sum(wasted.values()), rel_tol=1e-6)
    overview = _soup(web.get("/overview"))
    assert "Wasted" in overview.select_one(".totals").get_text(" ", strip=True)
    assert overview.select(".trend .day")


def test_trace_page_marks_waste_where_it_happened(web, store):
    _seed(store)
    listing = web.get("/traces.json", params={"agent": "researcher"}).json()["traces"]
    (trace,) = listing
    assert trace["wasted_usd"] > 0 and trace["analyzed"] == 1
    page = _soup(web.get(f"/trace/{trace['trace_id']}"))
    findings = page.select(".waste-panel .finding")
    assert [f["data-detector"] for f in findings] == ["loop", "loop"]
    marked = [
        r.select_one(".wf-name").get_text() for r in page.select("#wf .wf-row") if r.select(".badge.waste")
    ]
    assert marked == ["chat gpt-4o-mini [think1]", "chat gpt-4o-mini [think2]"]
    related = findings[0].select("a.span-link")[1]["data-span"]
    assert (
        page.select_one(f'#wf .wf-row[data-span="{related}"] .wf-name').get_text()
        == "chat gpt-4o-mini [think0]"
    )
    api = web.get(f"/trace/{trace['trace_id']}.json").json()
    assert math.isclose(api["ledger"]["buckets"]["loop"], trace["wasted_usd"], rel_tol=1e-9)
    span_id = findings[0].select_one("a.span-link")["data-span"]
    detail = _soup(web.get(f"/trace/{trace['trace_id']}/span/{span_id}", headers={"HX-Request": "true"}))
    assert "iteration 2 of 3" in detail.select_one(".waste-callout").get_text()


def test_a_trace_with_more_findings_than_its_page_lists(web, store):
    """Past 50 findings the page lists the 50 costliest in full (rule and formula), in order of
    cost, says how many there are, and still badges every finding on its row; the JSON twin has
    every one in full."""
    rec = Recorder()
    calls = 60
    with agent(rec, "refunds", outcome=False):  # a failed task: each call's whole cost is waste
        for i in range(calls):
            call(rec, f"c{i}", "gpt-4o", 100 + 10 * i, 10)  # each call costs more than the one before
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    (trace,) = web.get("/traces.json").json()["traces"]
    page = _soup(web.get(f"/trace/{trace['trace_id']}"))
    listed = page.select(".waste-panel .finding")
    costliest = list(range(calls - 1, calls - 51, -1))
    assert [f.select_one("a.span-link").get_text() for f in listed] == [
        f"chat gpt-4o [c{i}]" for i in costliest
    ]
    for finding, i in zip(listed, costliest, strict=True):
        assert finding["data-detector"] == "no_outcome"
        assert f"whole cost: {100 + 10 * i:,} input" in finding.select_one(".formula").get_text()
        assert "rule no_outcome.failure" in finding.select_one("details summary").get_text(" ", strip=True)
    assert f"The 50 costliest of {calls} findings" in page.select_one(".waste-panel .findings").get_text()
    rows = {r.select_one(".wf-name").get_text(): r for r in page.select("#wf .wf-row")}
    for i in range(calls):
        (badge,) = rows[f"chat gpt-4o [c{i}]"].select(".badge.waste")
        assert "bk-no_outcome" in badge["class"]
    api = web.get(f"/trace/{trace['trace_id']}.json").json()["findings"]
    assert sorted(x["evidence"]["input_tokens"] for x in api) == [100 + 10 * i for i in range(calls)]


def test_findings_of_equal_cost_at_the_cut_are_listed_in_timeline_order(web, store):
    """Past 50 findings, those that cost as much as the last listed one are listed in the order
    of their spans on the timeline: the 20 costly calls that came last, then the first 30 of 40
    calls of equal cost."""
    rec = Recorder()
    with agent(rec, "refunds", outcome=False):  # a failed task: each call's whole cost is waste
        for i in range(40):
            call(rec, f"c{i}", "gpt-4o", 1000, 10)  # all cost the same
        for i in range(40, 60):
            call(rec, f"c{i}", "gpt-4o", 2000 + 10 * i, 10)  # each costs more than the one before
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    (trace,) = web.get("/traces.json").json()["traces"]
    page = _soup(web.get(f"/trace/{trace['trace_id']}"))
    listed = [f.select_one("a.span-link").get_text() for f in page.select(".waste-panel .finding")]
    expected = [*range(59, 39, -1), *range(30)]
    assert listed == [f"chat gpt-4o [c{i}]" for i in expected]


def test_list_filters_and_sorts_by_waste(web, store):
    wasted = _seed(store)
    with_waste = web.get("/traces.json", params={"has_waste": "1", "sort": "waste"}).json()["traces"]
    assert len(with_waste) == sum(1 for v in wasted.values() if v > 0)
    values = [t["wasted_usd"] for t in with_waste]
    assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
    assert web.get("/traces.json").json()["totals"]["wasted_usd"] == pytest.approx(sum(wasted.values()))


def test_waste_command_reads_the_running_ui(live, store, capsys):
    wasted = _seed(store)
    assert cli(["waste", "--url", live, "--by", "agent", "--since", "1d"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["agent", "cost", "wasted"]
    assert "researcher" in table and "loop" in table
    assert cli(["waste", "--url", live, "--format", "json", "--since", "1d"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["wasted_usd"] == pytest.approx(sum(wasted.values()))
    assert cli(["waste", "--url", live, "--format", "csv", "--by", "model", "--since", "1d"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sum(float(r["wasted_usd"]) for r in rows) == pytest.approx(sum(wasted.values()))
    with pytest.raises(SystemExit, match="no Tokentrail web UI"):
        cli(["waste", "--url", "http://127.0.0.1:9", "--since", "1d"])


def test_every_finding_shows_its_rule_numbers_and_formula(web, store):
    _seed(store)
    page = _soup(web.get("/findings"))
    rows = page.select("table.findings-list tbody tr[data-detector]")
    api = web.get("/findings.json").json()["findings"]
    assert (
        len(rows)
        == len(api)
        == store.client.query(
            "SELECT count() FROM waste_findings WHERE (trace_id, analyzed_at) IN "
            "(SELECT trace_id, analyzed_at FROM trace_waste FINAL)"
        ).result_rows[0][0]
    )
    assert [x["wasted_usd"] or 0 for x in api] == sorted((x["wasted_usd"] or 0 for x in api), reverse=True)
    retry = next(x for x in api if x["rule"] == "retry.failed_call" and x["wasted_usd"])
    # the numbers behind the dollars, and the formula that combines them, on every surface
    assert retry["evidence"]["output_tokens"] == 4096
    assert retry["evidence"]["formula"].endswith(
        f"and 4,096 output tokens on gpt-4o = ${retry['wasted_usd']:.6f}"
    )
    assert retry["evidence"]["retried_by"] in retry["related"]
    shown = next(r for r in rows if r["data-detector"] == "retry" and "cut off" in r.get_text())
    assert "retry.failed_call" in shown.select_one("details summary").get_text()
    loop = next(x for x in api if x["detector"] == "loop")
    assert loop["evidence"]["cycle"] == "gpt-4o-mini → search → read" and loop["evidence"]["iterations"] == 3
    exported = list(csv.DictReader(io.StringIO(web.get("/findings.csv").text)))
    assert len(exported) == len(api)
    row = next(r for r in exported if r["span_id"] == retry["span_id"])
    assert row["rule"] == "retry.failed_call" and float(row["wasted_usd"]) == pytest.approx(
        retry["wasted_usd"]
    )
    assert json.loads(row["evidence"])["input_tokens"] == 3000
    only = web.get("/findings.json", params={"detector": "loop"}).json()["findings"]
    assert {x["detector"] for x in only} == {"loop"} and len(only) == 2
    assert web.get("/findings.json", params={"detector": "colour"}).status_code == 400
    # the formula of a priced rule reproduces its dollars
    oversized = next(x for x in api if x["detector"] == "oversized_model")
    assert oversized["evidence"]["suggested_model"].startswith("gpt-4o-mini")
    assert oversized["evidence"]["formula"].endswith(f"= ${oversized['wasted_usd']:.6f}")


def test_a_bloat_finding_names_the_stale_item(web, store):
    rec = Recorder()
    big = "x" * 40_000
    history: list[dict[str, Any]] = [
        {"role": "user", "parts": [{"type": "text", "content": "Audit the orders."}]}
    ]
    with agent(rec, "auditor"):
        for i in range(3):
            rec.chat("gpt-4o-mini", "openai", 1_000 + i * 10_100, 100, agent="", messages=history)
            history = [
                *history,
                {"role": "assistant", "parts": [{"type": "tool_call", "id": f"c{i}", "name": "get_orders"}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "id": f"c{i}", "response": big}]},
            ]
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    (bloat,) = [x for x in web.get("/findings.json").json()["findings"] if x["detector"] == "context_bloat"]
    assert bloat["stale_item"] == "the result of tool get_orders (message 3 of 5), ~10,000 tokens"
    assert bloat["evidence"]["stale_tokens"] == 10_100 and bloat["evidence"]["allowance"] == 1_000
    trace = _soup(web.get(f"/trace/{bloat['trace_id']}"))
    assert (
        "the largest item carried along is the result of tool get_orders"
        in trace.select_one('.waste-panel .finding[data-detector="context_bloat"]').get_text()
    )


def test_span_detail_shows_where_a_cost_came_from(web, store):
    rec = Recorder()
    with agent(rec, "pricing"):
        rec.chat(
            "gpt-4o-mini", "openai", 1000, 100, gen_ai__usage__cost=0.0
        )  # OpenLIT without its price list
        rec.chat(
            "gpt-4o", "openai", 1000, 100, gen_ai__usage__cost=0.02
        )  # a figure the catalog disagrees with
        rec.chat("gpt-4o", "openai", 2000, 100)
    rec.store(store.client)
    (trace,) = web.get("/traces.json").json()["traces"]
    spans = {
        s["model"]: s["span_id"]
        for s in web.get(f"/trace/{trace['trace_id']}.json").json()["spans"]
        if s["step_kind"] == "llm" and s["input_tokens"] == 1000
    }

    def cost(span_id: str) -> str:
        page = _soup(web.get(f"/trace/{trace['trace_id']}/span/{span_id}", headers={"HX-Request": "true"}))
        return str(page.select_one("[data-field=cost]").get_text(" ", strip=True))

    mini = prices().cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
    gpt4o = prices().cost("openai", "gpt-4o", input_tokens=1000, output_tokens=100)
    assert mini and gpt4o
    shown = cost(
        spans["gpt-4o-mini-2024-07-18"] if "gpt-4o-mini-2024-07-18" in spans else spans["gpt-4o-mini"]
    )
    assert f"${mini:.4f}" in shown and "computed" in shown and "reported $0" in shown
    shown = cost(spans["gpt-4o-2024-08-06"] if "gpt-4o-2024-08-06" in spans else spans["gpt-4o"])
    assert "$0.0200" in shown and "reported by the emitter" in shown
    assert f"the catalog gives ${gpt4o:.4f}" in shown and f"{(0.02 - gpt4o) / gpt4o:.0%} above" in shown


def _detectors_from_findings(store: Any) -> dict[str, tuple[int, int, float]]:
    """Per detector, from the latest findings one by one: (findings, traces, wasted dollars)."""
    found = store.client.query(
        "SELECT detector, count(), uniqExact(trace_id), sum(ifNull(wasted_usd, 0)) FROM waste_findings "
        "WHERE (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL) GROUP BY detector"
    ).result_rows
    return {d: (n, traces, usd) for d, n, traces, usd in found}


def _forget_sums(store: Any, where: str) -> None:
    """Make these ledgers look written before they held their sums per detector (migration 0013)."""
    store.client.command(
        "ALTER TABLE trace_waste UPDATE detectors = [], detector_findings = [], detector_usd = [], "
        f"detector_tokens = [], detector_top_usd = [], detectors_recorded = 0 WHERE {where} "
        "SETTINGS mutations_sync = 1"
    )


def _by_model_from_spans(store: Any, model: str = "") -> dict[str, dict[str, Any]]:
    """Per model, from the billable spans and the latest findings one by one: traces, cost,
    findings, wasted tokens and each detector's wasted dollars."""
    only = " AND model = {m:String}" if model else ""
    out: dict[str, dict[str, Any]] = {}
    for name, traces, cost in store.client.query(
        "SELECT model, uniqExact(trace_id), sum(ifNull(cost_usd, 0)) FROM spans FINAL WHERE billable = 1"
        f"{only} AND trace_id IN (SELECT trace_id FROM trace_waste) GROUP BY model",
        parameters={"m": model},
    ).result_rows:
        out[name] = {"traces": traces, "total_usd": cost, "findings": 0, "wasted_tokens": 0, "buckets": {}}
    for name, detector, n, tokens, usd in store.client.query(
        "SELECT model, detector, count(), sum(wasted_tokens), sum(ifNull(wasted_usd, 0)) FROM waste_findings "
        f"WHERE (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL){only} "
        "GROUP BY model, detector",
        parameters={"m": model},
    ).result_rows:
        out[name]["findings"] += n
        out[name]["wasted_tokens"] += tokens
        out[name]["buckets"][detector] = usd
    return out


def _forget_model_sums(store: Any, where: str) -> None:
    """Make these ledgers look written before they held their sums per model (migration 0014)."""
    store.client.command(
        "ALTER TABLE trace_waste UPDATE call_models = [], call_model_usd = [], finding_models = [], "
        "finding_detectors = [], finding_counts = [], finding_usd = [], finding_tokens = [], "
        f"models_recorded = 0 WHERE {where} SETTINGS mutations_sync = 1"
    )


@pytest.mark.parametrize("older", ["none", "half", "all"])
def test_the_report_by_model_counts_every_call_and_finding_whatever_wrote_the_ledgers(web, store, older):
    """The report by model adds up each model's billable calls and the findings on them, whether
    the ledgers hold their sums per model or were written before they did (read one by one)."""
    _seed(store)
    if older != "none":
        _forget_model_sums(store, "1" if older == "all" else "cityHash64(trace_id) % 2 = 0")
    recorded = store.client.query("SELECT countIf(models_recorded = 1), count() FROM trace_waste FINAL")
    assert recorded.result_rows[0][0] == {"none": recorded.result_rows[0][1], "all": 0}.get(
        older, recorded.result_rows[0][0]
    )
    for model in ("", "gpt-4o"):
        expected = _by_model_from_spans(store, model)
        assert len(expected) >= (1 if model else 3)
        params = {"by": "model", **({"model": model} if model else {})}
        shown = {r["key"]: r for r in web.get("/waste.json", params=params).json()["rows"]}
        assert set(shown) == set(expected), model
        for name, e in expected.items():
            row = shown[name]
            assert (row["traces"], row["findings"], row["wasted_tokens"]) == (
                e["traces"],
                e["findings"],
                e["wasted_tokens"],
            ), name
            assert row["total_usd"] == pytest.approx(e["total_usd"], rel=1e-9, abs=1e-12)
            for detector, usd in e["buckets"].items():
                assert row["buckets"][detector] == pytest.approx(usd, rel=1e-9, abs=1e-12), (name, detector)
    assert any(r["wasted_usd"] > 0 for r in shown.values())


@pytest.mark.parametrize("older", ["none", "half", "all"])
def test_findings_per_detector_and_the_costliest_whatever_wrote_the_ledgers(web, store, older):
    """The report's detectors and costliest findings count every latest finding, whether the
    ledgers hold their sums per detector or were written before they did (read one by one)."""
    _seed(store)
    if older != "none":
        _forget_sums(store, "1" if older == "all" else "cityHash64(trace_id) % 2 = 0")
    expected = _detectors_from_findings(store)
    report = web.get("/waste.json").json()
    shown = {d["detector"]: d for d in report["detectors"]}
    assert {d: (r["findings"], r["traces"]) for d, r in shown.items()} == {
        d: (n, traces) for d, (n, traces, _) in expected.items()
    }
    for detector, (_, _, usd) in expected.items():
        assert shown[detector]["wasted_usd"] == pytest.approx(usd, rel=1e-9, abs=1e-12)
        example = shown[detector]["example_trace"]
        costliest = store.client.query(
            "SELECT max(ifNull(wasted_usd, 0)) FROM waste_findings WHERE detector = {d:String} AND "
            "(trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL)",
            parameters={"d": detector},
        ).result_rows[0][0]
        of_example = store.client.query(
            "SELECT max(ifNull(wasted_usd, 0)), groupArray(reason) FROM waste_findings WHERE detector = {d:String} "
            "AND trace_id = {t:String} AND (trace_id, analyzed_at) IN "
            "(SELECT trace_id, analyzed_at FROM trace_waste FINAL)",
            parameters={"d": detector, "t": example},
        ).result_rows[0]
        assert of_example[0] == costliest and shown[detector]["example_reason"] in of_example[1]
    everything = store.client.query(
        "SELECT trace_id, span_id, detector FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) "
        "ORDER BY ifNull(wasted_usd, 0) DESC, wasted_tokens DESC, trace_id, span_id"
    ).result_rows
    assert [(t["trace_id"], t["span_id"]) for t in report["top"]] == [(t, s) for t, s, _ in everything[:10]]
    reader = waste_reader(store.client)
    for detector in ("", *expected):
        for limit in (1, 3, 1000):
            listed = reader.findings(TraceFilter("default"), detector, limit)
            assert [(x["trace_id"], x["span_id"]) for x in listed] == [
                (t, s) for t, s, d in everything if detector in ("", d)
            ][:limit]


def test_traces_not_analysed_yet_are_counted(web, store):
    """Traces that arrived after the last analysis are counted as not analysed, on the waste
    report and in the trace list's totals."""
    _seed(store)
    assert web.get("/waste.json").json()["not_analyzed"] == 0
    rec = Recorder()
    for _ in range(2):
        productive(rec)
    rec.store(store.client)
    assert web.get("/waste.json").json()["not_analyzed"] == 2
    assert web.get("/traces.json").json()["totals"]["not_analyzed"] == 2
