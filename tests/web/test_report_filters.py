"""The trace filters on the reports: /waste, /findings and /costs apply every filter they accept,
and their figures are those of the traces the filter selects (worked out here from the stored
rows, not from the reports' own queries)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from bs4 import BeautifulSoup

from tests.support.recorder import Recorder, prices
from tokentrail.analysis.run import analyze_range
from tokentrail.web.format import usd


def _run(rec: Recorder, agent: str, conversation: str, user: str, fail: bool, tool: str, model: str) -> str:
    """An agent run: a call to `model`, a tool, (when it fails) a failed gpt-4o call retried, and
    a gpt-4o-mini call."""
    with rec.agent_run(agent, conversation, user, fail) as root:
        rec.chat(model, "openai", 1500, 90, agent=agent)
        with rec.span(
            f"execute_tool {tool}", 20, gen_ai__operation__name="execute_tool", gen_ai__tool__name=tool
        ):
            pass
        if fail:
            rec.chat("gpt-4o", "openai", 2000, 0, agent=agent, error="RateLimitError")
            rec.chat("gpt-4o", "openai", 2000, 400, agent=agent, tokentrail__retry__attempt=2)
        rec.chat("gpt-4o-mini", "openai", 700, 40, agent=agent)
        return format(root.get_span_context().trace_id, "032x")


@pytest.fixture
def traces(store: Any) -> dict[str, str]:
    """Trace a (service svc-a, agent alpha, gpt-4o, failed and retried) and trace b (svc-b, beta,
    gpt-4.1, quiet); both call gpt-4o-mini."""
    a, b = Recorder(service="svc-a"), Recorder(service="svc-b")
    ids = {
        "a": _run(a, "alpha", "conv-a", "user-a", True, "search_orders", "gpt-4o"),
        "b": _run(b, "beta", "conv-b", "user-b", False, "lookup_refund", "gpt-4.1"),
    }
    a.store(store.client)
    b.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    return ids


def _query(store: Any, sql: str, ids: set[str], model: str = "") -> dict[str, Any]:
    result = store.client.query(sql, parameters={"ids": sorted(ids), "model": model})
    return dict(zip(result.column_names, result.result_rows[0], strict=True))


def _stored(store: Any, ids: set[str], model: str = "") -> dict[str, Any]:
    """What the stored rows say of the traces `ids`: their cost, their ledger and findings (on
    the calls of `model`, if given)."""
    costs = _query(
        store,
        "SELECT count() AS n, sum(cost_usd) AS cost FROM traces FINAL WHERE trace_id IN {ids:Array(String)}",
        ids,
    )
    ledger = _query(
        store,
        "SELECT count() AS n, sum(total_usd) AS total, sum(total_usd - productive_usd) AS wasted "
        "FROM trace_waste FINAL WHERE trace_id IN {ids:Array(String)}",
        ids,
    )
    findings = _query(
        store,
        "SELECT count() AS n FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) AND trace_id IN {ids:Array(String)} "
        "AND ({model:String} = '' OR model = {model:String})",
        ids,
        model,
    )
    return {
        "tasks": costs["n"],
        "cost": costs["cost"],
        **{f"ledger_{k}": v for k, v in ledger.items()},
        "findings": findings["n"],
    }


def _reports(web: Any, params: dict[str, str]) -> dict[str, Any]:
    found = {}
    for page in ("/waste.json", "/costs.json", "/findings.json"):
        response = web.get(page, params=params)
        assert response.status_code == 200, (page, params, response.text[:300])
        found[page] = response.json()
    return found


def _assert_reports_cover(web: Any, store: Any, params: dict[str, str], ids: set[str]) -> None:
    want = _stored(store, ids, params.get("model", ""))
    got = _reports(web, params)
    waste, costs, findings = got["/waste.json"], got["/costs.json"], got["/findings.json"]
    assert want["tasks"] == want["ledger_n"] == len(ids) > 0, params
    assert waste["totals"]["traces"] == len(ids), params
    assert math.isclose(waste["totals"]["total_usd"], want["ledger_total"], rel_tol=1e-9), params
    assert math.isclose(waste["totals"]["wasted_usd"], want["ledger_wasted"], rel_tol=1e-9, abs_tol=1e-15), (
        params
    )
    assert costs["totals"]["tasks"] == len(ids), params
    assert math.isclose(costs["totals"]["cost_usd"], want["cost"], rel_tol=1e-9), params
    assert {x["trace_id"] for x in findings["findings"]} <= ids, params
    assert len(findings["findings"]) == want["findings"], params


def _cost_of(store: Any, trace_id: str) -> float:
    return float(
        _query(
            store,
            "SELECT sum(cost_usd) AS c FROM traces FINAL WHERE trace_id IN {ids:Array(String)}",
            {trace_id},
        )["c"]
    )


def test_every_filter_selects_its_traces_on_each_report(web, store, traces):
    a, b = traces["a"], traces["b"]
    both = {a, b}
    _assert_reports_cover(web, store, {}, both)
    dearer = a if _cost_of(store, a) > _cost_of(store, b) else b
    threshold = (_cost_of(store, a) + _cost_of(store, b)) / 2
    for params, selected in [
        ({"service": "svc-b"}, {b}),
        ({"agent": "alpha"}, {a}),
        ({"model": "gpt-4o"}, {a}),
        ({"model": "gpt-4o-mini"}, both),  # both traces called it; findings: its calls' only
        ({"status": "error"}, {a}),
        ({"status": "ok"}, {b}),
        ({"user": "user-b"}, {b}),
        ({"conversation": "conv-a"}, {a}),
        ({"q": "refund"}, {b}),
        ({"min_cost": repr(threshold)}, {dearer}),
        ({"has_waste": "1"}, {a}),
        ({"agent": "beta", "user": "user-b", "range": "all"}, {b}),
    ]:
        _assert_reports_cover(web, store, params, selected)
    # a filter nothing matches selects nothing, on every report
    nothing = _reports(web, {"agent": "nobody"})
    assert nothing["/waste.json"]["totals"]["traces"] == 0 and nothing["/waste.json"]["rows"] == []
    assert nothing["/costs.json"]["totals"]["tasks"] == 0 and nothing["/costs.json"]["rows"] == []
    assert nothing["/findings.json"]["findings"] == []


def _spent_on(store: Any, model: str) -> float:
    result = store.client.query(
        "SELECT sum(cost_usd) FROM spans FINAL WHERE billable = 1 AND model = {m:String}",
        parameters={"m": model},
    )
    return float(result.result_rows[0][0])


def test_the_model_filter_keeps_that_models_calls_per_model_and_per_finding(web, store, traces):
    mini = _spent_on(store, "gpt-4o-mini")
    assert mini > 0 and _spent_on(store, "gpt-4o") > 0 and _spent_on(store, "gpt-4.1") > 0
    (row,) = web.get("/waste.json", params={"by": "model", "model": "gpt-4o-mini"}).json()["rows"]
    assert row["key"] == "gpt-4o-mini" and row["traces"] == 2
    assert math.isclose(row["total_usd"], mini, rel_tol=1e-9)
    every = {r["key"] for r in web.get("/waste.json", params={"by": "model"}).json()["rows"]}
    assert every == {"gpt-4o", "gpt-4o-mini", "gpt-4.1"}
    (cost,) = web.get("/costs.json", params={"by": "model", "model": "gpt-4o-mini"}).json()["rows"]
    assert cost["key"] == "gpt-4o-mini" and cost["tasks"] == 2
    assert math.isclose(cost["cost_usd"], mini, rel_tol=1e-9)
    # findings are per call: only those charged to the model's calls
    stored = store.client.query(
        "SELECT model, count() FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) GROUP BY model"
    ).result_rows
    per_model = dict(stored)
    assert per_model.get("gpt-4o", 0) > 0  # the retried call's
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1"):
        found = web.get("/findings.json", params={"model": model}).json()["findings"]
        assert {x["model"] for x in found} <= {model} and len(found) == per_model.get(model, 0)
        detectors = web.get("/waste.json", params={"model": model}).json()["detectors"]
        assert sum(d["findings"] for d in detectors) == per_model.get(model, 0)


def _soup(response: Any) -> Any:  # Any: bs4's Optional returns would need a check per selector
    assert response.status_code == 200, response.text[:300]
    return BeautifulSoup(response.text, "html.parser")


def test_report_pages_show_and_keep_their_filters(web, store, traces):
    page = _soup(web.get("/costs", params={"user": "user-b", "by": "service"}))
    assert page.select_one("[data-total=tasks]").get_text(strip=True) == "1"
    assert [td.get_text(strip=True) for td in page.select("table.costs tbody td.name")] == ["svc-b"]
    form = page.select_one("form.filters")
    assert {i["name"]: i["value"] for i in form.select("input[type=hidden]")} == {"user": "user-b"}
    assert "user-b" in page.select_one("[data-filter]").get_text(" ", strip=True)
    assert "user=user-b" in page.select_one(".exports a")["href"]
    waste = _soup(web.get("/waste", params={"agent": "alpha"}))
    ledger = _stored(store, {traces["a"]})
    assert waste.select_one("[data-total=wasted]").get_text(strip=True) == usd(ledger["ledger_wasted"])
    link = waste.select_one("table.waste-by td.name a")["href"]
    assert link.startswith("/traces?") and "agent=alpha" in link
    listed = web.get(link.replace("/traces", "/traces.json")).json()["traces"]
    assert [t["trace_id"] for t in listed] == [traces["a"]]
    findings = _soup(web.get("/findings", params={"status": "error"}))
    linked = [a["href"].split("#")[0] for a in findings.select("table.findings-list td.name a")]
    assert len(linked) == _stored(store, {traces["a"]})["findings"] > 0
    assert set(linked) == {f"/trace/{traces['a']}"}
    assert web.get("/costs.json", params={"sort": "cost"}).status_code == 400
