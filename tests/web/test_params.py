"""Every route's query parameters: a bad one is a 400 that names it, a time range outside what
ClickHouse stores is clamped, and no generated query string, however odd, gets a 5xx."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
from bs4 import BeautifulSoup
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.recorder import Recorder, prices, support_run
from tokentrail.analysis.run import analyze_range
from tokentrail.web.app import create_app
from tokentrail.web.filters import MAX_NS, MIN_NS, TRACE_PARAMS, encode_cursor


def _seed(store: Any) -> dict[str, str]:
    """Two conversations, one with a retried call (waste once analysed) and one without."""
    rec = Recorder()
    wasteful = support_run(rec, conversation="conv-retry")
    with rec.span(
        "invoke_agent quiet",
        5,
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="quiet",
        gen_ai__conversation__id="conv-quiet",
    ) as root:
        rec.chat("gpt-4o-mini", "openai", 300, 20, agent="quiet")
        quiet = format(root.get_span_context().trace_id, "032x")
    span_ids = [
        format(s.context.span_id, "016x")
        for s in rec.exporter.get_finished_spans()
        if format(s.context.trace_id, "032x") == wasteful
    ]
    rec.store(store.client)
    analyze_range(store.client, "default", 0, MAX_NS, prices())
    return {"wasteful": wasteful, "quiet": quiet, "span": span_ids[0]}


@pytest.fixture
def client(settings: Any, store: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store), raise_server_exceptions=False) as c:
        yield c


def _message(response: Any) -> str:
    """What a 400 says, as the user sees it: the JSON error, the CSV's text, or the error page."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        return str(response.json()["error"])
    if kind.startswith("text/html"):
        paragraph = BeautifulSoup(response.text, "html.parser").select_one(".error-page p")
        assert paragraph is not None, response.text[:300]
        return paragraph.get_text()
    return str(response.text).strip()


def test_the_reported_inputs_are_400s_that_name_the_parameter(client: TestClient, store: Any) -> None:
    ids = _seed(store)
    tokens_page = client.get("/traces.json?sort=tokens&limit=1").json()
    _, _, value, key = json.loads(base64.urlsafe_b64decode(tokens_page["next"]["cursor"] + "=="))
    assert isinstance(value, int)
    float_cursor = encode_cursor("tokens", "desc", (value + 0.5, key))
    for url, message in [
        ("/conversations.json?sort=cost", "sort is not a parameter of /conversations"),
        ("/waste.json?sort=cost", "sort is not a parameter of /waste"),
        ("/traces.json?colour=red", "colour is not a parameter of /traces"),
        ("/traces.json?since=%C2%B2h", "since must be a duration such as 90m, 24h or 7d"),
        ("/traces.json?since=" + "9" * 5000 + "h", "since is longer than 200 characters"),
        ("/traces.json?since=24h&from=2026-01-01", "since cannot be combined with from or to"),
        (f"/traces.json?sort=tokens&cursor={float_cursor}", "cursor is not one this server handed out"),
        ("/traces.json?cursor=" + "W" * 3000, "cursor is not one this server handed out"),
        (
            "/traces.json?sort=waste&cursor=" + encode_cursor("waste", "desc", (10**400, key)),
            "cursor is not one",
        ),
        ("/traces.json?limit=0", "limit must be between 1 and 500"),
        ("/traces.json?limit=%EF%BC%95", "limit must be a whole number between 1 and 500"),
        ("/traces.json?limit=5&limit=6", "limit is given more than once"),
        ("/traces.json?dir=up", "dir must be one of desc, asc"),
        ("/traces.json?has_waste=yes", "has_waste must be one of 0, 1"),
        ("/traces.json?min_cost=1e999", "min_cost must be a number of dollars below 1e308"),
        ("/traces.json?min_cost=%EF%BC%91", "min_cost must be a number of dollars"),
        ("/traces.json?q=a%00b", "q must not contain NUL characters"),
        ("/traces.json?agent=%FF%FE", "agent is not valid UTF-8"),
        ("/traces.json?service=" + "s" * 201, "service is longer than 200 characters"),
        ("/traces.json?to=2026-01-01&from=2026-02-01", "to must be later than from"),
        ("/traces.json?from=10000-01-01", "from must be an ISO date or time"),
        ("/costs.json?by=colour", "by must be one of task, user, team, service, day, model"),
        ("/waste.csv?by=colour", "by must be one of agent, service, user, day, model"),
        ("/findings.csv?detector=typo", "detector must be one of retry, loop"),
        ("/overview?by=agent", "by is not a parameter of /overview"),
        ("/developers.json?order=tokens", "order must be one of per_success, waste"),
        ("/developers/sessions.json?order=waste", "order is not a parameter of /developers/sessions"),
        (f"/trace/{ids['wasteful']}?range=all", "range is not a parameter of /trace/{trace_id}"),
        (f"/trace/{ids['wasteful']}/rows?first=-1", "first must be a whole number between 0 and 50000"),
        (f"/trace/{ids['wasteful']}/rows?first=" + "9" * 30, "first must be between 0 and 50000"),
        ("/trace/" + "g" * 32 + ".json", "trace id must be 32 hexadecimal characters"),
        (f"/trace/{ids['wasteful']}/span/{'x' * 17}.json", "span id must be 16 hexadecimal characters"),
        ("/traces?project=a%20b", "project must be 1 to 64 letters"),
    ]:
        # the JSON twin's {"error": …} and the page's error page say the same
        twins = [url, url.replace(".json?", "?").replace(".json/", "/")] if ".json?" in url else [url]
        for twin in twins:
            response = client.get(twin)
            assert response.status_code == 400, (twin, response.status_code, response.text[:300])
            assert message in _message(response), (twin, _message(response))


def test_out_of_range_times_clamp_to_what_clickhouse_stores(client: TestClient, store: Any) -> None:
    ids = _seed(store)

    def listed(query: str) -> tuple[dict[str, Any], set[str]]:
        page = client.get("/traces.json?" + query)
        assert page.status_code == 200, (query, page.text[:300])
        return page.json()["filter"], {t["trace_id"] for t in page.json()["traces"]}

    both = {ids["wasteful"], ids["quiet"]}
    for query, start, end, traces in [
        ("from=0001-01-01", MIN_NS, 0, both),  # before 1900: from 1900
        ("to=9999-12-31T23:59:59-14:00", 0, MAX_NS, both),  # after 2262-04-11: open-ended
        ("since=99999999999d", MIN_NS, 0, both),
        ("from=2263-01-01&to=2300-01-01", MAX_NS, MAX_NS, set()),
        ("from=1800-01-01&to=1899-12-31", MIN_NS, MIN_NS, set()),
        ("to=1970-01-01T00:00:00Z", 0, -1, set()),  # an end at the epoch selects nothing, not everything
        ("range=all&from=2001-01-01&to=2001-01-02", 0, 0, both),  # the range menu's choice wins
    ]:
        f, found = listed(query)
        assert (f["start_ns"], f["end_ns"], found) == (start, end, traces), query
    # the clamped bound carries over to the next page, which holds the other trace
    first = client.get("/traces.json?from=0001-01-01&limit=1").json()
    assert first["next"]["from"] == "1900-01-01T00:00:00"
    second = client.get("/traces.json", params=first["next"]).json()
    assert {t["trace_id"] for t in first["traces"] + second["traces"]} == both and second["next"] is None
    for page in (
        "/waste.json",
        "/costs.json",
        "/findings.json",
        "/overview.json",
        "/conversations.json",
        "/developers.json",
        "/developers/sessions.json",
    ):
        assert client.get(page + "?from=0001-01-01&to=9999-12-31").status_code == 200, page
    assert client.get("/costs.json?to=9999-12-31").json()["totals"]["tasks"] == 2


def test_conversations_honour_has_waste(client: TestClient, store: Any) -> None:
    _seed(store)
    every = {c["conversation_id"] for c in client.get("/conversations.json").json()["conversations"]}
    wasteful = {
        c["conversation_id"] for c in client.get("/conversations.json?has_waste=1").json()["conversations"]
    }
    assert every == {"conv-retry", "conv-quiet"} and wasteful == {"conv-retry"}
    page = client.get("/conversations?has_waste=1&limit=1")
    assert page.status_code == 200 and "conv-retry" in page.text


# --- every route, every parameter ------------------------------------------------------------

_NAMES = (*TRACE_PARAMS, "by", "detector", "first", "period", "order")
_CHOICES = (
    "1h",
    "all",
    "7d",
    "custom",
    "cost",
    "tokens",
    "waste",
    "asc",
    "desc",
    "agent",
    "model",
    "task",
    "team",
    "day",
    "loop",
    "retry",
    "ok",
    "error",
    "0",
    "1",
    "",
    " ",
    "default",
    "other-project",
)
_TIMES = (
    "0001-01-01",
    "1899-12-31T23:59:59",
    "1900-01-01",
    "1970-01-01T00:00:00Z",
    "2262-04-11T23:47:17",
    "9999-12-31T23:59:59-14:00",
    "2026-02-30",
    "2026-01-01T25:00",
    "20260101",
    "2026-W01-1",
)
_TEXTS = ("support", "gpt-4o", "conv-retry", "user-7", "%", "_", "\\'\"", "é\u202e\U0001f600", "\t\n", " ")


def _raw_cursor(value: Any, key: Any = "ab" * 16, sort: str = "start", direction: str = "desc") -> str:
    raw = json.dumps([sort, direction, value, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSORS = (
    _raw_cursor(1.5),
    _raw_cursor(2**70),
    _raw_cursor(True),
    _raw_cursor(5, ""),
    _raw_cursor(5, ["x"]),
    _raw_cursor(5, "x" * 9000),
    _raw_cursor(10**18, "c" * 40),
    "x&sort=cost",
    _raw_cursor(1e308, sort="cost") + "&sort=cost",
    _raw_cursor(10**400, sort="waste") + "&sort=waste",
    _raw_cursor(1.5, sort="tokens") + "&sort=tokens",
    _raw_cursor(1, sort="cost", direction="asc") + "&sort=cost&dir=asc",
    base64.urlsafe_b64encode(b"[" * 5000).decode(),
    "%FF%FF",
)

#: per parameter, values at and past the edges of what it takes; a value may bring other
#: parameters along (`sort=cost&cursor=…`): it is sent as written, after `name=`
_EDGES: dict[str, tuple[str, ...]] = {
    "project": ("other-project", "a%20b", "-" * 65),
    "range": ("all", "custom", "1h", "%C2%B2h"),
    "since": ("99999999999d", "%C2%B2h", "9" * 300 + "h", "1s", "0h", "1w"),
    "from": (*(quote(t) for t in _TIMES[:6]), "1" * 60),
    "to": (*(quote(t) for t in _TIMES[2:]), "2026-01-01&from=2026-01-02"),
    "service": tuple(quote(t) for t in _TEXTS[:7]),
    "agent": tuple(quote(t) for t in _TEXTS[::2]),
    "model": tuple(quote(t) for t in _TEXTS[1::2]),
    "conversation": (*(quote(t) for t in _TEXTS[2:6]), "c" * 500),
    "user": (*(quote(t) for t in _TEXTS[3:7]), "u" * 501),
    "q": (*(quote(t) for t in _TEXTS[4:]), "chat", "%EF%BF%BE"),
    "status": ("error", "ok", "x"),
    "min_cost": ("1e308", "1e999", "-0", ".5", "%EF%BC%91", "nan", "9" * 200),
    "has_waste": ("1", "0", "yes"),
    "sort": ("waste", "cost", "spans", "x", "waste&dir=asc"),
    "dir": ("asc", "up"),
    "limit": ("1", "500", "501", "9" * 30, "%EF%BC%91", "-1"),
    "cursor": _CURSORS,
    "by": ("agent", "model", "team", "day", "user", "developer", "coding_agent", "x"),
    "team": tuple(quote(t) for t in _TEXTS[::3]),
    "repository": (*(quote(t) for t in _TEXTS[1::3]), "r" * 500),
    "coding_agent": ("any", "claude_code", "codex", "gemini_cli", "cursor"),
    "period": ("day", "week", "month"),
    "order": ("per_success", "waste", "tokens"),
    "detector": ("loop", "retry", "no_outcome", "productive"),
    "first": ("0", "999", "50000", "50001", "-1", "9" * 30),
    "next": ("/traces?range=all", "//elsewhere.example/", "https://elsewhere.example/", "%5C%5Cx"),
    "why": ("expired", "signed_out", "x"),
}
#: what any parameter may meet: not UTF-8, a NUL, too long, given twice
_HOSTILE = ("%FF", "a%00b", "x" * 9000, "1&{name}=1")


def _accepted(client: TestClient, path: str) -> list[str]:
    """The parameters a route takes, as its refusal of an unknown one lists them."""
    response = client.get(path + "?zz-unknown=1")
    message = _message(response)
    assert response.status_code == 400 and "zz-unknown is not a parameter of" in message, (path, message)
    return message.split("it takes ", 1)[1].split(", ")


def _check(client: TestClient, path: str, query: str, names: list[str], seen: dict[int, int]) -> str | None:
    """None when the answer is fine, else what is wrong with it."""
    response = client.get(path + ("?" + query if query else ""))
    seen[response.status_code] = seen.get(response.status_code, 0) + 1
    where = f"{path}?{query[:200]}"
    if response.status_code not in (200, 400, 404) or (response.status_code == 404 and "/trace/" not in path):
        return f"{where}: {response.status_code} {response.text[:300]}"  # only an id can be missing
    if response.status_code == 400:
        message = _message(response)
        if not any(n in message for n in [*names, "trace id", "span id"]):
            return f"{where}: 400 names none of {names}: {message}"
    return None


def _paths(client: TestClient, ids: dict[str, str]) -> list[str]:
    routes = sorted(
        r.path
        for r in client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and "GET" in (r.methods or ())  # query parameters: the reads
    )
    assert {
        "/",
        "/traces",
        "/traces.json",
        "/conversations.json",
        "/waste.csv",
        "/findings.csv",
        "/costs.json",
        "/overview",
        "/trace/{trace_id}/rows",
        "/trace/{trace_id}/span/{span_id}.json",
    } <= set(routes), routes
    return [r.replace("{trace_id}", ids["wasteful"]).replace("{span_id}", ids["span"]) for r in routes]


def test_every_parameter_of_every_route_at_its_edges(client: TestClient, store: Any) -> None:
    ids = _seed(store)
    seen: dict[int, int] = {}
    wrong: list[str] = []
    started = time.monotonic()
    paths = _paths(client, ids)
    for path in paths:
        for name in _accepted(client, path):
            values = [*_EDGES[name], *(h.format(name=name) for h in _HOSTILE)]
            for value in values:
                names = [name, *re.findall(r"&([a-z_]+)=", "&" + value)]
                problem = _check(client, path, f"{name}={value}", names, seen)
                if problem:
                    wrong.append(problem)
    print(
        f"\n{sum(seen.values())} requests over {len(paths)} routes in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{n} × {code}" for code, n in sorted(seen.items()))
    )
    assert not wrong, "\n".join(wrong[:20])
    assert seen.get(200, 0) >= 100 and seen.get(400, 0) >= 100, seen


# --- generated query strings -------------------------------------------------------------------


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers().map(str),
        st.integers(min_value=-(10**40), max_value=10**40).map(str),
        st.floats().map(repr),
        st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
        st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6),
    )


def _cursor() -> st.SearchStrategy[str]:
    values = st.one_of(
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
    )
    real = st.builds(
        lambda s, d, v, k: encode_cursor(s, d, (v, k)),
        st.sampled_from(["start", "cost", "spans", "x"]),
        st.sampled_from(["desc", "asc"]),
        values,
        st.text(max_size=40),
    )
    junk = st.binary(max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
    return st.one_of(real, junk)


_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(_CHOICES),
    st.sampled_from(_TIMES),
    st.sampled_from(_TEXTS),
    _number(),
    st.tuples(_number(), st.sampled_from(["s", "m", "h", "d", "w", ""])).map("".join),
    _cursor(),
    st.integers(min_value=190, max_value=9000).map(lambda n: "x" * n),
)
_VALUE = st.one_of(_TEXT.map(lambda v: quote(v, safe="")), st.binary(max_size=12).map(quote_from_bytes))


def _shown(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name) else repr(name[:40])


def test_no_generated_query_string_gets_a_5xx(client: TestClient, store: Any) -> None:
    ids = _seed(store)
    routes = sorted(
        r.path
        for r in client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, APIRoute) and "GET" in (r.methods or ())  # query parameters: the reads
    )
    accepted = {r: _accepted(client, p) for r, p in zip(routes, _paths(client, ids), strict=True)}
    trace_ids = st.one_of(
        st.sampled_from([ids["wasteful"], ids["quiet"], "ab" * 16, ids["wasteful"].upper()]),
        st.text(max_size=40),
    )
    span_ids = st.one_of(st.sampled_from([ids["span"], "cd" * 8]), st.text(max_size=20))
    seen: dict[int, int] = {}

    @given(data=st.data(), trace_id=trace_ids, span_id=span_ids)
    @hsettings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(data: st.DataObject, trace_id: str, span_id: str) -> None:
        route = data.draw(st.sampled_from(routes))
        # mostly the route's own parameters, so that generated values get past the first refusal
        own = st.sampled_from(accepted[route])
        name = st.one_of(own, own, own, st.sampled_from(_NAMES), st.text(max_size=8))
        pairs = data.draw(st.lists(st.tuples(name, _VALUE), max_size=3))
        path = route.replace("{trace_id}", quote(trace_id, safe=""))
        path = path.replace("{span_id}", quote(span_id, safe=""))
        query = "&".join(f"{quote(n, safe='')}={v}" for n, v in pairs)
        problem = _check(client, path, query, [_shown(n) for n, _ in pairs], seen)
        assert problem is None, problem

    started = time.monotonic()
    check()
    print(
        f"\n{sum(seen.values())} requests over {len(routes)} routes in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{n} × {code}" for code, n in sorted(seen.items()))
    )
    # both ways ran: through the database, and refused before it
    assert seen.get(200, 0) >= 20 and seen.get(400, 0) >= 20, seen
