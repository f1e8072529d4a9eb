"""`/health` of the web UI: open to probes without sign-in, and true to whether the database answers."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.collector import free_port
from tokentrail.store import Store
from tokentrail.store.keys import KeyRing
from tokentrail.web.app import create_app
from tokentrail.web.auth import RingKeys


def test_health_needs_no_sign_in_and_answers_only_ok(settings: Any, store: Any) -> None:
    signed = settings.with_(auth="password")
    with TestClient(create_app(signed, store), base_url="http://127.0.0.1") as web:
        page = web.get("/traces", follow_redirects=False)
        assert page.status_code == 303  # the pages still ask for sign-in
        health = web.get("/health")
        assert (health.status_code, health.text) == (200, "ok\n")
        assert health.headers["cache-control"] == "no-store"
        # a name that is not one of the UI's hosts is refused here as everywhere
        assert web.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_health_is_503_when_the_database_does_not_answer(
    settings: Any, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gone = f"http://tokentrail:secret@127.0.0.1:{free_port()}"  # nothing listens there
    cut_off = Store(settings, store.client, url=gone)
    keys = RingKeys(KeyRing(settings, store.new_client()))
    with (
        caplog.at_level(logging.WARNING),
        TestClient(create_app(settings, cut_off, keys=keys), base_url="http://127.0.0.1") as web,
    ):
        health = web.get("/health")
    assert (health.status_code, health.text) == (503, "database unreachable\n")
    assert "secret" not in health.text
    assert any("the database does not answer" in r.getMessage() for r in caplog.records)
