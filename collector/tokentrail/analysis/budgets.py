"""Budgets: a daily or monthly spend limit per project, service or user, its burn-rate
projection, and a webhook alert when the projection goes over.

Budgets are settings (`TOKENTRAIL_BUDGETS`, e.g. `daily:project=default:50,monthly:user=alice:200`;
amounts in USD); a service or user budget counts spend in the default project. Periods are UTC
calendar days and months. The projection is linear: spend so far
÷ the part of the period that has passed. An alert is sent once per budget and period, when the
projection first exceeds the limit; sent alerts are recorded in `budget_alerts`, so a restart does
not send them again.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tokentrail.server.settings import Budget, parse_budgets
from tokentrail.store import budgets as stored
from tokentrail.store import claims

__all__ = ["Budget", "BudgetAlerter", "BudgetStatus", "evaluate", "parse_budgets"]

logger = logging.getLogger("tokentrail.budgets")


@dataclass
class BudgetStatus:
    budget: Budget
    period_start: datetime
    spent_usd: float
    projected_usd: float
    elapsed: float  # share of the period that has passed

    @property
    def state(self) -> str:
        if self.spent_usd > self.budget.limit_usd:
            return "exceeded"
        return "at risk" if self.projected_usd > self.budget.limit_usd else "ok"


def _period(period: str, now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return start, start + timedelta(days=1)
    start = start.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def evaluate(client: Any, budgets: list[Budget], now: datetime | None = None) -> list[BudgetStatus]:
    """Spend so far in each budget's current period, and where it is heading."""
    now = now or datetime.now(tz=UTC)
    statuses = []
    for b in budgets:
        start, end = _period(b.period, now)
        spent = stored.spent(
            client, b.project, b.scope, b.value, start.replace(tzinfo=None), end.replace(tzinfo=None)
        )
        elapsed = max((now - start) / (end - start), 1e-6)
        statuses.append(BudgetStatus(b, start, spent, spent / elapsed, min(elapsed, 1.0)))
    return statuses


#: an alert claimed by a collector that died without sending it is claimed again after this long
_ALERT_LEASE_SECONDS = 900


class BudgetAlerter:
    """Checks the budgets every `interval` seconds and posts a JSON alert to the webhook."""

    def __init__(
        self, client: Any, budgets: list[Budget], webhook: str, *, interval: float = 60.0, ui_url: str = ""
    ) -> None:
        self.client = client
        self.budgets = budgets
        self.webhook = webhook
        self.interval = interval
        self.ui_url = ui_url
        self.sent = 0
        self.name = claims.holder_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, now: datetime | None = None) -> list[BudgetStatus]:
        """Alert for every budget newly projected over its limit; returns those alerted now."""
        done = {(key, start.replace(tzinfo=UTC)) for key, start in stored.sent_alerts(self.client)}
        alerted = []
        for status in evaluate(self.client, self.budgets, now):
            if status.state == "ok" or (status.budget.key, status.period_start) in done:
                continue
            item = ("", status.budget.key, status.period_start.replace(tzinfo=None))
            if not claims.claim(self.client, "budget_alert", self.name, [item], _ALERT_LEASE_SECONDS):
                continue  # another collector on the same database sends this one
            self._post(status)
            stored.record_alert(
                self.client, status.budget.key, status.period_start.replace(tzinfo=None), status.projected_usd
            )
            self.sent += 1
            alerted.append(status)
        return alerted

    def _post(self, status: BudgetStatus) -> None:
        payload = {
            "text": f"Tokentrail: {status.budget.period} budget for {status.budget.scope} {status.budget.value} "
            f"is {status.state}: ${status.spent_usd:.2f} spent, ${status.projected_usd:.2f} projected, "
            f"limit ${status.budget.limit_usd:.2f}",
            "budget": asdict(status.budget),
            "state": status.state,
            "period_start": status.period_start.isoformat(),
            "spent_usd": status.spent_usd,
            "projected_usd": status.projected_usd,
            "limit_usd": status.budget.limit_usd,
            "overview": f"{self.ui_url}/overview" if self.ui_url else "",
        }
        request = urllib.request.Request(
            self.webhook,
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # a webhook that is down must not stop the server; try again
                logger.warning("budget check failed: %s", exc)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokentrail-budgets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
