"""Budgets: parsing, the burn-rate projection, the webhook alert (once per period) and the overview."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests.support.recorder import Recorder
from tokentrail.analysis.budgets import BudgetAlerter, evaluate, parse_budgets
from tokentrail.server.settings import SettingsError, from_env
from tokentrail.web.app import create_app


def test_budget_settings_are_checked():
    budgets = parse_budgets("daily:project=default:50, monthly:user=alice:200.5", "default")
    assert [(b.period, b.scope, b.value, b.limit_usd, b.project) for b in budgets] == [
        ("daily", "project", "default", 50.0, "default"),
        ("monthly", "user", "alice", 200.5, "default"),
    ]
    with pytest.raises(SettingsError, match="TOKENTRAIL_BUDGETS: 'weekly:project=x:5' is not period:scope"):
        from_env({"TOKENTRAIL_BUDGETS": "weekly:project=x:5"})
    with pytest.raises(SettingsError, match="TOKENTRAIL_BUDGET_WEBHOOK"):
        from_env({"TOKENTRAIL_BUDGET_WEBHOOK": "ftp://x"})


def _spend(store: Any, user: str, n: int) -> float:
    rec = Recorder()
    now = datetime.now(tz=UTC)  # inside today, even just after midnight
    rec.clock = int(
        max(now - timedelta(minutes=5), now.replace(hour=0, minute=0, second=0)).timestamp() * 1e9
    )
    for _ in range(n):
        with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", user__id=user):
            rec.chat("gpt-4o", "openai", 100_000, 1000)
    rec.store(store.client)
    return float(store.client.query("SELECT sum(cost_usd) FROM traces FINAL").result_rows[0][0])


def test_projection_is_spend_over_the_elapsed_share(store):
    spent = _spend(store, "alice", 2)
    now = datetime.now(tz=UTC)
    (daily, user) = evaluate(
        store.client, parse_budgets("daily:project=default:1000,monthly:user=bob:1"), now
    )
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - start) / timedelta(days=1)
    assert daily.spent_usd == pytest.approx(spent) and daily.projected_usd == pytest.approx(spent / elapsed)
    assert daily.state == "ok" and user.spent_usd == 0  # bob spent nothing


class _Hook:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                hook.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_a_budget_projected_over_its_limit_alerts_once_per_period(store, settings):
    spent = _spend(store, "alice", 2)
    hook = _Hook()
    budgets = parse_budgets(f"daily:user=alice:{spent / 10:.6f},daily:project=default:1000000")
    alerter = BudgetAlerter(store.client, budgets, hook.url, ui_url="http://ui")
    (status,) = alerter.check()
    assert status.budget.value == "alice" and status.state == "exceeded"
    (alert,) = hook.received
    assert alert["budget"]["scope"] == "user" and alert["state"] == "exceeded"
    assert alert["spent_usd"] == pytest.approx(spent) and alert["overview"] == "http://ui/overview"
    assert "daily budget for user alice is exceeded" in alert["text"]
    assert alerter.check() == [] and len(hook.received) == 1  # once per period, even after a restart:
    assert BudgetAlerter(store.client, budgets, hook.url).check() == []
    hook.server.shutdown()

    overview = TestClient(create_app(settings.with_(budgets=tuple(budgets)), store))
    page = BeautifulSoup(overview.get("/overview").text, "html.parser")
    states = {
        row["data-budget"]: row.select_one(".state").get_text(strip=True)  # type: ignore[union-attr]
        for row in page.select("[data-budget]")
    }
    assert states == {"daily:user=alice": "exceeded", "daily:project=default": "ok"}
    api = overview.get("/overview.json").json()["budgets"]
    assert {b["budget"]["value"]: b["state"] for b in api} == {"alice": "exceeded", "default": "ok"}
