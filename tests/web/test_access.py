"""Nobody reads what is not theirs: every route the web UI and the collector register, enumerated
from the apps themselves (a route added later is covered without changing this file), asked
without credentials, with a session of project alpha's member, and with alpha's read key, while
both projects hold data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from tests.support.access import Seeded, add_account, seed_project, shown, sign_in
from tokentrail.collector.service import Collector
from tokentrail.web.app import create_app

#: routes anyone may ask for, and why
PUBLIC_WEB = {
    "/signin": "the sign-in form",
    "/signout": "signing out needs no live session (it ends the one it is given, if any)",
    "/health": "for probes; answers only whether the database answers",
    "/static": "the stylesheet, the script and the icon: no data",
}
PUBLIC_COLLECTOR = {"/health": "liveness for load balancers; answers only {status: ok}"}
#: collector routes that take data in: they need an ingest key (401 without one)
INGEST = {"/v1/traces", "/v1/logs", "/v1/metrics", "/api/outcomes"}

ALPHA_KEY = "alpha-read-key-0123456789"


@pytest.fixture
def seeded(store: Any) -> dict[str, Seeded]:
    return {p: seed_project(store, p) for p in ("alpha", "bravo")}


@pytest.fixture
def guarded(settings: Any) -> Any:
    return settings.with_(auth="password", api_keys={ALPHA_KEY: "alpha", "bravo-key-0123456789": "bravo"})


@pytest.fixture
def web(guarded: Any, store: Any) -> Iterator[TestClient]:
    with TestClient(create_app(guarded, store)) as client:
        yield client


def _web_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the app; a mount as its prefix."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            found += [(method, route.path) for method in sorted(route.methods or ())]
        elif isinstance(route, Mount):
            found.append(("GET", route.path))
        elif isinstance(route, Route) and route.path in PUBLIC_WEB:  # outside the pages' dependencies
            found += [(method, route.path) for method in sorted(route.methods or ())]
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")
    return found


def _fill(path: str, seeded: Seeded) -> str:
    ids = {
        "trace_id": seeded.trace_id,
        "span_id": seeded.span_id,
        "session_id": seeded.session_id,
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ids[m[1]], path)


def _reads(app: Any) -> list[str]:
    return [path for method, path in _web_routes(app) if method == "GET" and path not in PUBLIC_WEB]


def test_every_web_route_needs_credentials(web: TestClient, seeded: dict[str, Seeded]) -> None:
    routes = _web_routes(web.app)
    assert set(PUBLIC_WEB) <= {path for _, path in routes}, "a public route listed here is gone"
    checked = 0
    for method, path in routes:
        if path in PUBLIC_WEB:
            continue
        url = _fill(path, seeded["bravo"])
        response = web.request(method, url, follow_redirects=False)
        where = f"{method} {url}"
        if path.endswith((".json", ".csv")):
            assert response.status_code == 401, (where, response.status_code, response.text[:200])
            assert response.headers["www-authenticate"].startswith("Bearer"), where
            assert "sign in first" in response.text, where
        elif method == "GET":
            assert response.status_code == 303, (where, response.status_code)
            assert response.headers["location"].startswith("/signin?next="), where
        else:  # a change without a session has no form token either
            assert response.status_code in (401, 403), (where, response.status_code)
        assert not shown(response.text, seeded["bravo"]) or response.status_code == 303, where
        checked += 1
    assert checked >= 20, routes
    # htmx asks for parts of pages: it is told to load the sign-in form instead
    partial = web.get(_fill("/trace/{trace_id}/rows", seeded["alpha"]), headers={"HX-Request": "true"})
    assert partial.status_code == 401 and partial.headers["hx-redirect"].startswith("/signin?next=")


def test_a_member_of_alpha_sees_alpha_and_never_bravo(
    web: TestClient, settings: Any, store: Any, seeded: dict[str, Seeded]
) -> None:
    alpha, bravo = seeded["alpha"], seeded["bravo"]
    add_account(store, "ann@example.com", "ann's password", "alpha")
    assert sign_in(web, "ann@example.com", "ann's password").status_code == 303
    # the same routes without sign-in show bravo's data when bravo is asked for: the markers work
    with TestClient(create_app(settings, store)) as anonymous:
        telling = {
            path
            for path in _reads(web.app)
            if shown(anonymous.get(_fill(path, bravo) + "?project=bravo").text, bravo)
        }
    assert len(telling) >= 15, telling
    alpha_seen: set[str] = set()
    for path in _reads(web.app):
        own = web.get(_fill(path, alpha))
        assert own.status_code == 200, (path, own.status_code, own.text[:300])
        assert not shown(own.text, bravo), (path, shown(own.text, bravo))
        alpha_seen |= set(shown(own.text, alpha))
        # bravo's ids, asked for in alpha (the default project of this member): never bravo's rows
        url = _fill(path, bravo)
        other = web.get(url)
        assert other.status_code in (200, 404), (url, other.status_code)
        assert not [m for m in shown(other.text, bravo) if m not in url], (url, shown(other.text, bravo))
        # and asked for in bravo by name: refused
        refused = web.get(url + "?project=bravo")
        assert refused.status_code == 403, (url, refused.status_code)
        assert "project bravo is not one of yours" in refused.text
        assert not [m for m in shown(refused.text, bravo) if m not in url]
    assert alpha_seen == set(alpha.markers)


def test_a_read_key_opens_its_project_s_exports_only(web: TestClient, seeded: dict[str, Seeded]) -> None:
    alpha, bravo = seeded["alpha"], seeded["bravo"]
    key = {"Authorization": f"Bearer {ALPHA_KEY}"}
    exports = [p for p in _reads(web.app) if p.endswith((".json", ".csv"))]
    assert len(exports) >= 10, exports
    alpha_seen: set[str] = set()
    for path in exports:
        own = web.get(_fill(path, alpha), headers=key)
        assert own.status_code == 200, (path, own.status_code, own.text[:200])
        assert not shown(own.text, bravo), path
        alpha_seen |= set(shown(own.text, alpha))
        url = _fill(path, bravo)
        assert not [m for m in shown(web.get(url, headers=key).text, bravo) if m not in url], url
        assert web.get(url + "?project=bravo", headers=key).status_code == 403, url
        wrong = web.get(_fill(path, alpha), headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401 and "unknown API key" in wrong.text, path
    assert {alpha.trace_id, alpha.coding_trace_id, "agent-alpha", "dev@alpha.example"} <= alpha_seen
    # a key opens no page: pages are for people who sign in
    page = web.get("/traces", headers=key, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")


def test_every_collector_route_needs_credentials(guarded: Any, store: Any) -> None:
    collector = Collector(guarded, store)
    try:
        with TestClient(collector.app) as client:
            paths = {route.path for route in collector.app.routes if isinstance(route, Route)}
            assert set(PUBLIC_COLLECTOR) | INGEST <= paths
            for route in collector.app.routes:
                assert isinstance(route, Route), route
                for method in sorted(route.methods or ()):
                    if method == "HEAD" or route.path in PUBLIC_COLLECTOR:
                        continue
                    response = client.request(
                        method, route.path, content=b"{}", headers={"content-type": "application/json"}
                    )
                    assert response.status_code == 401, (method, route.path, response.status_code)
                    assert str(guarded.data_dir) not in response.text
            assert client.get("/health").json() == {"status": "ok"}
            key = {"Authorization": f"Bearer {ALPHA_KEY}"}
            status = client.get("/api/status", headers=key)
            assert status.status_code == 200
            assert status.json()["spool"]["directory"] == str(guarded.spool_dir)
            metrics = client.get("/metrics", headers=key)
            assert metrics.status_code == 200 and "tokentrail_spans_received_total" in metrics.text
            assert "bravo" not in status.text + metrics.text
            assert client.get("/api/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        collector.spool.close()
