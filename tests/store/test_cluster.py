"""Cluster mode: what `migrate` would run on a cluster, checked without one.

chDB cannot run a cluster (it has no remote servers, no ZooKeeper and no distributed DDL), so
these tests take the statements cluster mode works out from migrations/, have the engine parse
each one (`formatQuery`: valid ClickHouse SQL, in its canonical form) and check their shape against
the single-server schema. The single-server path runs in every other test.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tests.store.sql_scan import problems, scan, scan_source
from tokentrail.store import upgrade
from tokentrail.store.cluster import ClusterError, delete_rows, delete_statement, local_name
from tokentrail.store.migrations import schema_statements
from tokentrail.store.retention import TELEMETRY, ttl_statement

CLUSTER = "tt_cluster"
DATABASE = "tokentrail"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "collector" / "tokentrail",
    ROOT / "web" / "tokentrail",
    ROOT / "instrumentation" / "tokentrail",
]
#: read by session, never joined to spans, and mostly without a trace id: sharded by session
BY_SESSION = {"agent_events"}


def _format(client, statements: list[str]) -> list[str]:
    """Each statement as ClickHouse parses and prints it (an error if it is not valid SQL)."""
    return [
        client.query("SELECT formatQuery({q:String})", parameters={"q": s}).result_rows[0][0]
        for s in statements
    ]


def _cluster_statements(directory: Path | None = None) -> list[str]:
    found = schema_statements(CLUSTER, DATABASE, directory)
    for days in (30, 0):
        found += [ttl_statement(table, days, CLUSTER, DATABASE) for table in TELEMETRY]
    return found


def _creates(formatted: list[str]) -> dict[str, str]:
    """Table name (without database) -> its formatted CREATE TABLE."""
    found = {}
    for text in formatted:
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (?:\w+\.)?(\w+)", text):
            found[match[1]] = text
    return found


def _columns(create: str) -> set[str]:
    return set(re.findall(r"^    `(\w+)` ", create, re.M))


def _order_by(create: str) -> set[str]:
    match = re.search(r"^ORDER BY \(?(.*?)\)?$", create, re.M)
    assert match, create
    return set(re.findall(r"\w+", match[1]))


def _alters(formatted: list[str]) -> list[tuple[str, list[str]]]:
    """(table, its commands) of each formatted ALTER TABLE."""
    found = []
    for text in formatted:
        if match := re.match(r"ALTER TABLE (?:\w+\.)?(\w+)(?: ON CLUSTER \w+)?\n", text):
            found.append((match[1], [line.strip().strip("(),") for line in text.splitlines()[1:]]))
    return found


def test_every_statement_is_valid_sql_and_every_ddl_runs_on_the_cluster(store):
    formatted = _format(store.client, _cluster_statements())
    assert len(formatted) > 2 * len(TELEMETRY)
    for text in formatted:
        head = text.splitlines()[0]
        assert re.fullmatch(
            rf"(CREATE TABLE IF NOT EXISTS|ALTER TABLE) {DATABASE}\.\w+ ON CLUSTER {CLUSTER}( AS {DATABASE}\.\w+_local)?",
            head,
        ), text


def test_every_table_is_replicated_per_shard_behind_a_distributed_table_of_its_name(store):
    single = _creates(_format(store.client, schema_statements()))
    cluster = _creates(_format(store.client, _cluster_statements()))
    assert set(cluster) == set(single) | {local_name(t) for t in single}
    for table, create in single.items():
        local = local_name(table)
        merge_tree = re.search(r"^ENGINE = (\w*)MergeTree(?:\((.*)\))?$", create, re.M)
        assert merge_tree, create
        family, args = merge_tree.groups()
        replicated = ", ".join(
            filter(None, (f"'/clickhouse/tables/{{shard}}/{{database}}/{local}'", "'{replica}'", args))
        )
        # the local table is the single-server table, replicated
        expected = create.splitlines()
        expected[0] = f"CREATE TABLE IF NOT EXISTS {DATABASE}.{local} ON CLUSTER {CLUSTER}"
        expected = [
            f"ENGINE = Replicated{family}MergeTree({replicated})" if line.startswith("ENGINE = ") else line
            for line in expected
        ]
        assert cluster[local].splitlines() == expected
        # the table of the table's name is Distributed over the local tables of every shard
        head, engine = cluster[table].splitlines()
        assert (
            head
            == f"CREATE TABLE IF NOT EXISTS {DATABASE}.{table} ON CLUSTER {CLUSTER} AS {DATABASE}.{local}"
        )
        assert re.fullmatch(rf"ENGINE = Distributed\('{CLUSTER}', '{DATABASE}', '{local}', .+\)", engine), (
            engine
        )


def test_rows_that_replace_one_another_share_a_shard_and_a_trace_lives_on_one(store):
    single = _creates(_format(store.client, schema_statements()))
    cluster = _creates(_format(store.client, _cluster_statements()))
    for table, create in single.items():
        distributed = re.search(r"'\w+_local', (.+)\)$", cluster[table])
        assert distributed, cluster[table]
        key = distributed[1]
        columns, order_by = _columns(create), _order_by(create)
        if "trace_id" in order_by:
            assert key == "cityHash64(trace_id)", table
        elif "trace_id" in columns and table not in BY_SESSION:
            # a trace's rows together, the rows of no trace spread
            assert "cityHash64(trace_id)" in key and key != "cityHash64(trace_id)", table
        # FINAL merges within a shard: the key reads only ORDER BY columns (and the trace id where
        # the ORDER BY holds a hash of the whole record)
        read = set(re.findall(r"\b\w+\b", key)) & columns
        allowed = order_by | ({"trace_id"} if "record_hash" in order_by else set())
        assert read and read <= allowed, (table, key)


def test_alters_apply_to_local_tables_and_column_changes_to_distributed_tables_too(store):
    single = _alters(_format(store.client, schema_statements()))
    cluster = _alters(_format(store.client, schema_statements(CLUSTER, DATABASE)))
    assert single
    expected = []
    for table, commands in single:
        expected.append((local_name(table), commands))
        expected.append((table, commands))  # every command of the migrations adds a column
        assert all(c.startswith("ADD COLUMN") for c in commands)
    assert cluster == expected


def test_indexes_stay_on_local_tables_and_views_read_and_write_them(store, tmp_path):
    (tmp_path / "0001_tables.sql").write_text(
        "CREATE TABLE IF NOT EXISTS spans (project String, trace_id String, span_id String, a UInt8)\n"
        "ENGINE = ReplacingMergeTree ORDER BY (project, trace_id, span_id);\n"
        "CREATE TABLE IF NOT EXISTS traces (project String, trace_id String, n UInt64)\n"
        "ENGINE = SummingMergeTree ORDER BY (project, trace_id);\n"
    )
    (tmp_path / "0002_more.sql").write_text(
        "ALTER TABLE spans ADD COLUMN IF NOT EXISTS b String, "
        "ADD INDEX IF NOT EXISTS idx_b b TYPE bloom_filter(0.01) GRANULARITY 4, MODIFY COLUMN a UInt16;\n"
        "ALTER TABLE spans DROP COLUMN IF EXISTS b;\n"
        "CREATE MATERIALIZED VIEW IF NOT EXISTS spans_per_trace TO traces AS\n"
        "SELECT project, trace_id, count() AS n FROM spans GROUP BY project, trace_id;\n"
    )
    formatted = _format(store.client, schema_statements(CLUSTER, DATABASE, tmp_path))
    alters = _alters(formatted)
    add, drop = alters[:2], alters[2:]
    assert add[0] == (
        "spans_local",
        [
            "ADD COLUMN IF NOT EXISTS `b` String",
            "ADD INDEX IF NOT EXISTS idx_b b TYPE bloom_filter(0.01) GRANULARITY 4",
            "MODIFY COLUMN `a` UInt16",
        ],
    )
    assert add[1] == ("spans", ["ADD COLUMN IF NOT EXISTS `b` String", "MODIFY COLUMN `a` UInt16"])
    # a column leaves the Distributed table before its local tables, never the other way round
    assert drop == [("spans", ["DROP COLUMN IF EXISTS b"]), ("spans_local", ["DROP COLUMN IF EXISTS b"])]
    view = next(t for t in formatted if t.startswith("CREATE MATERIALIZED VIEW"))
    assert view.splitlines()[0] == (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.spans_per_trace ON CLUSTER {CLUSTER} "
        f"TO {DATABASE}.traces_local"
    )
    assert f"FROM {DATABASE}.spans_local" in view
    assert "ENGINE = ReplicatedSummingMergeTree(" in _creates(formatted)["traces_local"]


def test_a_statement_without_a_cluster_rule_stops_migrate(tmp_path):
    (tmp_path / "0001_drop.sql").write_text("DROP TABLE IF EXISTS spans;\n")
    with pytest.raises(ValueError, match="no rule for this statement yet: DROP TABLE IF EXISTS spans"):
        schema_statements(CLUSTER, DATABASE, tmp_path)
    (tmp_path / "0001_drop.sql").write_text(
        "CREATE TABLE IF NOT EXISTS scratch (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
    )
    with pytest.raises(ValueError, match="table scratch has no sharding key"):
        schema_statements(CLUSTER, DATABASE, tmp_path)
    assert schema_statements("", "", tmp_path)[-1].startswith("CREATE TABLE IF NOT EXISTS scratch")


def test_cluster_mode_refuses_a_profile_or_a_database_it_cannot_work_with(store):
    on_cluster = replace(store, settings=store.settings.with_(cluster=CLUSTER))
    with pytest.raises(ClusterError) as refused:
        upgrade(on_cluster)
    assert "distributed_product_mode = 'local' (it is 'deny')" in str(refused.value)
    assert "insert_distributed_sync = 1" in str(refused.value)
    client = store.new_client()
    try:
        client.set_client_setting("distributed_product_mode", "local")
        client.set_client_setting("insert_distributed_sync", "1")
        with pytest.raises(
            ClusterError, match=r"holds a single-server schema \(.*\bspans\b.* are not Distributed tables\)"
        ):
            upgrade(replace(on_cluster, client=client))
    finally:
        client.close()
    tables = {r[0] for r in store.client.query("SHOW TABLES").result_rows}
    assert not any(t.endswith("_local") for t in tables)  # nothing was created


def test_a_delete_on_a_cluster_goes_to_each_shards_local_table(store):
    distributed = _creates(_format(store.client, _cluster_statements()))["spans"]
    engine_full = distributed.splitlines()[1].removeprefix("ENGINE = ")  # as system.tables shows it
    where = "project = {project:String} AND trace_id IN {trace_ids:Array(String)}"
    on_cluster = _format(store.client, [delete_statement("spans", engine_full, where)])[0]
    assert on_cluster.startswith(f"DELETE FROM {DATABASE}.spans_local ON CLUSTER {CLUSTER} WHERE ")
    single = _format(store.client, [delete_statement("spans", "ReplacingMergeTree(ingested_at)", where)])[0]
    assert single.startswith("DELETE FROM spans WHERE ")


def test_delete_rows_deletes_on_a_single_server(store):
    store.client.command(
        "INSERT INTO spans (project, trace_id, span_id) VALUES ('p', 't1', 's1'), ('p', 't2', 's2'), ('q', 't1', 's3')"
    )
    delete_rows(
        store.client,
        "spans",
        "project = {project:String} AND trace_id IN {trace_ids:Array(String)}",
        {"project": "p", "trace_ids": ["t1"]},
    )
    left = store.client.query("SELECT span_id FROM spans ORDER BY span_id").result_rows
    assert left == [("s2",), ("s3",)]


def test_every_delete_in_the_code_goes_through_the_one_helper():
    writers = {
        path.relative_to(ROOT).as_posix()
        for root in SOURCES
        for path in root.rglob("*.py")
        if re.search(r"\bDELETE\s+FROM\b", path.read_text())
    }
    assert writers == {"collector/tokentrail/store/cluster.py"}


def test_every_subquery_and_join_is_global_or_between_tables_sharded_alike():
    found = scan(SOURCES)
    # the scan sees the queries it is about (the outcome joins are GLOBAL, the waste joins local)
    assert sum(f.is_global for f in found) >= 5
    assert sum(f.co_sharded and not f.is_global for f in found) >= 15
    assert problems(found) == []


def test_the_scan_finds_a_subquery_that_would_be_wrong_on_a_cluster():
    source = """
A = "SELECT 1 FROM traces WHERE trace_id IN (SELECT target_id FROM outcomes)"
# co-sharded: by trace
B = "SELECT 1 FROM traces AS t JOIN (SELECT target_id FROM outcomes) AS o ON o.target_id = t.trace_id"
C = "SELECT 1 FROM traces WHERE trace_id GLOBAL IN (SELECT target_id FROM outcomes)"
D = "SELECT 1 FROM spans WHERE trace_id IN " f"({C})"
# co-sharded: both by trace
E = "SELECT 1 FROM spans WHERE trace_id IN (SELECT trace_id FROM traces) ARRAY JOIN events.name AS n"
F = "SELECT 1 FROM spans WHERE (trace_id, response_id) IN (SELECT arrayJoin({pairs:Array(Tuple(String, String))}))"
G = "SELECT 1 FROM spans WHERE trace_id IN (SELECT arrayJoin({ids:Array(String)}))"
"""
    found = problems(scan_source(source, Path("example.py")))
    assert [line.split(":")[1] for line in found] == ["2", "4", "6"]
    assert "neither GLOBAL nor marked co-sharded" in found[0]
    assert "sharded differently: ['outcomes', 'traces']" in found[1]
