"""Waste in the UI, its JSON and CSV twins, and `tokentrail waste`: the figures match the ledger."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.analysis.corpus import agent, call, duplicate, loop, oversized, productive, retry
from tests.web.data import Recorder, prices
from tokentrail.analysis.run import analyze_range
from tokentrail.cli import main as cli


def _seed(store: Any) -> dict[str, float]:
    rec = Recorder()
    for build in (productive, retry, loop, duplicate, oversized):
        build(rec)
    with agent(rec, "=HYPERLINK(\"http://evil\")"):  # a name a spreadsheet would run
        call(rec, "x", "gpt-4o", 900, 40, content="same")
        call(rec, "y", "gpt-4o", 900, 40, content="same")
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    rows = store.client.query("SELECT agent_name, total_usd - productive_usd FROM trace_waste FINAL").result_rows
    return dict(rows)


def _soup(response) -> Any:
    assert response.status_code == 200, response.text[:300]
    return BeautifulSoup(response.text, "html.parser")


def test_report_by_agent_and_model_adds_up(web, store):
    wasted = _seed(store)
    report = web.get("/waste.json", params={"by": "agent"}).json()
    by_agent = {r["key"]: r for r in report["rows"]}
    assert {k: round(v["wasted_usd"], 12) for k, v in by_agent.items()} == {k: round(v, 12) for k, v in wasted.items()}
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
    assert {r["agent"] for r in rows} == {k for k in wasted if not k.startswith("=")} | {"'=HYPERLINK(\"http://evil\")"}
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
    marked = [r.select_one(".wf-name").get_text() for r in page.select("#wf .wf-row") if r.select(".badge.waste")]
    assert marked == ["chat gpt-4o-mini [think1]", "chat gpt-4o-mini [think2]"]
    related = findings[0].select("a.span-link")[1]["data-span"]
    assert page.select_one(f'#wf .wf-row[data-span="{related}"] .wf-name').get_text() == "chat gpt-4o-mini [think0]"
    api = web.get(f"/trace/{trace['trace_id']}.json").json()
    assert math.isclose(api["ledger"]["buckets"]["loop"], trace["wasted_usd"], rel_tol=1e-9)
    span_id = findings[0].select_one("a.span-link")["data-span"]
    detail = _soup(web.get(f"/trace/{trace['trace_id']}/span/{span_id}", headers={"HX-Request": "true"}))
    assert "iteration 2 of 3" in detail.select_one(".waste-callout").get_text()


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
