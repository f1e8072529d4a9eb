"""Cluster mode: the schema of migrations/ as replicated tables sharded across a ClickHouse cluster.

With `TOKENTRAIL_CLICKHOUSE_CLUSTER` set, `migrate` runs every statement of the migrations as
`statements` rewrites it, from the same SQL files (on a single server they run as written):

- `CREATE TABLE t (...) ENGINE = XMergeTree(args) ...` becomes two tables, both `ON CLUSTER`:
  `t_local` on every node, with the Replicated variant of the engine,
  `ReplicatedXMergeTree('/clickhouse/tables/{shard}/{database}/t_local', '{replica}', args)`: one
  replication log per shard, database and table, the `{shard}` and `{replica}` macros taken from
  each server's configuration and `{database}` expanded by ClickHouse; and `t`, a `Distributed`
  table over the `t_local` of every shard, sharded by `SHARD_KEYS[t]`. Every query and insert
  names `t`, as on a single server.
- `ALTER TABLE t ...`: every command applies to `t_local`; those that change columns apply to `t`
  as well (a Distributed table has columns but no indexes, TTL or settings of its own).
- `CREATE MATERIALIZED VIEW v TO t AS SELECT ... FROM s`: on every node, from `s_local` to
  `t_local`. Rows are inserted into the local tables, so a view on the Distributed ones would see
  nothing. A plain `CREATE VIEW` reads the Distributed tables.
- Anything else (DROP, RENAME, INSERT...) has no rule yet and stops `statements` with a message:
  a migration must not half-apply on a cluster.

A lightweight DELETE on a Distributed table is refused, so every DELETE goes through `delete_rows`,
which in cluster mode deletes from each shard's local table, `ON CLUSTER`.

Queries need two settings, which Tokentrail's connections ask for in cluster mode (`check` refuses
to run without them, e.g. when a read-only profile forbids changing them):
`distributed_product_mode = 'local'`, so that an `IN (SELECT ...)` or `JOIN`
between tables sharded alike runs on each shard over its local tables (every other one is written
`GLOBAL IN` / `GLOBAL JOIN`), and `insert_distributed_sync = 1`, so that an insert is on its
shards when it returns: the writer then moves its spool checkpoint past it, and reads back the
spans it has just written.
"""

from __future__ import annotations

import re
from typing import Any

from tokentrail.store._rows import bound

__all__ = [
    "LOCAL_SUFFIX",
    "SHARD_KEYS",
    "ClusterError",
    "check",
    "delete_rows",
    "delete_statement",
    "local_name",
    "statements",
    "zookeeper_path",
]

LOCAL_SUFFIX = "_local"

# cityHash64 rather than sipHash64: both spread random ids evenly, cityHash64 is the faster, and
# neither resists ids chosen to collide (sipHash64 has no secret key here). A table's key decides
# on which shard its rows already are: it never changes.
_BY_TRACE = "cityHash64(trace_id)"

#: table -> the expression that picks a row's shard. Rows that replace one another (the same
#: ORDER BY key) must land on the same shard, or FINAL, which merges within a shard, keeps both.
SHARD_KEYS = {
    # A trace's rows on one shard: FINAL and the per-trace reads stay right, and an IN or JOIN on
    # trace_id between these tables runs on each shard over its own rows.
    "spans": _BY_TRACE,
    "traces": _BY_TRACE,
    "trace_waste": _BY_TRACE,
    "waste_findings": _BY_TRACE,
    "model_steps": _BY_TRACE,
    # A trace's records together; most records belong to no trace (a coding agent's events), and
    # by trace alone they would all land on one shard: those spread by their hash (which also
    # covers the trace id, so a re-sent record lands where it was).
    "logs": f"if(trace_id = '', record_hash, {_BY_TRACE})",
    # A session's events together: the session builder reads one session at a time, and most
    # events carry no trace id (its reads of this table are by session, never joined to spans).
    "agent_events": "cityHash64(session_id)",
    # A series together (`series` is already a 64-bit hash of the metric and its attributes).
    "metric_points": "series",
    # A target's outcomes together; readers join them to traces by trace, task or conversation
    # id, so those joins are GLOBAL.
    "outcomes": "cityHash64(target_id)",
    # Small tables read through the Distributed table, by their key.
    "budget_alerts": "cityHash64(budget)",
    # A subject's claims on one shard, stamped by one clock: the earliest is the earliest
    "claims": "cityHash64(subject)",
    "projects": "cityHash64(name)",
    "api_keys": "cityHash64(key_id)",
    "users": "cityHash64(email)",
    "memberships": "cityHash64(email)",
    "ui_sessions": "cityHash64(session_id)",
    # migrate's own records, readable from every node through the Distributed table
    "schema_migrations": "version",
    "schema_retention": "cityHash64(name)",
}

_NAME = re.compile(r"^\w+$")
_CREATE_TABLE = re.compile(
    r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s*(?P<body>\(.*)$", re.S | re.I
)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<family>\w*)MergeTree\b\s*", re.I)
_ALTER = re.compile(r"^ALTER\s+TABLE\s+(?P<name>\w+)\s+(?P<commands>.+)$", re.S | re.I)
_COLUMN_COMMAND = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)
_MATERIALIZED_VIEW = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s+TO\s+(?P<target>\w+)\s+"
    r"(?P<select>AS\s+SELECT\b.*)$",
    re.S | re.I,
)
_VIEW = re.compile(
    r"^CREATE\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s+(?P<select>AS\s+SELECT\b.*)$", re.S | re.I
)
_FROM = re.compile(r"\bFROM\s+(?P<table>\w+)\b", re.I)
_DISTRIBUTED = re.compile(r"^Distributed\('(?P<cluster>\w+)', '(?P<database>\w+)', '(?P<table>\w+)'")


class ClusterError(RuntimeError):
    """The cluster, or the database on it, is not as cluster mode needs it."""


def local_name(table: str) -> str:
    """The name of a table's shard-local, replicated part."""
    return f"{table}{LOCAL_SUFFIX}"


def zookeeper_path(table: str) -> str:
    """Where the replicas of one shard's part of a table keep their log (macros left for ClickHouse)."""
    return f"/clickhouse/tables/{{shard}}/{{database}}/{local_name(table)}"


def statements(stmt: str, cluster: str, database: str) -> list[str]:
    """The statements that apply `stmt`, one statement of a migration, on `cluster`."""
    for name in (cluster, database):
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a ClickHouse identifier")
    if match := _CREATE_TABLE.match(stmt):
        return _create_table(match["name"], match["body"], cluster, database)
    if match := _ALTER.match(stmt):
        return _alter(match["name"], match["commands"], cluster, database)
    if match := _MATERIALIZED_VIEW.match(stmt):
        return [_materialized_view(match, cluster, database)]
    if match := _VIEW.match(stmt):
        return [
            f"CREATE VIEW IF NOT EXISTS {database}.{match['name']} ON CLUSTER {cluster} {match['select']}"
        ]
    raise ValueError(f"cluster mode has no rule for this statement yet: {' '.join(stmt.split())[:80]}")


def _create_table(name: str, body: str, cluster: str, database: str) -> list[str]:
    if name not in SHARD_KEYS:
        raise ValueError(
            f"table {name} has no sharding key: add one to SHARD_KEYS (tokentrail.store.cluster)"
        )
    engine = _ENGINE.search(body)
    if engine is None or engine["family"].lower().startswith("replicated"):
        raise ValueError(f"table {name}: cluster mode replicates a plain *MergeTree engine, not this one")
    args, end = "", engine.end()
    if body[end : end + 1] == "(":
        close = _closing(body, end)
        args, end = body[end + 1 : close].strip(), close + 1
    local = local_name(name)
    replicated = ", ".join(filter(None, (f"'{zookeeper_path(name)}'", "'{replica}'", args)))
    replicated_engine = f"ENGINE = Replicated{engine['family']}MergeTree({replicated}) "
    body = body[: engine.start()] + replicated_engine + body[end:].lstrip()
    return [
        f"CREATE TABLE IF NOT EXISTS {database}.{local} ON CLUSTER {cluster} {body}",
        f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS {database}.{local} "
        f"ENGINE = Distributed('{cluster}', '{database}', '{local}', {SHARD_KEYS[name]})",
    ]


def _alter(name: str, commands: str, cluster: str, database: str) -> list[str]:
    each = _split_commands(commands)
    local = f"ALTER TABLE {database}.{local_name(name)} ON CLUSTER {cluster} {', '.join(each)}"
    columns = [c for c in each if _COLUMN_COMMAND.match(c)]
    if not columns:
        return [local]
    distributed = f"ALTER TABLE {database}.{name} ON CLUSTER {cluster} {', '.join(columns)}"
    # the Distributed table never names a column its local tables lack: it gains columns after
    # them and loses them before them
    dropping = any(re.match(r"^DROP\s+COLUMN\b", c, re.I) for c in columns)
    return [distributed, local] if dropping else [local, distributed]


def _materialized_view(match: re.Match[str], cluster: str, database: str) -> str:
    select = match["select"]
    if re.search(r"\bJOIN\b|\bIN\s*\(\s*SELECT\b", select, re.I):
        raise ValueError(
            f"materialized view {match['name']}: cluster mode has no rule for a join or subquery"
        )
    local_select = _FROM.sub(
        lambda m: f"FROM {database}.{local_name(m['table'])}" if m["table"] in SHARD_KEYS else m[0], select
    )
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{match['name']} ON CLUSTER {cluster} "
        f"TO {database}.{local_name(match['target'])} {local_select}"
    )


def _closing(text: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at `opening` (quotes skipped)."""
    depth, quote = 0, ""
    for i in range(opening, len(text)):
        char = text[i]
        if quote:
            if char == quote and text[i - 1] != "\\":
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced parentheses in {text[opening : opening + 60]!r}")


def _split_commands(commands: str) -> list[str]:
    """The commands of an ALTER: split at the commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(commands):
        if quote:
            if char == quote and commands[i - 1] != "\\":
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(commands[start:i])
            start = i + 1
    parts.append(commands[start:])
    return [" ".join(part.split()) for part in parts if part.strip()]


def check(client: Any, cluster: str, database: str) -> None:
    """Refuse to migrate or serve in cluster mode when the connection's settings or the database
    do not fit it (see the module's docstring); say what to change."""
    mode, sync = client.query(
        "SELECT getSetting('distributed_product_mode'), toUInt8(getSetting('insert_distributed_sync'))"
    ).result_rows[0]
    needs = []
    if mode != "local":
        needs.append(f"distributed_product_mode = 'local' (it is '{mode}')")
    if not sync:
        needs.append("insert_distributed_sync = 1 (it is 0)")
    if needs:
        raise ClusterError(
            f"cluster mode (TOKENTRAIL_CLICKHOUSE_CLUSTER={cluster}) needs {' and '.join(needs)}, which "
            "Tokentrail's connections ask for: the ClickHouse user's profile must allow them (or set them); "
            "see the Cluster section of deploy/README.md"
        )
    single = [
        name
        for name, engine in client.query(
            "SELECT name, engine FROM system.tables WHERE database = {database:String} AND name IN (SELECT arrayJoin({names:Array(String)}))",
            parameters=bound({"database": database, "names": list(SHARD_KEYS)}),
        ).result_rows
        if engine != "Distributed"
    ]
    if single:
        raise ClusterError(
            f"database {database} holds a single-server schema ({', '.join(sorted(single))} are not Distributed "
            "tables): cluster mode needs a database of its own; copy the data over with INSERT INTO ... SELECT"
        )


def delete_statement(table: str, engine_full: str, where: str) -> str:
    """The lightweight DELETE of `table`'s rows matching `where`, given the table's engine (its
    `system.tables.engine_full`): a Distributed table takes no DELETE, so on a cluster the rows
    go from its local table on every shard."""
    if not _NAME.match(table):
        raise ValueError(f"{table!r} is not a table name")
    target = table
    if distributed := _DISTRIBUTED.match(engine_full):
        target = f"{distributed['database']}.{distributed['table']} ON CLUSTER {distributed['cluster']}"
    return f"DELETE FROM {target} WHERE {where}"


def delete_rows(client: Any, table: str, where: str, parameters: dict[str, Any]) -> None:
    """Delete `table`'s rows matching `where` (which binds `parameters`), on a single server or a cluster."""
    found = client.query(
        "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {table:String}",
        parameters=bound({"table": table}),
    ).result_rows
    client.command(delete_statement(table, found[0][0] if found else "", where), parameters=bound(parameters))
