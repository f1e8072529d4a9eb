"""Retention: ClickHouse deletes telemetry older than `TOKENTRAIL_RETENTION_DAYS` on its own.

`migrate` gives every table that holds telemetry (`TELEMETRY`: the table, and the time column a
row's age is counted from) the TTL `toDateTime(column) + INTERVAL days DAY`, or removes it when the
setting is 0 or unset, and records in `schema_retention` the days each table was given: a run
changes only what differs from the record, and says what it changed. In cluster mode the TTL is
on each shard's local table. A new telemetry table gets the TTL at the next `migrate`.

ClickHouse applies a TTL when it merges parts (and at once to the parts already there: setting or
changing it starts a mutation that rewrites the parts holding expired rows), so expired rows
linger until the next merge of their part: hours, not seconds.

Not telemetry, never expired here (`KEPT`): projects, API keys, users and their memberships, the
UI's sessions (their own TTL ends them a day after they expire), the budget alerts already sent
(one row per budget and period: deleting one would send its alert again), the collectors' claims
(their own TTL ends them after a day) and migrate's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokentrail.store._rows import bound
from tokentrail.store.cluster import local_name

__all__ = ["KEPT", "RECORD_TABLE", "TELEMETRY", "RetentionChange", "apply_retention", "ttl_statement"]

#: table -> the time column its rows' age is counted from
TELEMETRY = {
    "spans": "start_time",
    "traces": "start_time",
    "logs": "timestamp",
    "agent_events": "timestamp",
    "metric_points": "time",
    "trace_waste": "start_time",
    "waste_findings": "start_time",
    "model_steps": "start_time",
    "outcomes": "recorded_at",
}
#: the tables that are not telemetry (the module's docstring says why each is kept)
KEPT = (
    "projects",
    "api_keys",
    "users",
    "memberships",
    "ui_sessions",
    "budget_alerts",
    "claims",
    "schema_migrations",
    "schema_retention",
)

#: the days each table's TTL was last set to (0: none)
RECORD_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_retention (name String, days UInt32, "
    "applied_at DateTime64(6) DEFAULT now64(6)) ENGINE = ReplacingMergeTree(applied_at) ORDER BY name"
)


@dataclass(frozen=True)
class RetentionChange:
    """A table's retention, in days, before and after `apply_retention` (0: kept forever)."""

    table: str
    before: int
    after: int

    def __str__(self) -> str:
        def days(n: int) -> str:
            return f"{n} days" if n else "forever"

        return f"retention of {self.table}: {days(self.after)} (was {days(self.before)})"


def ttl_statement(table: str, days: int, cluster: str = "", database: str = "") -> str:
    """The ALTER that keeps `table`'s rows `days` days (0: forever), on its local tables on a cluster."""
    target = f"{database}.{local_name(table)} ON CLUSTER {cluster}" if cluster else table
    if days:
        return f"ALTER TABLE {target} MODIFY TTL toDateTime({TELEMETRY[table]}) + INTERVAL {int(days)} DAY"
    return f"ALTER TABLE {target} REMOVE TTL"


def apply_retention(client: Any, days: int, cluster: str, database: str) -> list[RetentionChange]:
    """Give every telemetry table the TTL of `days` (0: none) where its record differs; returns
    what changed. Tables not created yet are left for the run that creates them."""
    recorded = {
        name: int(kept)
        for name, kept in client.query("SELECT name, days FROM schema_retention FINAL").result_rows
    }
    names = {local_name(t) if cluster else t: t for t in TELEMETRY}
    found = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {database:String} "
        "AND name IN (SELECT arrayJoin({names:Array(String)}))",
        parameters=bound({"database": database, "names": list(names)}),
    ).result_rows
    has_ttl = {names[name]: " TTL " in engine for name, engine in found}
    changes = []
    for table in TELEMETRY:
        before = recorded.get(table, 0)
        if table not in has_ttl or before == days:
            continue
        if days or has_ttl[table]:
            client.command(ttl_statement(table, days, cluster, database))
        client.insert("schema_retention", [[table, days]], column_names=["name", "days"])
        changes.append(RetentionChange(table, before, days))
    return changes
