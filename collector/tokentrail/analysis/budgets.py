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
import re
import threading
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Budget", "BudgetAlerter", "BudgetStatus", "evaluate", "parse_budgets"]

logger = logging.getLogger("tokentrail.budgets")

_SCOPES = {"project": "", "service": "service_name", "user": "user_id"}
_ITEM = re.compile(r"^(daily|monthly):(project|service|user)=([^:,]{1,200}):([0-9]+(?:\.[0-9]+)?)$")


@dataclass(frozen=True)
class Budget:
    period: str  # "daily" or "monthly"
    scope: str  # "project", "service" or "user"
    value: str  # the project, service or user it limits
    limit_usd: float
    project: str  # the project whose spend counts

    @property
    def key(self) -> str:
        return f"{self.period}:{self.scope}={self.value}"


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


def parse_budgets(raw: str, default_project: str = "default") -> list[Budget]:
    """`daily:project=default:50,monthly:service=support-bot:1000` → budgets; ValueError says what is wrong."""
    budgets = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(
                f"{item!r} is not period:scope=value:usd (period daily|monthly, scope project|service|user)"
            )
        value = match[3].strip()
        budgets.append(
            Budget(
                match[1],
                match[2],
                value,
                float(match[4]),
                value if match[2] == "project" else default_project,
            )
        )
    return budgets


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
        where = (
            "project = {project:String} AND start_time >= {start:DateTime64(3)} "
            "AND start_time < {end:DateTime64(3)}"
        )
        params: dict[str, Any] = {
            "project": b.project,
            "start": start.replace(tzinfo=None),
            "end": end.replace(tzinfo=None),
            "value": b.value,
        }
        if b.scope != "project":
            where += f" AND {_SCOPES[b.scope]} = {{value:String}}"
        spent = float(
            client.query(
                f"SELECT sum(cost_usd) FROM traces FINAL WHERE {where}", parameters=params
            ).result_rows[0][0]
            or 0.0
        )
        elapsed = max((now - start) / (end - start), 1e-6)
        statuses.append(BudgetStatus(b, start, spent, spent / elapsed, min(elapsed, 1.0)))
    return statuses


_SENT = "SELECT budget, period_start FROM budget_alerts"
_RECORD = "INSERT INTO budget_alerts (budget, period_start, projected_usd) VALUES"


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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self, now: datetime | None = None) -> list[BudgetStatus]:
        """Alert for every budget newly projected over its limit; returns those alerted now."""
        done = {(k, p.replace(tzinfo=UTC)) for k, p in self.client.query(_SENT).result_rows}
        alerted = []
        for status in evaluate(self.client, self.budgets, now):
            if status.state == "ok" or (status.budget.key, status.period_start) in done:
                continue
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
            self.client.insert(
                "budget_alerts",
                [[status.budget.key, status.period_start.replace(tzinfo=None), status.projected_usd]],
                column_names=["budget", "period_start", "projected_usd"],
                settings={"async_insert": 0},
            )
            self.sent += 1
            alerted.append(status)
        return alerted

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
