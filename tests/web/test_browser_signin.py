"""Sign-in in headless Chromium: the form, the member's projects and the switcher, signing out,
and a session that ends while a page is open (its next htmx request leads to the form, which
leads back). Screenshots land in test-artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support.access import add_account, seed_project
from tests.web.conftest import serving
from tests.web.test_browser import _shot
from tokentrail.web.app import create_app

pytestmark = pytest.mark.browser

PASSWORD = "a long enough password"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signin_live(settings: Any, store: Any, clock: Clock) -> Iterator[str]:
    """The web UI with password sign-in on a loopback port."""
    app = create_app(settings.with_(auth="password", session_idle_seconds=600), store)
    app.state.clock = clock
    with serving(app) as url:
        yield url


def _trace_ids(page: Any) -> set[str]:
    links = page.locator("table.traces td.name > a")
    return {
        links.nth(i).get_attribute("href").split("/trace/")[1].split("?")[0] for i in range(links.count())
    }


def _sign_in(page: Any, email: str, password: str) -> None:
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click(".signin-form button[type=submit]")


def test_sign_in_switch_projects_sign_out_and_an_ended_session(signin_live, store, clock, browser_page):
    alpha, gamma = seed_project(store, "alpha"), seed_project(store, "gamma")
    bravo = seed_project(store, "bravo")
    add_account(store, "ann@example.com", PASSWORD, "alpha", "gamma")
    page = browser_page

    page.goto(signin_live + "/traces?range=all")
    page.wait_for_url("**/signin?next=**")
    expect(page.locator("h1")).to_have_text("Sign in")
    assert page.locator("header nav").count() == 0  # nothing of the UI before sign-in
    _sign_in(page, "ann@example.com", "not it")
    expect(page.locator(".signin-message")).to_have_text("Wrong e-mail address or password.")
    _shot(page, "signin-wrong-password")

    _sign_in(page, "ann@example.com", PASSWORD)
    page.wait_for_url("**/traces?range=all")
    expect(page.locator("[data-field=signed-in-as]")).to_have_text("ann@example.com")
    assert _trace_ids(page) == {alpha.trace_id, alpha.coding_trace_id}
    switcher = page.locator("select[name=project] option")
    assert [switcher.nth(i).get_attribute("value") for i in range(switcher.count())] == ["alpha", "gamma"]
    _shot(page, "signin-alpha")

    page.select_option("select[name=project]", "gamma")  # the switcher submits itself
    page.wait_for_url("**project=gamma**")
    assert _trace_ids(page) == {gamma.trace_id, gamma.coding_trace_id}
    _shot(page, "signin-switched-to-gamma")
    refused = page.goto(signin_live + "/traces?project=bravo")
    assert refused is not None and refused.status == 403
    assert "project bravo is not one of yours" in page.locator(".error-page").inner_text()
    assert bravo.trace_id not in page.content()

    page.goto(signin_live + "/traces?range=all")
    page.click("form[action='/signout'] button")
    page.wait_for_url("**/signin?why=signed_out")
    expect(page.locator(".signin-message")).to_have_text("You are signed out.")
    _shot(page, "signin-signed-out")
    page.goto(signin_live + "/overview")
    page.wait_for_url("**/signin?next=%2Foverview")

    # a session that ends while its page is open: the next htmx request goes to the form
    _sign_in(page, "ann@example.com", PASSWORD)
    page.wait_for_url("**/overview")
    page.goto(signin_live + "/traces?range=all")
    clock.offset += 601  # ten minutes and a second without a request
    page.select_option("select[name=agent]", "agent-alpha")
    page.wait_for_url("**/signin?next=**why=expired")
    expect(page.locator(".signin-message")).to_have_text("Your session has ended. Sign in again to go on.")
    _shot(page, "signin-session-ended")
    _sign_in(page, "ann@example.com", PASSWORD)
    page.wait_for_url("**/traces?**agent=agent-alpha**")
    assert _trace_ids(page) == {alpha.trace_id}
    # the console notes the answers that were refusals (the wrong password, bravo, the ended
    # session's htmx request), and nothing else
    refused = "Failed to load resource: the server responded with a status of {}"
    assert page.problems == [
        refused.format("401 (Unauthorized)"),
        refused.format("403 (Forbidden)"),
        refused.format("401 (Unauthorized)"),
    ]
