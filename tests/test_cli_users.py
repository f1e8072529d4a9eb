"""`tokentrail users`: accounts and memberships as an operator manages them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.test_cli import _run
from tokentrail import cli
from tokentrail.store import users


@pytest.fixture
def same_database(settings, store, monkeypatch):
    """The CLI, run in this process, opens the test's own database."""
    monkeypatch.setenv("TOKENTRAIL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_DATABASE", settings.database)
    return store


def _account(client, email: str) -> users.User:
    found = users.get_user(client, email)
    assert found is not None, email
    return found


def _users(monkeypatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(["users", *args])


def test_add_list_passwd_and_remove(same_database, monkeypatch, capsys):
    client = same_database.client
    assert (
        _users(
            monkeypatch,
            "add",
            "Alice@Example.com ",
            "--project",
            "alpha",
            "--password-stdin",
            stdin="correct horse\n",
        )
        == 0
    )
    alice = users.get_user(client, "alice@example.com")
    assert alice is not None and alice.projects == ("alpha",)
    assert users.verify_password("correct horse", alice.password_hash)
    assert not users.verify_password("correct horse\n", alice.password_hash)

    # an existing account joins another project without a password
    assert _users(monkeypatch, "add", "alice@example.com", "--project", "beta") == 0
    assert _account(client, "alice@example.com").projects == ("alpha", "beta")
    assert _users(monkeypatch, "add", "sso@example.com", "--project", "beta", "--no-password") == 0
    capsys.readouterr()
    assert _users(monkeypatch, "list") == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert listed == [
        ["email", "projects", "sign-in"],
        ["alice@example.com", "alpha,beta", "password"],
        ["sso@example.com", "beta", "single sign-on only"],
    ]

    # a new password ends the account's sessions
    sid = users.create_session(
        client, "alice@example.com", datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    )
    assert (
        _users(monkeypatch, "passwd", "alice@example.com", "--password-stdin", stdin="battery staple\n") == 0
    )
    assert users.live_session(client, sid, datetime.now(UTC).replace(tzinfo=None)) is None
    assert users.verify_password("battery staple", _account(client, "alice@example.com").password_hash)

    assert _users(monkeypatch, "remove", "alice@example.com", "--project", "alpha") == 0
    assert _account(client, "alice@example.com").projects == ("beta",)
    assert _users(monkeypatch, "remove", "alice@example.com") == 0
    gone = users.get_user(client, "alice@example.com")
    assert gone is not None and gone.disabled and gone.projects == () and not gone.has_password
    out = capsys.readouterr()
    assert "correct horse" not in out.out + out.err and "battery staple" not in out.out + out.err


def test_password_is_asked_twice_without_echo(same_database, monkeypatch):
    asked: list[str] = []
    answers = iter(["s3cret-enough", "s3cret-enough"])

    def getpass(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    monkeypatch.setattr("sys.stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    assert cli.main(["users", "add", "bob@example.com", "--project", "alpha"]) == 0
    assert asked == ["Password: ", "Again: "]
    assert users.verify_password(
        "s3cret-enough", _account(same_database.client, "bob@example.com").password_hash
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("add", "not-an-address", "--project", "a", "--password-stdin"),
            "long enough\n",
            "is not an e-mail address",
        ),
        (("add", "c@example.com", "--project", "a b", "--password-stdin"), "long enough\n", "project 'a b'"),
        (("add", "c@example.com", "--project", "a", "--password-stdin"), "short\n", "8 to 1024 characters"),
        (("add", "c@example.com", "--project", "a"), "", "no terminal to ask for the password"),
        (
            ("passwd", "nobody@example.com", "--password-stdin"),
            "long enough\n",
            "no account nobody@example.com",
        ),
        (("remove", "nobody@example.com"), "", "no account nobody@example.com"),
    ],
)
def test_refusals_say_why_and_change_nothing(same_database, monkeypatch, args, stdin, message):
    with pytest.raises(SystemExit) as exc:
        _users(monkeypatch, *args, stdin=stdin)
    assert message in str(exc.value)
    assert users.list_users(same_database.client) == []


def test_the_installed_command_reads_the_password_from_stdin(tmp_path):

    env = {"TOKENTRAIL_DATA_DIR": str(tmp_path)}
    added = _add_ops_user({**_clean_env(), **env})
    assert added.returncode == 0, added.stderr
    assert "a long passphrase" not in added.stdout + added.stderr
    listed = _run("users", "list", **env)
    assert "ops@example.com\talpha\tpassword" in listed.stdout


def _add_ops_user(env: dict[str, str]) -> Any:
    """`tokentrail users add ops@example.com --project alpha`, the password piped in, as a user
    runs the installed command."""
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tokentrail",
            "users",
            "add",
            "ops@example.com",
            "--project",
            "alpha",
            "--password-stdin",
        ],
        input="a long passphrase\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}


def test_status_sends_a_read_key_when_one_is_needed(settings, store):
    from tests.support.collector import running_collector

    keyed = settings.with_(api_keys={"read-key-0123456789": "alpha"})
    with running_collector(keyed, store) as tt:
        url = f"{tt.http_url}/api/status"
        refused = _run("status", "--url", url)
        assert refused.returncode != 0
        assert "needs a read key: pass --api-key or set TOKENTRAIL_API_KEY" in refused.stderr
        assert str(keyed.spool_dir) not in refused.stdout + refused.stderr
        with_flag = _run("status", "--url", url, "--api-key", "read-key-0123456789")
        assert with_flag.returncode == 0 and "collector: running" in with_flag.stdout
        from_env = _run("status", "--url", url, "--json", TOKENTRAIL_API_KEY="read-key-0123456789")
        assert from_env.returncode == 0
        assert json.loads(from_env.stdout)["spool"]["directory"] == str(keyed.spool_dir)


def test_accounts_change_while_the_server_runs(tmp_path):
    """The running server holds the embedded database; the commands reach it through the server,
    and what they change counts from the next request."""
    import signal
    import subprocess
    import sys

    import httpx

    from tests.support.access import sign_in
    from tests.support.collector import collector_env, free_port, start_collector_process

    port, ui_port = free_port(), free_port()
    env = collector_env(str(tmp_path), port, TOKENTRAIL_UI_PORT=str(ui_port), TOKENTRAIL_AUTH="password")
    proc = start_collector_process(env, port, command="up")
    try:
        added = _add_ops_user(env)
        assert added.returncode == 0, added.stderr
        web = httpx.Client(base_url=f"http://127.0.0.1:{ui_port}")
        assert sign_in(web, "ops@example.com", "wrong passphrase").status_code == 401
        signed = sign_in(web, "ops@example.com", "a long passphrase", "/traces")
        assert (signed.status_code, signed.headers["location"]) == (303, "/traces")
        assert web.get("/traces").status_code == 200

        removed = subprocess.run(
            [sys.executable, "-m", "tokentrail", "users", "remove", "ops@example.com"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert removed.returncode == 0, removed.stderr
        after = web.get("/traces", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"].startswith("/signin")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
