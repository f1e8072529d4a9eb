"""The Developers pages: cost per successful coding task per developer, team, repository and coding
agent, the sessions, and one session's prompts on a time axis.

Seeded with Claude Code-shaped traces (`tests.support.coding`) through the collector's own path,
and outcomes on sessions and traces as `POST /api/outcomes` records them. Every expected figure is
worked out from the seeded tokens and the catalog's prices.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from bs4 import BeautifulSoup

from tests.support.coding import (
    ANN,
    BOB,
    CAROL,
    Call,
    claude_code,
    outcomes_of,
    prompt,
    seed_team,
    total,
)
from tests.support.coding_agents import emit, emit_metrics, ground_truth, realistic_session
from tests.support.collector import running_collector
from tests.support.recorder import Recorder, prices, support_run
from tokentrail.web.format import duration, usd
from tokentrail.web.pages.developers import IDLE_GAP_NS


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def test_claude_code_traces_become_tasks_of_a_developer_session_team_and_repository(store):
    seeded = seed_team(store, outcomes_of(store))
    found = {
        row[0]: row[1:]
        for row in store.client.query(
            "SELECT trace_id, coding_agent, team, repository, user_id, conversation_id, llm_calls, tool_calls "
            "FROM traces FINAL WHERE coding_agent != ''"
        ).result_rows
    }
    assert len(found) == 8
    a2 = seeded.ann[1]
    assert found[a2.trace_id] == ("claude_code", "payments", "acme/api", ANN, "sess-ann-1", 2, 1)
    assert found[seeded.carol[0].trace_id][:5] == (
        "claude_code",
        "search",
        "acme/search",
        CAROL,
        "sess-carol",
    )
    assert seeded.support not in found


def test_cost_per_successful_task_by_developer_with_outcomes_posted_to_the_api(web, store, settings):
    with running_collector(settings, store) as tt:

        def post(body: dict[str, Any]) -> None:
            reply = httpx.post(f"{tt.http_url}/api/outcomes", json=body)
            assert reply.status_code == 202, reply.text
            tt.flush()

        seeded = seed_team(store, post)
    report = web.get("/developers.json").json()
    rows = {r["key"]: r for r in report["rows"]}
    ann, bob, carol = seeded.ann, seeded.bob, seeded.carol
    per_success = {ANN: total(ann) / 3, CAROL: total(carol) / 2}  # ann's sess-ann-2 has no outcome
    # highest cost per successful task first; bob, without one, after the others
    assert [r["key"] for r in report["rows"]] == [*sorted(per_success, key=lambda k: -per_success[k]), BOB]
    for key, prompts, sessions, succeeded, failed in (
        (ANN, ann, 2, 3, 0),
        (BOB, bob, 1, 0, 2),
        (CAROL, carol, 1, 2, 0),
    ):
        row = rows[key]
        assert (row["sessions"], row["tasks"], row["succeeded"], row["failed"]) == (
            sessions,
            len(prompts),
            succeeded,
            failed,
        ), key
        assert _close(row["cost_usd"], total(prompts)), key
        assert _close(row["cost_per_task_usd"], total(prompts) / len(prompts)), key
        if succeeded:
            assert _close(row["cost_per_success_usd"], per_success[key]), key
        else:
            assert row["cost_per_success_usd"] is None
    # the failed request ann's second prompt made again is wasted; bob's work ended in a closed PR
    assert _close(rows[ANN]["wasted_usd"], ann[1].wasted_by_retries) and ann[1].wasted_by_retries > 0
    assert _close(rows[BOB]["wasted_usd"], total(bob))
    assert _close(rows[BOB]["waste_share"], 1.0) and rows[CAROL]["wasted_usd"] == 0
    # outcomes by name: the cost of the work they judge per success (a merged PR judges its session)
    outcomes = {(k, o["name"]): o for k, r in rows.items() for o in r["outcomes"]}
    merged = outcomes[(ANN, "pr_merged")]
    assert (merged["targets"], merged["succeeded"], merged["failed"]) == (1, 1, 0)
    assert _close(merged["cost_per_success_usd"], total(ann[:3]))
    assert _close(outcomes[(CAROL, "pr_merged")]["cost_per_success_usd"], total(carol))
    assert _close(outcomes[(CAROL, "tests_passed")]["cost_per_success_usd"], carol[1].cost)
    closed = outcomes[(BOB, "pr_merged")]
    assert (closed["succeeded"], closed["failed"], closed["cost_per_success_usd"]) == (0, 1, None)
    # the support bot's trace is no coding agent's task
    totals = report["totals"]
    everyone = ann + bob + carol
    assert (
        totals["tasks"],
        totals["succeeded"],
        totals["failed"],
        totals["sessions"],
        totals["developers"],
    ) == (
        8,
        5,
        2,
        4,
        3,
    )
    assert _close(totals["cost_per_success_usd"], total(everyone) / 5)
    assert _close(sum(d["cost_usd"] for d in report["trend"]), total(everyone))
    assert sum(d["tasks"] for d in report["trend"]) == 8


def test_groups_by_team_repository_and_coding_agent_and_the_order_by_waste(web, store):
    seeded = seed_team(store, outcomes_of(store))
    payments = seeded.ann + seeded.bob
    for by, keys in (("team", ("payments", "search")), ("repository", ("acme/api", "acme/search"))):
        rows = {r["key"]: r for r in web.get("/developers.json", params={"by": by}).json()["rows"]}
        assert set(rows) == set(keys), by
        assert (rows[keys[0]]["tasks"], rows[keys[0]]["developers"], rows[keys[0]]["succeeded"]) == (6, 2, 3)
        assert _close(rows[keys[0]]["cost_per_success_usd"], total(payments) / 3), by
        assert _close(rows[keys[1]]["cost_usd"], total(seeded.carol)), by
    (tool,) = web.get("/developers.json", params={"by": "coding_agent", "period": "week"}).json()["rows"]
    assert (tool["key"], tool["tasks"], tool["sessions"]) == ("claude_code", 8, 4)
    by_waste = web.get("/developers.json", params={"order": "waste"}).json()["rows"]
    assert [r["key"] for r in by_waste] == [BOB, ANN, CAROL]  # bob's all, ann's retry, carol nothing
    # one developer's tasks, via the filter every report takes
    (only,) = web.get("/developers.json", params={"user": CAROL, "by": "repository"}).json()["rows"]
    assert only["key"] == "acme/search" and only["tasks"] == 2
    for query, message in (
        ("by=model", "by must be one of developer, team, repository, coding_agent"),
        ("period=month", "period must be one of day, week"),
        ("order=tokens", "order must be one of per_success, waste"),
        ("coding_agent=cursor", "coding_agent must be one of any, claude_code, codex, gemini_cli"),
    ):
        reply = web.get("/developers.json?" + query)
        assert reply.status_code == 400 and message in reply.json()["error"], (query, reply.text)


def test_the_page_ranks_by_cost_per_successful_task_and_never_by_tokens(web, store):
    seeded = seed_team(store, outcomes_of(store))
    page: Any = BeautifulSoup(web.get("/developers").text, "html.parser")
    ranked = [tr["data-key"] for tr in page.select("tbody.ranked tr")]
    assert set(ranked) == {ANN, CAROL} and ranked[0] == CAROL  # carol's successes cost more each
    assert [tr["data-key"] for tr in page.select("tbody.unranked tr")] == [BOB]
    carol = page.select_one(f"tbody.ranked tr[data-key='{CAROL}']")
    assert carol.select_one("[data-field=per-success]").get_text(strip=True) == usd(total(seeded.carol) / 2)
    assert page.select_one("[data-total=tasks]").get_text(strip=True) == "8"
    assert page.select_one("[data-total=succeeded]").get_text(strip=True) == "5"
    headers = " ".join(th.get_text() for th in page.select("table.developers thead th")).lower()
    assert "token" not in headers and "per successful task" in headers
    merged = carol.select_one("[data-outcome=pr_merged]").get_text(" ", strip=True)
    assert merged.startswith("pr_merged 1") and usd(total(seeded.carol)) in merged
    # a developer's row opens their sessions
    link = carol.select_one("td.name a")["href"]
    assert link.startswith("/developers/sessions?") and parse_qs(urlsplit(link).query)["user"] == [CAROL]
    # the trend: one bar per day, its wasted part
    assert len(page.select("table.trend-bars tbody tr")) == len(web.get("/developers.json").json()["trend"])


def test_the_ledger_of_coding_sessions_leads_to_their_findings_only(web, store):
    seeded = seed_team(store, outcomes_of(store))
    ledger = web.get("/developers.json").json()["ledger"]
    everyone = seeded.ann + seeded.bob + seeded.carol
    assert ledger["traces"] == 8 and _close(ledger["total_usd"], total(everyone))
    assert _close(ledger["buckets"]["retry"], seeded.ann[1].wasted_by_retries)
    assert _close(ledger["buckets"]["no_outcome"], total(seeded.bob))
    page: Any = BeautifulSoup(web.get("/developers").text, "html.parser")
    cell = page.select_one(".coding-ledger tr[data-bucket=retry]")
    assert cell.select("td")[1].get_text(strip=True) == usd(seeded.ann[1].wasted_by_retries)
    findings: Any = BeautifulSoup(web.get(cell.select_one("a")["href"]).text, "html.parser")
    traces = {
        a["href"].split("/")[2].split("?")[0].split("#")[0]
        for a in findings.select("table.findings-list td.name a")
    }
    assert traces == {seeded.ann[1].trace_id}  # not the support bot's retry
    assert "a coding agent" in findings.select_one("[data-filter]").get_text()
    every = web.get("/findings.json", params={"detector": "retry"}).json()["findings"]
    assert {x["trace_id"] for x in every} == {seeded.ann[1].trace_id, seeded.support}


def test_the_csv_has_a_line_per_developer_in_the_page_order(web, store):
    seeded = seed_team(store, outcomes_of(store))
    reply = web.get("/developers.csv", params={"order": "waste"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(reply.text)))
    assert [line["developer"] for line in lines] == [BOB, ANN, CAROL]
    by_key = {line["developer"]: line for line in lines}
    assert float(by_key[ANN]["cost_usd"]) == pytest.approx(total(seeded.ann), abs=1e-8)
    assert float(by_key[ANN]["cost_per_success_usd"]) == pytest.approx(total(seeded.ann) / 3, abs=1e-8)
    assert by_key[BOB]["cost_per_success_usd"] == "" and by_key[BOB]["failed"] == "2"
    assert by_key[CAROL]["pr_merged succeeded"] == "1"
    assert float(by_key[CAROL]["tests_passed cost_per_success_usd"]) == pytest.approx(
        seeded.carol[1].cost, abs=1e-8
    )
    assert by_key[BOB]["tests_passed succeeded"] == "0"


def test_sessions_list_latest_first_with_their_outcomes(web, store):
    seeded = seed_team(store, outcomes_of(store))
    found = web.get("/developers/sessions.json").json()
    sessions = {s["session_id"]: s for s in found["sessions"]}
    assert set(sessions) == {"sess-ann-1", "sess-ann-2", "sess-bob", "sess-carol"}
    last = {
        s: max(p.end_ns for p in ps)
        for s, ps in (
            ("sess-ann-1", seeded.ann[:3]),
            ("sess-ann-2", seeded.ann[3:]),
            ("sess-bob", seeded.bob),
            ("sess-carol", seeded.carol),
        )
    }
    assert [s["session_id"] for s in found["sessions"]] == sorted(last, key=lambda s: -last[s])
    first = sessions["sess-ann-1"]
    assert (first["prompts"], first["succeeded"], first["developers"], first["teams"]) == (
        3,
        3,
        [ANN],
        ["payments"],
    )
    assert _close(first["cost_usd"], total(seeded.ann[:3]))
    assert [(o["name"], o["ok"]) for o in first["outcomes"]] == [("pr_merged", 1)]
    assert [(o["name"], o["ok"]) for o in sessions["sess-bob"]["outcomes"]] == [("pr_merged", 0)]
    paged = web.get("/developers/sessions.json", params={"limit": 3}).json()
    rest = web.get("/developers/sessions.json", params=paged["next"]).json()
    assert [s["session_id"] for s in paged["sessions"] + rest["sessions"]] == [
        s["session_id"] for s in found["sessions"]
    ]
    only = web.get("/developers/sessions.json", params={"team": "search"}).json()["sessions"]
    assert [s["session_id"] for s in only] == ["sess-carol"]


def test_a_session_timeline_shows_each_prompt_and_the_idle_gaps(web, store):
    seeded = seed_team(store, outcomes_of(store))
    a1, a2, a3 = seeded.ann[:3]
    page: Any = BeautifulSoup(web.get("/developers/sessions/sess-ann-1").text, "html.parser")
    rows = page.select("table.timeline tr.prompt")
    assert [r["data-trace"] for r in rows] == [a1.trace_id, a2.trace_id, a3.trace_id]
    idle = page.select("table.timeline tr.idle")
    assert len(idle) == 1  # the ten minutes before a2; the half minute before a3 is no idle gap
    gap = a2.start_ns - a1.end_ns
    assert gap >= IDLE_GAP_NS > a3.start_ns - a2.end_ns
    assert int(idle[0]["data-gap-ns"]) == gap and idle[0].find_next_sibling("tr")["data-trace"] == a2.trace_id
    assert duration(gap) in idle[0].get_text()

    def cell(row: Any, field: str) -> str:
        return str(row.select_one(f"[data-field={field}]").get_text(" ", strip=True))

    second = rows[1]
    assert cell(second, "cost") == usd(a2.cost)
    assert cell(second, "llm-calls") == "2" and cell(second, "tool-calls") == "1"
    assert cell(second, "errors") == "1 / 1"  # one failed request, made again
    assert cell(second, "wasted") == usd(a2.wasted_by_retries) and cell(second, "findings") == "1"
    assert cell(second, "duration") == duration(a2.end_ns - a2.start_ns)
    assert "success" in cell(second, "outcome")  # the merged pull request judges the session's prompts
    assert second.select_one("td.num a")["href"] == f"/trace/{a2.trace_id}"
    # bars on one time axis: in start order, none past its end
    lefts = [float(r.select_one(".bar")["style"].split("left:")[1].split("%")[0]) for r in rows]
    assert lefts[0] == 0 and lefts == sorted(lefts) and lefts[2] < 100
    span = a3.end_ns - a1.start_ns
    assert page.select_one("[data-total=span]").get_text(strip=True) == duration(span)
    busy = sum(p.end_ns - p.start_ns for p in (a1, a2, a3))
    assert page.select_one("[data-total=idle]").get_text(strip=True) == duration(span - busy)
    assert page.select_one("[data-outcome=pr_merged]") is not None
    # carol's tests_passed is on one trace: a badge on that prompt only
    carol: Any = BeautifulSoup(web.get("/developers/sessions/sess-carol").text, "html.parser")
    badges = [cell(r, "outcome") for r in carol.select("table.timeline tr.prompt")]
    assert "tests_passed" not in badges[0] and "tests_passed" in badges[1]
    # the JSON twin holds the same prompts
    twin = web.get("/developers/sessions/sess-ann-1.json").json()
    assert [p["trace_id"] for p in twin["prompts"]] == [a1.trace_id, a2.trace_id, a3.trace_id]
    assert [p["gap_ns"] for p in twin["prompts"]] == [None, gap, a3.start_ns - a2.end_ns]


def test_a_long_session_pages_and_keeps_its_numbers_and_gaps(web, store):
    seeded = seed_team(store, outcomes_of(store))
    a1, a2 = seeded.ann[:2]
    first = web.get("/developers/sessions/sess-ann-1.json", params={"limit": 1}).json()
    assert [p["trace_id"] for p in first["prompts"]] == [a1.trace_id] and first["next"]
    second: Any = BeautifulSoup(
        web.get("/developers/sessions/sess-ann-1", params=first["next"]).text, "html.parser"
    )
    (row,) = second.select("table.timeline tr.prompt")[:1]
    assert row["data-trace"] == a2.trace_id and row.select_one("td.num a").get_text() == "2"
    assert (
        int(second.select_one("tr.idle")["data-gap-ns"]) == a2.start_ns - a1.end_ns
    )  # across the page break
    unknown: Any = BeautifulSoup(web.get("/developers/sessions/no-such-session").text, "html.parser")
    assert "No prompts of a coding-agent session" in unknown.select_one(".empty-filter").get_text()
    # the support bot's conversation is no coding-agent session
    assert web.get("/developers/sessions/conv-support.json").json()["session"] is None


def test_another_projects_data_never_shows(web, store):
    seeded = seed_team(store, outcomes_of(store))
    other = claude_code("payments", "acme/api")
    theirs = prompt(other, "sess-ann-1", "dave@other.example", "d1", [Call(9000, 3000, 50000)])
    load_project = "other"
    other.store(store.client, project=load_project)
    outcomes_of(store, load_project)(
        {"conversation_id": "sess-ann-1", "name": "pr_reverted", "success": False}
    )
    mine = web.get("/developers.json").json()
    assert "dave@other.example" not in {r["key"] for r in mine["rows"]}
    assert mine["totals"]["tasks"] == 8 and mine["totals"]["succeeded"] == 5
    session = web.get("/developers/sessions/sess-ann-1.json").json()
    assert [p["trace_id"] for p in session["prompts"]] == [p.trace_id for p in seeded.ann[:3]]
    assert [o["name"] for o in session["outcomes"]] == ["pr_merged"]
    theirs_report = web.get("/developers.json", params={"project": "other"}).json()
    assert [(r["key"], r["tasks"], r["succeeded"], r["failed"]) for r in theirs_report["rows"]] == [
        ("dave@other.example", 1, 0, 1)
    ]
    assert _close(theirs_report["rows"][0]["cost_usd"], theirs.cost)
    theirs_session = web.get("/developers/sessions/sess-ann-1.json", params={"project": "other"}).json()
    assert [p["trace_id"] for p in theirs_session["prompts"]] == [theirs.trace_id]


HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
BREAKOUT = '"><svg onload="window.__pwned=3"></svg>'


def test_hostile_names_are_shown_as_text(web, store):
    rec = claude_code(BREAKOUT, HOSTILE)
    prompt(rec, f"sess{BREAKOUT}", HOSTILE, "h1", [Call(1000, 100)])
    prompt(rec, "sess-formula", '=HYPERLINK("http://x")', "h2", [Call(1000, 100)])
    rec.store(store.client)
    outcomes_of(store)({"conversation_id": f"sess{BREAKOUT}", "name": f"merged{HOSTILE}", "success": True})
    pages = [
        "/developers",
        "/developers?by=team",
        "/developers?by=repository",
        "/developers/sessions",
        "/developers/sessions/" + quote(f"sess{BREAKOUT}", safe=""),
    ]
    for path in pages:
        reply = web.get(path)
        assert reply.status_code == 200, (path, reply.text[:300])
        page: Any = BeautifulSoup(reply.text, "html.parser")
        assert not page.select("main script, main img, main svg"), path
        assert not any(a.get("onerror") or a.get("onload") for a in page.find_all(True)), path
        text = page.select_one("main").get_text()
        assert HOSTILE[:30] in text or BREAKOUT[:20] in text, path
    session: Any = BeautifulSoup(web.get(pages[-1]).text, "html.parser")
    assert session.select_one("[data-field=developer]").get_text().startswith(HOSTILE[:50])
    assert session.select_one("[data-field=repository]").get_text().startswith(HOSTILE[:50])
    lines = list(csv.reader(io.StringIO(web.get("/developers.csv").text)))
    assert ['\'=HYPERLINK("http://x")'] in [line[:1] for line in lines]  # no formula for a spreadsheet
    assert any(cell == f"merged{HOSTILE} succeeded" for cell in lines[0])


def test_without_coding_agent_data_the_pages_say_how_to_send_it(web, store):
    rec = Recorder()
    support_run(rec)  # data, but no coding agent's
    rec.store(store.client)
    for path in ("/developers", "/developers/sessions"):
        page: Any = BeautifulSoup(web.get(path).text, "html.parser")
        empty = page.select_one("[data-empty=coding]")
        assert empty is not None, path
        assert "Coding agents" in empty.get_text() and "OTEL_RESOURCE_ATTRIBUTES" in empty.get_text()
    assert web.get("/developers.json").json()["has_data"] is False
    nav = BeautifulSoup(web.get("/traces").text, "html.parser").select_one("header nav")
    assert nav is not None and nav.select_one("a[href='/developers']") is not None


def test_the_developer_is_the_email_when_the_tool_also_sends_its_install_id(store):
    """Claude Code's `user.id` is an anonymous install id: the developer is the account e-mail."""
    rec = claude_code("payments", "acme/api")
    prompt(rec, "sess-1", ANN, "p1", [Call(100, 10)], user__id="3f1c0d9e-install")
    rec.store(store.client)
    assert store.client.query("SELECT user_id FROM traces FINAL").result_rows == [(ANN,)]


def test_the_tools_metrics_stand_beside_the_traces_and_say_how_far_apart(web, store, settings):
    """Claude Code sends its events and its metrics (cost, tokens, commits); the page shows the
    metrics' cost beside the traces' and how far apart they are. Both come from one scenario, so
    they agree: the cost the tool reported per request, summed either way."""
    session = realistic_session("claude_code", seed=4)
    truth = ground_truth(session)
    with running_collector(settings, store, pricer=prices()) as run:
        emit(session, run.http_url, metrics=True)
        run.flush()
    data = web.get("/developers.json?range=30d").json()
    metrics = data["metrics"]
    assert truth.totals.cost_usd is not None
    # the reported costs of every request, the failed and the exhausted included (all $0 then)
    assert math.isclose(metrics["traces_usd"], truth.totals.cost_usd, rel_tol=1e-9)
    assert math.isclose(metrics["metrics_usd"], truth.totals.cost_usd, rel_tol=1e-6)
    assert abs(metrics["apart"]) < 1e-6 and metrics["days"] == []
    [row] = metrics["rows"]
    assert row["key"] == "dana@acme.example" and math.isclose(row["traces_cost_usd"], truth.totals.cost_usd)
    panel = BeautifulSoup(web.get("/developers?range=30d").text, "html.parser").select_one(
        "section.from-metrics"
    )
    assert panel is not None
    shown = {el["data-field"]: el.get_text() for el in panel.select("[data-field]")}
    assert shown["metrics-usd"] == usd(metrics["metrics_usd"])
    assert shown["traces-usd"] == usd(metrics["traces_usd"])
    assert shown["apart"] in ("+0.0%", "-0.0%")


def test_a_team_that_sends_metrics_only_still_sees_its_cost_per_developer(web, store, settings):
    session = realistic_session("gemini_cli", seed=5)
    with running_collector(settings, store, pricer=prices()) as run:
        emit_metrics(session, run.http_url)
        run.flush()
    data = web.get("/developers.json?range=30d").json()
    assert data["rows"] == []  # no traces
    [row] = data["metrics"]["rows"]
    assert row["key"] == "dana@acme.example" and row["cost_usd"] > 0
    assert data["metrics"]["traces_usd"] == 0 and data["metrics"]["apart"] is None
    page = BeautifulSoup(web.get("/developers?range=30d").text, "html.parser")
    assert page.select_one("section.from-metrics tr[data-key='dana@acme.example']") is not None


def test_the_session_axis_dates_its_first_label_and_where_the_day_changes():
    from tokentrail.web.pages.developers import _ticks

    def at(day: int, hour: int, minute: int = 0) -> int:
        return int(datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()) * 10**9

    assert [t["label"] for t in _ticks(at(29, 9), at(29, 17))] == [
        "09:00",
        "11:00",
        "13:00",
        "15:00",
        "17:00",
    ]
    assert [t["label"] for t in _ticks(at(29, 21), at(30, 5))] == [
        "11-29 21:00",
        "23:00",
        "11-30 01:00",
        "03:00",
        "05:00",
    ]
    assert [t["pct"] for t in _ticks(at(29, 21), at(30, 5))] == [0, 25, 50, 75, 100]
    short = [t["label"] for t in _ticks(at(29, 9), at(29, 9, 1))]
    assert short[0] == "09:00:00" and short[-1] == "09:01:00"
