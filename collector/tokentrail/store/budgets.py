"""What budgets read and write: spend in a period from the trace summaries, and the alerts already
sent (`budget_alerts`, one row per budget and period, so a restart does not send them again)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tokentrail.store._rows import rows

__all__ = ["record_alert", "sent_alerts", "spent"]

# the trace column a budget's scope limits; a project budget limits the project alone
_SCOPE_COLUMNS = {"project": "", "service": "service_name", "user": "user_id"}

_SPENT = """
SELECT sum(cost_usd) AS spent FROM traces FINAL
WHERE project = {{project:String}} AND start_time >= {{start:DateTime64(3)}} AND start_time < {{end:DateTime64(3)}}
{scope}
"""
_SPENT_BY_SCOPE = {
    scope: _SPENT.format(scope=f"AND {column} = {{value:String}}" if column else "")
    for scope, column in _SCOPE_COLUMNS.items()
}

_SENT = "SELECT budget, period_start FROM budget_alerts"


def spent(client: Any, project: str, scope: str, value: str, start: datetime, end: datetime) -> float:
    """USD spent in the project in [start, end) (naive UTC times), within the service or user
    `value` for a `scope` of "service" or "user"."""
    params = {"project": project, "start": start, "end": end, "value": value}
    return float(rows(client, _SPENT_BY_SCOPE[scope], params)[0]["spent"] or 0.0)


def sent_alerts(client: Any) -> set[tuple[str, datetime]]:
    """(budget key, period start as naive UTC) of every alert already sent."""
    return {(r["budget"], r["period_start"]) for r in rows(client, _SENT)}


def record_alert(client: Any, budget: str, period_start: datetime, projected_usd: float) -> None:
    client.insert(
        "budget_alerts",
        [[budget, period_start, projected_usd]],
        column_names=["budget", "period_start", "projected_usd"],
        settings={"async_insert": 0},
    )
