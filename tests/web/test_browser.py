"""The UI in headless Chromium: the everyday journey, and hostile span content.

Screenshots land in test-artifacts/ (kept by CI) for a person to look at.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.recorder import Recorder, support_run

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_list_filter_open_trace_and_read_a_span(live, store, browser_page):
    rec = Recorder()
    for i in range(4):
        support_run(rec, agent="triage" if i % 2 else "billing", conversation=f"conv-{i}", fail=i == 3)
    rec.store(store.client)
    page = browser_page
    page.goto(live + "/")
    assert page.locator("table.traces tbody tr").count() == 4
    assert page.locator("[data-total=traces]").inner_text() == "4"
    _shot(page, "traces-list")

    page.select_option("select[name=agent]", "triage")  # htmx swaps the results, the URL follows
    page.wait_for_url("**agent=triage**")
    expect(page.locator("table.traces tbody tr")).to_have_count(2)
    assert page.locator("[data-total=traces]").inner_text() == "2"
    page.select_option("select[name=status]", "error")
    expect(page.locator("table.traces tbody tr")).to_have_count(1)
    _shot(page, "traces-filtered")

    page.locator("table.traces td.name > a").first.click()
    page.wait_for_selector("#wf .wf-row")
    assert page.locator("#wf .wf-row").count() == 6
    assert page.locator("#wf .wf-row.err").count() == 2
    page.locator("#wf .wf-row").nth(5).click()  # the retried call that succeeded
    page.wait_for_selector("#detail .span-detail")
    assert page.locator("#detail [data-field=input_tokens]").inner_text() == "1,400 of which 1,024 cached"
    assert "It ships tomorrow." in page.locator("#detail .chat").inner_text()
    assert "#span-" in page.url
    _shot(page, "trace-with-span")

    page.locator("#wf .wf-row").first.locator(".wf-toggle").click()  # collapse the agent run
    assert page.locator("#wf .wf-row:visible").count() == 1
    page.locator("#wf .wf-row").first.locator(".wf-toggle").click()
    assert page.locator("#wf .wf-row:visible").count() == 6
    page.reload()  # the selected span survives a reload (the URL names it)
    page.wait_for_selector("#detail .span-detail")
    assert page.locator("#wf .wf-row.selected").count() == 1
    assert page.problems == []


HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
BREAKOUT = '"><svg onload="window.__pwned=3"></svg><a href="javascript:window.__pwned=4">x</a>'


def _hostile_trace(store: Any) -> str:
    rec = Recorder()
    extra: dict[str, Any] = {f"k{BREAKOUT}": BREAKOUT, "huge": "y" * 1_000_000, "unbroken": "z" * 5000}
    with rec.span(
        f"invoke_agent {HOSTILE}",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name=BREAKOUT,
        gen_ai__conversation__id=BREAKOUT,
    ) as root:
        rec.chat(
            f"gpt-4o{BREAKOUT}",
            "openai",
            100,
            10,
            agent=BREAKOUT,
            messages=[
                {"role": f"user{BREAKOUT}", "parts": [{"type": "text", "content": HOSTILE * 3}]},
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": BREAKOUT, "name": HOSTILE, "arguments": {"q": HOSTILE}}
                    ],
                },
            ],
            output=[{"role": "assistant", "parts": [{"type": "text", "content": "x" * 300_000}]}],
            **extra,
        )
        with rec.span(
            "W" * 3000,
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name=HOSTILE,
            gen_ai__tool__call__arguments=HOSTILE,
            gen_ai__tool__call__result=BREAKOUT,
        ):
            pass
    rec.store(store.client)
    trace_id = format(root.get_span_context().trace_id, "032x")
    # Another writer may have stored bytes that are not UTF-8 (the collector cannot: protobuf
    # refuses them), so put some in directly.
    store.client.command(
        "INSERT INTO spans (project, trace_id, span_id, parent_span_id, name, start_time, end_time, duration_ns, "
        "attributes, step_kind) SELECT 'default', {t:String}, 'ffffffffffffffff', '', "
        "concat('bad ', unhex('FFFE'), ' utf8'), now64(9), now64(9), 1000, map('bytes', unhex('C328A0A1')), 'tool'",
        parameters={"t": trace_id},
    )
    return trace_id


def test_hostile_content_is_shown_as_text_and_runs_nothing(live, store, browser_page):
    trace_id = _hostile_trace(store)
    page = browser_page
    for path in ("/", "/conversations?range=all", f"/trace/{trace_id}"):
        page.goto(live + path)
        assert page.evaluate("window.__pwned") is None, path
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1400, (path, width)  # nothing pushes the layout sideways
    assert HOSTILE[:40] in page.locator("h1").inner_text()
    rows = page.locator("#wf .wf-row")
    assert rows.count() == 4
    for i in range(rows.count()):
        rows.nth(i).click()
        page.wait_for_selector(f"#detail .span-detail[data-span='{rows.nth(i).get_attribute('data-span')}']")
        assert page.evaluate("window.__pwned") is None
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400
        if i == 1:
            _shot(page, "hostile-model-span")
            detail = page.locator("#detail").inner_text()
            assert HOSTILE in detail and "more characters (full text in the JSON view)" in detail
            assert page.locator("#detail svg, #detail img, #detail script:not([src])").count() == 0
    assert "bad \ufffd" in page.locator("#wf").inner_text()
    _shot(page, "hostile-trace")
    assert page.problems == []


def test_waste_report_leads_to_the_span_that_wasted(live, store, browser_page):
    from tests.support.corpus import duplicate, loop, oversized, productive, retry
    from tests.support.recorder import prices
    from tokentrail.analysis.run import analyze_range

    rec = Recorder()
    for build in (productive, retry, loop, duplicate, oversized):
        build(rec)
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    page = browser_page
    page.goto(live + "/overview")
    assert page.locator(".ledger-bar span").count() >= 4
    _shot(page, "overview")
    page.goto(live + "/waste?by=agent")
    _shot(page, "waste-report")
    top = page.locator("table.top-findings tbody tr").first
    detector = top.locator("td").first.inner_text()
    top.locator("td.name a").click()  # the costliest finding: its trace, its span selected
    page.wait_for_selector("#detail .span-detail")
    assert page.locator("#wf .wf-row.selected .badge.waste").first.inner_text() == detector
    assert detector in page.locator("#detail .waste-callout").inner_text()
    _shot(page, "trace-with-finding")
    page.goto(live + "/findings")  # every finding with its evidence: the rule and numbers open on demand
    first = page.locator("table.findings-list tbody tr").first
    formula = first.locator(".formula").inner_text()
    assert formula and first.locator("details dl").is_hidden()
    first.locator("details summary").click()
    assert "input tokens" in first.locator("details dl").inner_text()
    _shot(page, "findings")
    page.goto(live + "/costs")
    assert page.locator("table.costs tbody tr").count() == 5
    _shot(page, "costs")
    assert page.problems == []


def test_developers_report_sessions_and_a_session_timeline(live, store, browser_page):
    from tests.support.coding import ANN, CAROL, Call, claude_code, outcomes_of, prompt, seed_team

    page = browser_page
    page.goto(live + "/developers")  # before any data: how to send some
    assert "Coding agents" in page.locator("[data-empty=coding]").inner_text()
    _shot(page, "developers-empty")
    seed_team(store, outcomes_of(store))
    # a longer working session: prompts of varying length, pauses for review, a lunch break
    rec = claude_code("payments", "acme/api")
    # from 21:00 yesterday (UTC): the ~6 h session runs past midnight, whenever the test runs
    rec.clock = int(datetime.combine(date.today() - timedelta(days=1), dt_time(21), UTC).timestamp()) * 10**9
    for i in range(24):
        rec.tick([20_000, 90_000, 240_000, 45 * 60_000][i % 4] if i != 12 else 50 * 60_000)
        calls = [Call(400 + 37 * i, 120 + 11 * i, 15_000 + 900 * i, 300)] * (1 + i % 3)
        if i % 7 == 3:
            calls = [Call(400, 0, 15_000, failed=True), *calls]
        prompt(rec, "sess-ann-long", ANN, f"l{i}", calls, ("Read", "Edit", "Bash")[: 1 + i % 3])
    rec.store(store.client)
    outcomes_of(store)({"conversation_id": "sess-ann-long", "name": "pr_merged", "success": True})
    from tests.support.recorder import prices
    from tokentrail.analysis.run import analyze_range

    analyze_range(store.client, "default", 0, 2**62, prices())
    page.goto(live + "/developers")
    ranked = page.locator("tbody.ranked tr")
    assert ranked.count() == 2 and page.locator("tbody.unranked tr").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    _shot(page, "developers")

    page.select_option("select[name=by]", "team")  # the form submits itself
    page.wait_for_url("**by=team**")
    expect(page.locator("tbody.ranked tr")).to_have_count(2)
    _shot(page, "developers-by-team")

    page.locator("nav.tabs a", has_text="Sessions").click()
    page.wait_for_url("**/developers/sessions**")
    assert page.locator("table.sessions tbody tr").count() == 5
    _shot(page, "developer-sessions")

    page.locator("table.sessions tr[data-session='sess-ann-long'] td.name > a").click()
    page.wait_for_selector("table.timeline tr.prompt")
    assert page.locator("table.timeline tr.prompt").count() == 24
    assert page.locator("table.timeline tr.idle").count() >= 6
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    _shot(page, "developer-session-timeline")
    labels = page.locator(".axis-head span")
    texts = labels.all_inner_texts()
    assert texts[0].startswith(f"{date.today() - timedelta(days=1):%m-%d} 21:"), texts
    # dated again where the day changed, times alone otherwise
    assert [len(t.split()) for t in texts[1:]].count(2) == 1, texts
    assert any(t.startswith(f"{date.today():%m-%d} 0") for t in texts[1:]), texts
    boxes = [labels.nth(i).bounding_box() for i in range(labels.count())]
    assert all(b["x"] + b["width"] + 8 <= c["x"] for b, c in pairwise(boxes)), boxes
    after_midnight = page.locator("table.timeline tr.prompt").last.locator("td.nowrap")
    assert after_midnight.locator(".sub").inner_text().startswith(f"{date.today():%m-%d}")

    page.locator("table.timeline tr.prompt .bar").nth(3).click()  # a prompt opens its trace
    page.wait_for_selector("#wf .wf-row")
    assert "/trace/" in page.url and page.locator("#wf .wf-row").count() >= 3
    page.goto(live + "/developers/sessions?user=" + CAROL)
    assert page.locator("table.sessions tbody tr").count() == 1
    assert page.problems == []


def test_a_long_deep_trace_keeps_its_axis_labels_apart_and_its_span_names_readable(live, store, browser_page):
    """A trace of 4 h 10 m reads round hours on its axis, labels apart; a model call 20 levels
    deep with an error, a retry and a waste finding still shows most of its name."""
    from contextlib import ExitStack

    from opentelemetry.trace import SpanKind

    from tests.support.corpus import agent, call
    from tests.support.recorder import prices
    from tokentrail.analysis.run import analyze_range

    rec = Recorder()
    name = "chat gpt-4o summarise the customer's order history"
    with agent(rec, "writer"), ExitStack() as nested:
        for depth in range(20):
            nested.enter_context(rec.span(f"step {depth}", 5))
        with rec.span(
            name,
            500,
            SpanKind.CLIENT,
            error="RateLimitError",
            gen_ai__operation__name="chat",
            gen_ai__provider__name="openai",
            gen_ai__request__model="gpt-4o",
            gen_ai__usage__input_tokens=3000,
            gen_ai__usage__output_tokens=0,
            tokentrail__retry__attempt=3,
        ):
            pass
        call(rec, "again", "gpt-4o", 3000, 900)
        rec.tick(250 * 60 * 1000)  # the run goes on 4 h 10 m
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    page = browser_page
    page.goto(live + "/")
    page.locator("table.traces td.name > a").first.click()
    page.wait_for_selector("#wf .wf-row")

    labels = page.locator(".wf-head .wf-axis span")
    assert labels.all_inner_texts() == ["0", "1 h", "2 h", "3 h"]
    boxes = [labels.nth(i).bounding_box() for i in range(labels.count())]
    for left, right in pairwise(boxes):
        assert left["x"] + left["width"] + 8 <= right["x"]  # apart, with room between

    row = page.locator("#wf .wf-row").filter(has=page.locator(".badge.retry"))
    assert row.locator(".badge").all_inner_texts()[:2] == ["#3", "✕"]
    assert row.locator(".badge.waste").count() == 1
    shown = row.locator(".wf-name").bounding_box()
    label = row.locator(".wf-label").bounding_box()
    assert shown["width"] >= 100 and label["width"] >= 260  # some 15 characters of the name
    _shot(page, "trace-long-and-deep")
    assert page.problems == []


def _costs(page: Any) -> list[float]:
    cells = page.locator("table.traces tbody tr td:nth-child(7)").all_inner_texts()
    return [float(c.strip().lstrip("$").replace(",", "")) for c in cells]


def test_the_list_keeps_its_order_through_a_filter_change_and_pages_without_recounting(
    live, store, browser_page
):
    rec = Recorder()
    for i in range(12):  # costs in no particular order of time
        rec.chat("gpt-4o", "openai", 1000 * ((i * 5) % 12 + 1), 10, agent="a" if i % 3 else "b")
    rec.store(store.client)
    page = browser_page
    page.goto(live + "/traces?limit=3")
    assert page.locator("[data-total=traces]").inner_text() == "12"
    page.locator("table.traces th a", has_text="Cost").click()
    page.wait_for_url("**sort=cost**")
    expect(page.locator("table.traces th.sorted")).to_have_text("Cost ↓")
    first = _costs(page)
    assert first == sorted(first, reverse=True) and len(first) == 3

    page.select_option("select[name=agent]", "a")  # the filter form sends the order it was given
    page.wait_for_url("**agent=a**")
    expect(page.locator("[data-total=traces]")).to_have_text("8")
    assert "sort=cost" in page.url
    top = _costs(page)
    assert top == sorted(top, reverse=True) and top[0] <= first[0]

    page.locator("#page a[rel=next]").click()  # the next three; the totals stay as they were
    page.wait_for_url("**cursor=**")
    expect(page.locator("table.traces tbody tr")).to_have_count(3)
    rest = _costs(page)
    assert rest == sorted(rest, reverse=True) and rest[0] <= top[-1]
    assert page.locator("[data-total=traces]").inner_text() == "8"
    _shot(page, "traces-sorted-filtered-next")
    page.reload()  # the URL alone gives the same page, totals read again
    assert _costs(page) == rest and page.locator("[data-total=traces]").inner_text() == "8"
    assert page.problems == []
