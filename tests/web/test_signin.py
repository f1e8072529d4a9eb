"""Signing in and what guards it: sessions that end (idle, absolute, signed out), form tokens,
slowed sign-in attempts, the Host check, the loopback guard, and header sign-in from trusted
proxies only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests.support.access import add_account, form_token, seed_project, sign_in
from tokentrail.server.settings import SettingsError, from_env
from tokentrail.store import users
from tokentrail.web.app import create_app

PASSWORD = "a long enough password"


class Clock:
    """The app's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _client(settings: Any, store: Any, clock: Clock, **kwargs: Any) -> TestClient:
    app = create_app(settings, store)
    app.state.clock = clock
    return TestClient(app, **kwargs)


@pytest.fixture
def password_settings(settings: Any) -> Any:
    return settings.with_(auth="password", session_idle_seconds=600, session_max_seconds=3600)


@pytest.fixture
def web(password_settings: Any, store: Any, clock: Clock) -> Iterator[TestClient]:
    add_account(store, "ann@example.com", PASSWORD, "alpha", "gamma")
    with _client(password_settings, store, clock) as client:
        yield client


def _soup(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def _text(page: BeautifulSoup, selector: str) -> str:
    found = page.select_one(selector)
    assert found is not None, selector
    return found.get_text()


def _attr(page: BeautifulSoup, selector: str, name: str) -> str:
    found = page.select_one(selector)
    assert found is not None, selector
    return str(found[name])


def _message(response: Any) -> str:
    found = _soup(response).select_one(".signin-message")
    return found.get_text(strip=True) if found else ""


def test_sign_in_shows_the_members_projects_and_signs_out(web: TestClient, store: Any) -> None:
    seeded = seed_project(store, "alpha")
    seed_project(store, "bravo")
    first = web.get("/traces?range=all", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/signin?next=%2Ftraces%3Frange%3Dall"

    wrong = sign_in(web, "ann@example.com", "not the password")
    assert wrong.status_code == 401 and _message(wrong) == "Wrong e-mail address or password."
    assert "tt_session" not in web.cookies
    unknown = sign_in(web, "nobody@example.com", PASSWORD)
    assert unknown.status_code == 401 and _message(unknown) == "Wrong e-mail address or password."

    signed = sign_in(web, "ANN@example.com", PASSWORD, "/traces?range=all")
    assert signed.status_code == 303 and signed.headers["location"] == "/traces?range=all"
    cookie = signed.headers["set-cookie"]
    assert "tt_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http, and no trusted proxy says otherwise
    page = _soup(web.get("/traces?range=all"))
    assert _text(page, "[data-field=signed-in-as]") == "ann@example.com"
    # the switcher offers the member's projects, not every project in the database
    assert [o["value"] for o in page.select("select[name=project] option")] == ["alpha", "gamma"]
    assert {
        str(a["href"]).split("/trace/")[1].split("?")[0] for a in page.select("table.traces td.name > a")
    } == {
        seeded.trace_id,
        seeded.coding_trace_id,
    }
    assert web.get("/traces.json?project=gamma").json()["traces"] == []
    assert web.get("/traces.json?project=bravo").status_code == 403

    # a membership removed counts from the next request
    users.remove_membership(store.client, "ann@example.com", "gamma")
    assert web.get("/traces.json?project=gamma").status_code == 403

    kept = web.cookies["tt_session"]
    out = web.post("/signout", data={"csrf_token": form_token(web.get("/traces"))}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/signin?why=signed_out"
    assert "tt_session" not in web.cookies
    # the cookie kept from before opens nothing: the session is revoked on the server
    web.cookies.set("tt_session", kept)
    replay = web.get("/traces.json")
    assert replay.status_code == 401 and "your session has ended" in replay.json()["error"]


def test_sessions_end_after_idle_time_and_at_their_absolute_limit(web: TestClient, clock: Clock) -> None:
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    for _ in range(6):  # active every 9 minutes: the idle limit of 10 never passes
        clock.now += 540
        assert web.get("/traces.json").status_code == 200
    clock.now += 540  # 63 minutes after sign-in: past the absolute hour
    ended = web.get("/traces", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"] == "/signin?next=%2Ftraces&why=expired"
    assert _message(web.get(ended.headers["location"])) == "Your session has ended. Sign in again to go on."

    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    clock.now += 599
    assert web.get("/traces.json").status_code == 200
    clock.now += 601  # idle for longer than 10 minutes
    assert web.get("/traces.json").json() == {"error": "your session has expired: sign in again"}


def test_a_new_password_or_a_removed_account_ends_its_sessions(web: TestClient, store: Any) -> None:
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    users.revoke_sessions(store.client, "ann@example.com")  # what `tokentrail users passwd` does
    assert web.get("/traces.json").status_code == 401
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    users.remove_user(store.client, "ann@example.com")
    assert web.get("/traces.json").status_code == 401
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 401


def test_changes_need_the_form_token_of_their_browser(
    web: TestClient, password_settings: Any, store: Any, clock: Clock
) -> None:
    no_token = web.post(
        "/signin", data={"email": "ann@example.com", "password": PASSWORD}, follow_redirects=False
    )
    assert no_token.status_code == 403 and "came from another site" in no_token.text
    with _client(password_settings, store, clock) as other:
        someone_elses = form_token(other.get("/signin"))
    stolen = web.post(
        "/signin",
        data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": someone_elses},
        follow_redirects=False,
    )
    assert stolen.status_code == 403 and "tt_session" not in web.cookies
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    # signed in, the token is bound to the session: the sign-in page's token no longer serves
    assert web.post("/signout", data={"csrf_token": someone_elses}).status_code == 403
    assert web.get("/traces.json").status_code == 200  # still signed in
    page = _soup(web.get("/traces"))
    meta = _attr(page, "meta[name=csrf-token]", "content")  # what htmx sends as a header
    assert meta == _attr(page, "form[action='/signout'] input[name=csrf_token]", "value")
    out = web.post("/signout", headers={"X-CSRF-Token": meta}, follow_redirects=False)
    assert out.status_code == 303
    assert web.get("/traces.json").status_code == 401


def test_failed_sign_ins_slow_the_next_ones(web: TestClient, store: Any, clock: Clock) -> None:
    for _ in range(5):
        assert sign_in(web, "ann@example.com", "wrong password").status_code == 401
        clock.now += 1
    # the sixth failure in a row makes the next attempt wait, even with the right password
    assert sign_in(web, "ann@example.com", "wrong password").status_code == 401
    held = sign_in(web, "ann@example.com", PASSWORD)
    assert held.status_code == 429 and held.headers["retry-after"] == "1"
    assert _message(held) == "Too many failed sign-ins. Try again in 1 second."
    clock.now += 1
    assert sign_in(web, "ann@example.com", "wrong again").status_code == 401
    held = sign_in(web, "ann@example.com", PASSWORD)
    assert held.status_code == 429 and held.headers["retry-after"] == "2"  # twice as long each time
    clock.now += 2
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303
    # a success clears the account's count
    assert sign_in(web, "ann@example.com", "wrong password").status_code == 401
    assert sign_in(web, "ann@example.com", PASSWORD).status_code == 303


def test_one_address_trying_many_accounts_is_slowed_too(
    password_settings: Any, store: Any, clock: Clock
) -> None:
    add_account(store, "bob@example.com", PASSWORD, "alpha")
    proxied = password_settings.with_(trusted_proxies=("10.0.0.0/8",))

    def guess_21_accounts(web: TestClient, forwarded_for: Callable[[int], str]) -> None:
        for i in range(21):
            web.headers["X-Forwarded-For"] = forwarded_for(i)
            assert sign_in(web, f"guess{i}@example.com", "x" * 10).status_code == 401

    with _client(proxied, store, clock, client=("10.0.0.5", 4000)) as web:
        guess_21_accounts(web, lambda i: "198.51.100.7")
        assert sign_in(web, "bob@example.com", PASSWORD).status_code == 429
        web.headers["X-Forwarded-For"] = "198.51.100.8"  # another client behind the same proxy
        assert sign_in(web, "bob@example.com", PASSWORD).status_code == 303
    # X-Forwarded-For from a peer that is not a trusted proxy is not believed
    with _client(proxied, store, clock, client=("192.0.2.1", 4000)) as web:
        guess_21_accounts(web, lambda i: f"203.0.113.{i}")
        assert sign_in(web, "bob@example.com", PASSWORD).status_code == 429


def test_secure_cookies_over_tls_as_a_trusted_proxy_says(
    password_settings: Any, store: Any, clock: Clock
) -> None:
    add_account(store, "ann@example.com", PASSWORD, "alpha")
    proxied = password_settings.with_(trusted_proxies=("10.0.0.0/8",))
    for peer, secure in ((("10.0.0.5", 4000), True), (("192.0.2.1", 4000), False)):
        with _client(proxied, store, clock, client=peer, headers={"X-Forwarded-Proto": "https"}) as web:
            cookie = sign_in(web, "ann@example.com", PASSWORD).headers["set-cookie"]
            assert ("; Secure" in cookie or "; secure" in cookie) is secure, (peer, cookie)


def test_only_our_host_names_are_answered(settings: Any, store: Any, clock: Clock) -> None:
    named = settings.with_(ui_hosts=("tokentrail.example.com",))
    with _client(named, store, clock, base_url="http://tokentrail.example.com") as web:
        assert web.get("/traces.json").status_code == 200
        assert web.get("/traces.json", headers={"Host": "TokenTrail.example.com:443"}).status_code == 200
        for host in ("attacker.example", "tokentrail.example.com.attacker.example", "", "127.0.0.1"):
            refused = web.get("/traces.json", headers={"Host": host})
            assert refused.status_code == 400, host
            assert "does not answer for the host" in refused.text
    # by default: the loopback names, which a rebinding attacker's name is not
    default = from_env({"TOKENTRAIL_DATA_DIR": str(settings.data_dir)})
    assert default.ui_hosts == ("localhost", "127.0.0.1", "::1")
    loopback = settings.with_(ui_hosts=default.ui_hosts)
    with _client(loopback, store, clock, base_url="http://127.0.0.1:4320") as web:
        assert web.get("/traces.json").status_code == 200
        assert web.get("/traces.json", headers={"Host": "[::1]:4320"}).status_code == 200
        assert web.get("/traces.json", headers={"Host": "localhost:4320"}).status_code == 200
        assert web.get("/traces.json", headers={"Host": "rebind.attacker.example:4320"}).status_code == 400


def test_without_sign_in_the_ui_serves_loopback_only(settings: Any, store: Any) -> None:
    assert settings.ui_host == "127.0.0.1" and settings.auth == "none"
    for host in ("0.0.0.0", "::", "192.0.2.10", "tokentrail.internal"):
        with pytest.raises(SettingsError, match="TOKENTRAIL_UI_ALLOW_ANONYMOUS=1"):
            create_app(settings.with_(ui_host=host), store)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        create_app(settings.with_(ui_host=host), store)
    create_app(settings.with_(ui_host="0.0.0.0", ui_allow_anonymous=True), store)
    create_app(settings.with_(ui_host="0.0.0.0", auth="password"), store)
    # the command says so and stops, naming the setting
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    env |= {"TOKENTRAIL_DATA_DIR": str(settings.data_dir / "cli"), "TOKENTRAIL_UI_HOST": "0.0.0.0"}
    out = subprocess.run(
        [sys.executable, "-m", "tokentrail", "web"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "TOKENTRAIL_UI_HOST=0.0.0.0 would show every project to anyone" in out.stderr


def test_header_sign_in_is_believed_from_trusted_proxies_only(
    settings: Any, store: Any, clock: Clock
) -> None:
    seeded = seed_project(store, "alpha")
    users.save_user(store.client, "sso@example.com", "")  # no password: the proxy signs it in
    users.add_membership(store.client, "sso@example.com", "alpha")
    header = settings.with_(
        auth="header", trusted_proxies=("10.0.0.0/8",), auth_signout_url="/oauth2/sign_out"
    )
    as_sso = {"X-Forwarded-Email": "SSO@example.com"}
    with _client(header, store, clock, client=("10.1.2.3", 4000)) as proxy:
        listed = proxy.get("/traces.json?range=all", headers=as_sso)
        assert listed.status_code == 200
        assert {t["trace_id"] for t in listed.json()["traces"]} == {seeded.trace_id, seeded.coding_trace_id}
        page = _soup(proxy.get("/traces", headers=as_sso))
        assert _text(page, "[data-field=signed-in-as]") == "sso@example.com"
        token = _attr(page, "meta[name=csrf-token]", "content")
        out = proxy.post("/signout", headers={**as_sso, "X-CSRF-Token": token}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/oauth2/sign_out"
        nobody = proxy.get("/traces.json", headers={"X-Forwarded-Email": "stranger@example.com"})
        assert nobody.status_code == 401 and "no account stranger@example.com" in nobody.json()["error"]
        missing = proxy.get("/traces", follow_redirects=False)
        assert missing.status_code == 401 and "single sign-on proxy" in missing.text
        # a password sign-in is not offered: the account has none, and the mode is the proxy's
        assert proxy.get("/signin").status_code == 401
    with _client(header, store, clock, client=("192.0.2.50", 4000)) as direct:
        forged = direct.get("/traces.json", headers=as_sso)
        assert forged.status_code == 401 and seeded.trace_id not in forged.text


def test_settings_of_sign_in_are_checked(tmp_path: Any) -> None:
    base = {"TOKENTRAIL_DATA_DIR": str(tmp_path)}
    for env, message in [
        ({"TOKENTRAIL_AUTH": "ldap"}, "TOKENTRAIL_AUTH='ldap': use none, password, header"),
        ({"TOKENTRAIL_AUTH": "header"}, "TOKENTRAIL_AUTH=header needs TOKENTRAIL_TRUSTED_PROXIES"),
        ({"TOKENTRAIL_TRUSTED_PROXIES": "proxy.local"}, "'proxy.local' is not an IP address or network"),
        ({"TOKENTRAIL_SECRET_KEY": "short"}, "at least 32 characters"),
        (
            {"TOKENTRAIL_SESSION_IDLE_SECONDS": "7200", "TOKENTRAIL_SESSION_MAX_SECONDS": "3600"},
            "is longer than",
        ),
        ({"TOKENTRAIL_UI_HOSTS": "https://x.example"}, "is not a host name"),
        ({"TOKENTRAIL_UI_ALLOW_ANONYMOUS": "maybe"}, "use 1 or 0"),
        ({"TOKENTRAIL_AUTH_SIGNOUT_URL": "https://idp.example/logout"}, "must be a path"),
    ]:
        with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("'", ".")):
            from_env(base | env)
    found = from_env(
        base
        | {
            "TOKENTRAIL_AUTH": "header",
            "TOKENTRAIL_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "TOKENTRAIL_UI_HOST": "10.0.0.2",
        }
    )
    assert found.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
    assert found.ui_hosts == ("localhost", "127.0.0.1", "::1", "10.0.0.2")
    assert found.host == "127.0.0.1"  # the collector's address is its own setting


def test_the_signing_key_is_kept_between_starts(settings: Any, store: Any, clock: Clock) -> None:
    signed = settings.with_(auth="password")
    add_account(store, "ann@example.com", PASSWORD, "alpha")
    with _client(signed, store, clock) as first:
        assert sign_in(first, "ann@example.com", PASSWORD).status_code == 303
        cookie = first.cookies["tt_session"]
    key = settings.data_dir / "ui_secret_key"
    assert key.stat().st_mode & 0o777 == 0o600
    with _client(signed, store, clock) as second:  # a restart: the same key, the session holds
        second.cookies.set("tt_session", cookie)
        assert second.get("/traces.json").status_code == 200
    with _client(signed.with_(secret_key="k" * 40), store, clock) as other:  # another key: it does not
        other.cookies.set("tt_session", cookie)
        assert other.get("/traces.json").status_code == 401


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/costs?by=model", "/costs?by=model"),
        ("//elsewhere.example/x", "/"),
        ("https://elsewhere.example/", "/"),
        ("/\t/elsewhere.example", "/"),
        ("/\\elsewhere.example", "/"),
        ("costs", "/"),
    ],
)
def test_after_sign_in_only_a_page_of_ours_is_next(web: TestClient, asked: str, went: str) -> None:
    signed = sign_in(web, "ann@example.com", PASSWORD, asked)
    assert signed.status_code == 303 and signed.headers["location"] == went
