"""The web UI in-process against the real engine: what a user sees on each page and its JSON twin."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bs4 import BeautifulSoup

from tests.support.recorder import Recorder, support_run
from tokentrail.web.format import usd


def _soup(response) -> Any:  # Any: bs4's Optional returns would need a check per selector
    assert response.status_code == 200, response.text[:500]
    return BeautifulSoup(response.text, "html.parser")


def _soup_any(text: str) -> Any:
    return BeautifulSoup(text, "html.parser")


def _stat(soup: Any, label: str) -> str:
    for stat in soup.select(".stat"):
        if stat.select_one(".label").get_text(strip=True) == label:
            return str(stat.select_one(".value").get_text(" ", strip=True))
    raise AssertionError(f"no {label!r} stat")


def test_empty_project_explains_how_to_send_data(web):
    soup = _soup(web.get("/"))
    text = soup.select_one(".onboarding").get_text(" ", strip=True)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://testserver:4318" in text
    assert "tokentrail.init()" in text and "tokentrail demo" in text
    assert web.get("/traces.json").json()["has_data"] is False


def test_list_shows_each_run_with_totals_and_json_twin(web, store, rec: Recorder):
    ids = [support_run(rec, conversation=f"conv-{i}", fail=i == 2) for i in range(3)]
    rec.store(store.client)
    soup = _soup(web.get("/traces"))
    rows = soup.select("table.traces tbody tr")
    assert len(rows) == 3
    links = [a["href"] for a in soup.select("table.traces td.name > a")]
    assert links == [f"/trace/{i}" for i in reversed(ids)]  # newest first
    assert [r.get("class") == ["error"] for r in rows].count(True) == 1
    api = web.get("/traces.json").json()
    totals = api["totals"]
    assert totals["traces"] == 3 and totals["errors"] == 1
    # leaf model calls only: 3 per run, every price known
    assert totals["llm_calls"] == 9 and totals["unpriced_calls"] == 0
    assert totals["input_tokens"] == 3 * (1200 + 1400 + 1400)
    assert totals["cost_usd"] == sum(t["cost_usd"] for t in api["traces"]) > 0
    assert _stat(soup, "Traces") == "3"
    assert _stat(soup, "Cost") == usd(totals["cost_usd"])
    assert _stat(soup, "Model calls") == "9"
    assert [t["trace_id"] for t in api["traces"]] == list(reversed(ids))


def test_filters_narrow_the_list(web, store, rec: Recorder):
    support_run(rec, agent="billing", conversation="c-a", user="alice")
    failed = support_run(rec, agent="triage", conversation="c-b", user="bob", fail=True)
    rec.chat("claude-3-5-haiku", "anthropic", 300, 20, agent="triage")  # a trace of its own
    rec.store(store.client)

    def ids(**params) -> list[str]:
        return [t["trace_id"] for t in web.get("/traces.json", params=params).json()["traces"]]

    assert len(ids()) == 3
    assert ids(status="error") == [failed]
    assert len(ids(agent="triage")) == 2
    assert len(ids(agent="billing")) == 1
    assert len(ids(model="claude-3-5-haiku-20241022")) + len(ids(model="claude-3-5-haiku")) == 1
    assert ids(conversation="c-b") == [failed]
    assert ids(user="alice") != [] and failed not in ids(user="alice")
    assert ids(q="LOOKUP_order") == ids(q="lookup") and len(ids(q="lookup")) == 2
    assert ids(q="no such span") == []
    assert len(ids(min_cost="0.000001")) == 3 and ids(min_cost="1000") == []
    assert ids(range="all") == ids()
    old = web.get("/traces.json", params={"from": "2001-01-01", "to": "2001-01-02"}).json()
    assert old["traces"] == [] and old["totals"]["traces"] == 0
    facets = _soup(web.get("/traces"))
    agents = [o["value"] for o in facets.select("select[name=agent] option") if o["value"]]
    assert agents == ["billing", "triage"]


def test_the_span_name_search_finds_any_span_whatever_wrote_the_summary(web, store, rec: Recorder):
    """The search tests the names kept on each trace's summary. A summary written before they were
    kept, or of a trace with more distinct span names than it keeps, has its spans' names read."""
    kept = support_run(rec, agent="billing")
    old = support_run(rec, agent="triage")
    with rec.agent_run("crawler", "c-many", "u-1"):
        for i in range(250):  # more distinct names than a summary keeps
            with rec.span(f"fetch page-{i:03d}", 1):
                pass
    rec.store(store.client)
    client = store.client
    many = client.query("SELECT trace_id FROM traces FINAL WHERE agent_name = 'crawler'").result_rows[0][0]
    kept_names = client.query(
        "SELECT span_names, names_recorded FROM traces FINAL WHERE trace_id = {t:String}",
        parameters={"t": kept},
    ).result_rows[0]
    assert "execute_tool lookup_order" in kept_names[0] and kept_names[1] == 1
    assert client.query(
        "SELECT length(span_names), names_recorded FROM traces FINAL WHERE trace_id = {t:String}",
        parameters={"t": many},
    ).result_rows == [(0, 0)]
    # a summary as written before names were kept
    client.command(
        "INSERT INTO traces SELECT * REPLACE ([] AS span_names, 0 AS names_recorded, now64(3) + 1 AS updated_at) "
        "FROM traces FINAL WHERE trace_id = {t:String}",
        parameters={"t": old},
    )
    assert client.query(
        "SELECT names_recorded FROM traces FINAL WHERE trace_id = {t:String}", parameters={"t": old}
    ).result_rows == [(0,)]

    def found(q: str, **params: str) -> set[str]:
        page = web.get("/traces.json", params={"q": q, **params}).json()
        ids = {t["trace_id"] for t in page["traces"]}
        assert page["totals"]["traces"] == len(ids)
        return ids

    assert found("LOOKUP_order") == {kept, old}
    assert found("lookup", agent="triage") == {old}
    assert found("page-249") == {many} and found("PAGE-0") == {many}
    assert found("invoke_agent") == {kept, old, many}
    assert found("no such span") == set()
    # the search narrows the waste report's traces the same way
    assert web.get("/waste.json", params={"q": "fetch page", "range": "all"}).status_code == 200


def test_bad_parameters_get_a_clear_400(web):
    for params, message in [
        ({"range": "3w"}, "range must be one of 1h, 6h, 24h, 7d, 30d, 90d, all"),
        ({"min_cost": "cheap"}, "min_cost must be a number of dollars"),
        ({"min_cost": "-1"}, "min_cost must be zero or more"),
        ({"sort": "name"}, "sort must be one of"),
        ({"limit": "100000"}, "limit must be between 1 and 500"),
        ({"from": "yesterday"}, "from must be an ISO date"),
        ({"cursor": "garbage"}, "cursor"),
        ({"project": "a b"}, "project must be"),
    ]:
        api = web.get("/traces.json", params=params)
        assert api.status_code == 400 and message in api.json()["error"], (params, api.text)
        page = web.get("/traces", params=params)
        assert page.status_code == 400 and message in _soup_any(page.text).select_one(".error-page p").text
    assert web.get("/trace/nothex.json").status_code == 400
    missing = web.get("/trace/" + "ab" * 16)
    assert missing.status_code == 404 and "no trace" in missing.text


def test_keyset_pages_cover_every_trace_once_in_order(web, store, rec: Recorder):
    for i in range(23):
        rec.chat("gpt-4o-mini", "openai", 100 + (i % 5) * 10, 10)
    rec.store(store.client)
    for sort in ("start", "cost", "tokens", "duration"):
        for direction in ("desc", "asc"):
            seen, params = [], {"limit": "5", "sort": sort, "dir": direction}
            while True:
                page = web.get("/traces.json", params=params).json()
                seen += page["traces"]
                if not page["next"]:
                    break
                params = page["next"]
            assert len(seen) == 23 and len({t["trace_id"] for t in seen}) == 23, (sort, direction)
            key = {"start": "start_ns", "cost": "cost_usd", "duration": "duration_ns"}.get(sort)
            values = [t[key] if key else t["input_tokens"] + t["output_tokens"] for t in seen]
            assert values == sorted(values, reverse=direction == "desc"), (sort, direction)


def test_htmx_reads_only_what_the_swapped_part_shows(web, store, rec: Recorder, monkeypatch):
    from tokentrail.store import traces as reads

    for i in range(7):
        rec.chat("gpt-4o-mini", "openai", 100 + i * 10, 10)
    rec.store(store.client)
    read: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def reading(*args: Any) -> Any:
            read.append(name)
            return real(*args)

        return reading

    for name in ("totals", "facets", "projects"):
        monkeypatch.setattr(reads, name, counted(name, getattr(reads, name)))

    def part(target: str | None, **params: str) -> Any:
        read.clear()
        headers = {"HX-Request": "true", "HX-Target": target} if target else {}
        return _soup(web.get("/traces", params={"limit": "3", "sort": "cost", **params}, headers=headers))

    whole = part(None)
    assert sorted(read) == ["facets", "projects", "totals"] and whole.select_one("select[name=model]")
    # a filter change: the totals and a page, not the menus
    results = part("results", min_cost="0")
    assert read == ["totals"] and _stat(results, "Traces") == "7" and not results.select("select")
    # sorting or paging changes no total: the page of traces alone, with the order the form sends next
    following = whole.select_one("#page nav.pager a[rel=next]")
    assert following["hx-target"] == "#page"
    page = part("page", cursor=parse_qs(urlsplit(following["hx-get"]).query)["cursor"][0])
    assert read == [] and not page.select(".totals")
    assert len(page.select("table.traces tbody tr")) == 3
    assert {i["name"]: i["value"] for i in page.select("input[form=trace-filters]")} == {
        "sort": "cost",
        "dir": "desc",
        "limit": "3",
    }
    links = [a["href"] for soup in (whole, page) for a in soup.select("table.traces td.name > a")]
    assert len(set(links)) == 6  # the next three, not the first again


def test_project_scoping(web, store, rec: Recorder):
    trace_id = support_run(rec)
    rec.store(store.client, project="team-b")
    assert web.get("/traces.json").json()["traces"] == []
    assert web.get(f"/trace/{trace_id}").status_code == 404
    assert [t["trace_id"] for t in web.get("/traces.json?project=team-b").json()["traces"]] == [trace_id]
    page = _soup(web.get(f"/trace/{trace_id}?project=team-b"))
    assert page.select_one("#wf")["data-query"] == "?project=team-b"


def test_trace_page_is_a_nested_timeline(web, store, rec: Recorder):
    trace_id = support_run(rec, fail=True)
    rec.store(store.client)
    soup = _soup(web.get(f"/trace/{trace_id}"))
    rows = soup.select("#wf .wf-row")
    names = [r.select_one(".wf-name").get_text(strip=True) for r in rows]
    assert names == [
        "invoke_agent support",
        "plan support",
        "chat gpt-4o",
        "execute_tool lookup_order",
        "chat gpt-4o",
        "chat gpt-4o",
    ]
    assert [int(r["data-depth"]) for r in rows] == [0, 1, 1, 1, 1, 1]
    assert [c for r in rows for c in r["class"] if c.startswith("kind-")] == [
        "kind-agent",
        "kind-plan",
        "kind-llm",
        "kind-tool",
        "kind-llm",
        "kind-llm",
    ]
    assert ["err" in r["class"] for r in rows] == [True, False, False, False, True, False]
    assert rows[5].select_one(".badge.retry").get_text() == "#2"
    bars = [r.select_one(".wf-bar")["style"] for r in rows]
    left, width = map(float, re.findall(r"[\d.]+", bars[0]))
    assert left == 0 and width == 100
    api = web.get(f"/trace/{trace_id}.json").json()
    assert [s["name"] for s in api["spans"]] == names
    assert api["summary"]["llm_calls"] == 3 and api["summary"]["status"] == "error"
    # the context chart: one column per model call, cached + carried + new = input
    assert len(soup.select(".chart .col")) == 3
    for step in api["context"]:
        assert step["cached"] + step["carried"] + step["new"] == step["input_tokens"]
    assert [s["cached"] for s in api["context"]] == [0, 0, 1024]
    # the second call carries the first call's 1200 + 80 tokens, the rest is new
    assert (api["context"][1]["carried"], api["context"][1]["new"]) == (1280, 120)


def test_trace_page_shows_each_span_once_as_last_written(web, store, rec: Recorder):
    """A span written again (re-sent, repriced) has several rows until the table merges them:
    the timeline shows it once, as written last."""
    trace_id = support_run(rec)
    rec.store(store.client)
    for name, age in (("plan, written later", "+ 5"), ("plan, written earlier", "- 5")):
        store.client.command(
            "INSERT INTO spans SELECT * REPLACE ({name:String} AS name, "
            f"ingested_at {age} AS ingested_at) FROM (SELECT * FROM spans "
            "WHERE trace_id = {trace_id:String} AND name = 'plan support')",
            parameters={"name": name, "trace_id": trace_id},
        )
    spans = web.get(f"/trace/{trace_id}.json").json()["spans"]
    assert [s["name"] for s in spans[:2]] == ["invoke_agent support", "plan, written later"]
    ids = [s["span_id"] for s in spans]
    assert (
        len(ids)
        == len(set(ids))
        == store.client.query(
            "SELECT uniqExact(span_id) FROM spans WHERE trace_id = {t:String}", parameters={"t": trace_id}
        ).result_rows[0][0]
    )


def test_span_detail_shows_tokens_cost_messages_and_tool(web, store, rec: Recorder):
    trace_id = support_run(rec)
    rec.store(store.client)
    spans = web.get(f"/trace/{trace_id}.json").json()["spans"]
    final = spans[5]
    detail = _soup(web.get(f"/trace/{trace_id}/span/{final['span_id']}", headers={"HX-Request": "true"}))
    assert detail.select_one("html") is None  # a partial for htmx
    assert (
        detail.select_one("[data-field=input_tokens]").get_text(" ", strip=True)
        == "1,400 of which 1,024 cached"
    )
    cost = detail.select_one("[data-field=cost]").get_text(" ", strip=True)
    span_api = web.get(f"/trace/{trace_id}/span/{final['span_id']}.json").json()["span"]
    assert span_api["cost_source"] == "computed" and span_api["price_version"].startswith("genai-prices")
    assert cost.startswith(f"${span_api['cost_usd']:.4f}") and "computed · genai-prices" in cost
    assert [m.get_text(" ", strip=True) for m in detail.select(".chat .msg")] == [
        "assistant · response It ships tomorrow."
    ]
    tool = _soup(web.get(f"/trace/{trace_id}/span/{spans[3]['span_id']}"))
    assert tool.select_one("html") is not None  # opened directly: a whole page
    blocks = [p.get_text() for p in tool.select(".span-detail pre.content")]
    assert '{"order": 42}' in blocks and '{"status": "shipped", "eta": "tomorrow"}' in blocks
    first = _soup(web.get(f"/trace/{trace_id}/span/{spans[2]['span_id']}"))
    call = first.select_one(".part.tool-call")
    assert (
        call.select_one("code").get_text() == "lookup_order"
        and '"order": 42' in call.select_one("pre").get_text()
    )
    assert web.get(f"/trace/{trace_id}/span/{'0' * 16}").status_code == 404


def test_unknown_model_cost_is_unknown_not_zero(web, store, rec: Recorder):
    rec.chat("house-model-x", "acme", 500, 50)
    rec.store(store.client)
    (trace,) = web.get("/traces.json").json()["traces"]
    assert trace["unpriced_calls"] == 1
    span = web.get(f"/trace/{trace['trace_id']}.json").json()["spans"][0]
    assert span["cost_usd"] is None
    detail = _soup(web.get(f"/trace/{trace['trace_id']}/span/{span['span_id']}"))
    assert detail.select_one("[data-field=cost]").get_text(" ", strip=True).startswith("unknown")
    listing = _soup(web.get("/traces"))
    assert "1 unpriced call" in listing.select_one(".totals").get_text(" ", strip=True)
    assert _stat(listing, "Cost") == "unknown"  # not $0: the only call has no known price
    assert listing.select("table.traces td.num")[-2].get_text(" ", strip=True) == "unknown +?"


def test_conversations_group_traces_with_cost(web, store, rec: Recorder):
    a1 = support_run(rec, conversation="conv-a")
    a2 = support_run(rec, conversation="conv-a")
    b = support_run(rec, conversation="conv-b")
    rec.store(store.client)
    traces = {t["trace_id"]: t for t in web.get("/traces.json").json()["traces"]}
    convs = web.get("/conversations.json").json()["conversations"]
    assert [c["conversation_id"] for c in convs] == ["conv-b", "conv-a"]
    assert convs[1]["traces"] == 2
    assert abs(convs[1]["cost_usd"] - traces[a1]["cost_usd"] - traces[a2]["cost_usd"]) < 1e-12
    assert convs[0]["cost_usd"] == traces[b]["cost_usd"]
    soup = _soup(web.get("/conversations"))
    link = soup.select_one("table.conversations td.name a")
    assert link.get_text() == "conv-b"
    listed = web.get(link["href"].replace("/traces", "/traces.json")).json()["traces"]
    assert [t["trace_id"] for t in listed] == [b]


def test_a_large_trace_renders_its_first_rows_and_loads_the_rest(web, store, rec: Recorder):
    with rec.span(
        "invoke_agent big", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="big"
    ) as root:
        for i in range(1300):
            with rec.span(
                f"execute_tool t{i}", 1, gen_ai__operation__name="execute_tool", gen_ai__tool__name="t"
            ):
                pass
    rec.store(store.client)
    trace_id = format(root.get_span_context().trace_id, "032x")
    page = _soup(web.get(f"/trace/{trace_id}"))
    assert len(page.select("#wf .wf-row")) == 1000
    more = page.select_one("#wf button.wf-more")
    assert more.get_text(" ", strip=True) == "Show 301 more of 301 remaining spans"
    rest = _soup(web.get(more["hx-get"], headers={"HX-Request": "true"}))
    names = [r.select_one(".wf-name").get_text() for r in rest.select(".wf-row")]
    assert names[0] == "execute_tool t999" and names[-1] == "execute_tool t1299" and len(names) == 301
    assert rest.select_one("button.wf-more") is None
    assert web.get(f"/trace/{trace_id}/rows?first=x").status_code == 400


def test_context_chart_splits_per_agent_run_when_chat_spans_name_no_agent(web, store, rec: Recorder):
    """Client instrumentors send `chat gpt-4o` spans without gen_ai.agent.name, under the
    framework's `invoke_agent` span that alone names the agent. The chart must split each call's
    input per agent run, as the ledger does: the reviewer's first call carries nothing over from
    the writer's last one."""
    calls = {  # agent -> calls (input, output, cached), in order
        "writer": [(1000, 100, 0), (1600, 50, 300)],
        "reviewer": [(800, 20, 0), (1200, 30, 0)],
    }
    with rec.span("run pipeline", 5) as root:
        for agent, runs in calls.items():
            with rec.span(
                f"invoke_agent {agent}", 5, gen_ai__operation__name="invoke_agent", gen_ai__agent__name=agent
            ):
                for inp, out, cached in runs:
                    with rec.span(
                        "chat gpt-4o",
                        300,
                        gen_ai__operation__name="chat",
                        gen_ai__provider__name="openai",
                        gen_ai__request__model="gpt-4o",
                        gen_ai__usage__input_tokens=inp,
                        gen_ai__usage__output_tokens=out,
                        gen_ai__usage__cache_read__input_tokens=cached,
                    ):
                        pass
    rec.store(store.client)
    trace_id = format(root.get_span_context().trace_id, "032x")
    stored = store.client.query(
        "SELECT DISTINCT agent_name FROM spans WHERE name = 'chat gpt-4o' AND trace_id = {t:String}",
        parameters={"t": trace_id},
    ).result_rows
    assert stored == [("",)]  # as sent: the calls name no agent
    # by hand: carried = min(input, the same run's previous call's input + output) - cached
    expected = [
        ("writer", 0, 0, 1000),  # the run's first call carries nothing
        ("writer", 300, 1100 - 300, 1600 - 300 - 800),
        ("reviewer", 0, 0, 800),  # another run: nothing of the writer's 1,650 tokens
        ("reviewer", 0, 820, 1200 - 820),
    ]
    api = web.get(f"/trace/{trace_id}.json").json()["context"]
    assert [(s["agent"], s["cached"], s["carried"], s["new"]) for s in api] == expected
    page = _soup(web.get(f"/trace/{trace_id}"))
    shown = [
        re.search(r"\((\w+)\): input \d+ = cached (\d+) \+ carried (\d+) \+ new (\d+)", col["title"])
        for col in page.select(".chart .col")
    ]
    assert [(m[1], int(m[2]), int(m[3]), int(m[4])) for m in shown if m] == expected
    assert len(shown) == 4
