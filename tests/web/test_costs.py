"""The costs page: cost per task type, per successful task, the spread, and right-sizing advice."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bs4 import BeautifulSoup

from tests.support.recorder import Recorder, prices
from tokentrail.analysis.run import analyze_range


def _task(rec: Recorder, task_type: str, model: str, inp: int, out: int, success: bool | None) -> None:
    attrs: dict[str, Any] = {
        "gen_ai__operation__name": "invoke_agent",
        "gen_ai__agent__name": f"{task_type}-agent",
        "tokentrail__task__type": task_type,
    }
    if success is not None:
        attrs.update(tokentrail__outcome__name="done", tokentrail__outcome__success=success)
    with rec.span(f"invoke_agent {task_type}", **attrs):
        rec.chat(model, "openai", inp, out)


def _seed(store: Any) -> None:
    rec = Recorder()
    for i, ok in enumerate([True, True, False, None, True]):
        _task(rec, "triage", "gpt-4o", 1000 + 500 * i, 100, ok)
    for i in range(3):
        _task(rec, "classify", "gpt-4.1", 1500 + i, 2, True)  # one-word answers on a premium model
    _task(rec, "classify", "gpt-4o-mini", 1500, 2, True)
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())


def test_cost_per_task_and_per_successful_task(web, store):
    _seed(store)
    report = web.get("/costs.json").json()
    rows = {r["key"]: r for r in report["rows"]}
    triage = rows["triage"]
    costs = [
        prices().cost("openai", "gpt-4o", input_tokens=1000 + 500 * i, output_tokens=100) or 0.0
        for i in range(5)
    ]
    assert all(costs)
    assert (triage["tasks"], triage["succeeded"], triage["failed"]) == (5, 3, 1)
    assert math.isclose(triage["cost_usd"], sum(costs), rel_tol=1e-9)
    assert math.isclose(triage["cost_per_success_usd"], sum(costs) / 3, rel_tol=1e-9)  # all spend / successes
    assert math.isclose(triage["p50_usd"], statistics.median(costs), rel_tol=1e-9)
    assert triage["success_rate"] == 0.75
    assert triage["models"] == ["gpt-4o"]
    assert report["totals"]["tasks"] == 9 and report["totals"]["succeeded"] == 7
    by_model = {r["key"]: r for r in web.get("/costs.json", params={"by": "model"}).json()["rows"]}
    assert by_model["gpt-4.1"]["tasks"] == 3 and by_model["gpt-4.1"]["succeeded"] == 3
    page: Any = BeautifulSoup(web.get("/costs").text, "html.parser")
    assert page.select_one("[data-total=tasks]").get_text(strip=True) == "9"
    cells = {tr.select_one("td").get_text(strip=True): tr for tr in page.select("table.costs tbody tr")}
    assert cells["triage"].select("td.num strong")[0].get_text() == f"${sum(costs) / 3:.4f}"
    assert web.get("/costs.json", params={"by": "colour"}).status_code == 400


def test_right_sizing_names_the_premium_step_and_its_saving(web, store):
    _seed(store)
    report = web.get("/costs.json", params={"range": "7d"}).json()
    advice = {(a["task"], a["model"]): a for a in report["advice"]}
    premium = advice[("classify", "gpt-4.1")]
    found = store.client.query(
        "SELECT sum(wasted_usd) FROM waste_findings WHERE detector = 'oversized_model'"
    ).result_rows[0][0]
    assert (
        premium["calls"] == 3
        and premium["mean_output"] == 2
        and math.isclose(premium["oversized_usd"], found)
    )
    assert math.isclose(premium["monthly_saving_usd"], found * 30 / 7, rel_tol=1e-6)
    assert "gpt-4o-mini" in premium["suggestion"]
    assert ("classify", "gpt-4o-mini") in advice  # the task type uses two models: both shown for comparison
    assert ("triage", "gpt-4o") not in advice


def test_the_task_type_can_come_from_an_attribute_the_user_names(store):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tokentrail.collector.writer import load

    rec = Recorder()
    with rec.span(
        "invoke_agent x",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="x",
        app__workflow="refunds",
    ):
        rec.chat("gpt-4o", "openai", 100, 10)
    with rec.span("invoke_agent y", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="y"):
        rec.chat("gpt-4o", "openai", 100, 10)
    request = encode_spans(rec.finished()).SerializeToString()
    load(store.client, "default", [request], prices(), task_attribute="app.workflow")
    rows = store.client.query(
        "SELECT agent_name, task_type FROM traces FINAL ORDER BY agent_name"
    ).result_rows
    assert rows == [("x", "refunds"), ("y", "")]  # y falls back to its agent name on the costs page


def test_costs_by_team_from_resource_attributes(store, settings):
    from fastapi.testclient import TestClient

    from tokentrail.web.app import create_app

    for team, n in (("payments", 2), ("support", 1)):
        rec = Recorder(service=f"{team}-bot", resource={"team": team})
        for _ in range(n):
            _task(rec, "triage", "gpt-4o", 1000, 100, True)
        rec.store(store.client)
    web = TestClient(create_app(settings, store))
    rows = {
        r["key"]: (r["tasks"], r["succeeded"])
        for r in web.get("/costs.json", params={"by": "team"}).json()["rows"]
    }
    assert rows == {"payments": (2, 2), "support": (1, 1)}
