from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tokentrail.server.settings import SettingsError, from_env
from tokentrail.store import connect, load_migrations, migrate


def test_migrate_creates_schema_and_is_idempotent(store):
    tables = {row[0] for row in store.client.query("SHOW TABLES").result_rows}
    assert {"spans", "traces", "logs", "schema_migrations"} <= tables
    assert migrate(store) == []
    recorded = store.client.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows
    assert [r[0] for r in recorded] == [m.version for m in load_migrations()]


@pytest.mark.embedded_only
def test_second_process_is_told_the_database_is_in_use(settings, store):
    code = (
        "from tokentrail.server.settings import from_env\n"
        "from tokentrail.store import connect, DatabaseInUse\n"
        "import os\n"
        "try:\n"
        f"    connect(from_env({{'TOKENTRAIL_CLICKHOUSE_URL': {settings.clickhouse_url!r}}}))\n"
        "except DatabaseInUse as e:\n"
        "    print('IN USE', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "IN USE" in out.stdout, out.stderr
    assert "is in use by pid" in out.stdout


def test_the_embedded_engine_merges_a_column_at_a_time_and_frees_memory_sooner(tmp_path):
    code = (
        "from tokentrail.server.settings import from_env\n"
        "from tokentrail.store import connect\n"
        f"store = connect(from_env({{'TOKENTRAIL_CLICKHOUSE_URL': 'chdb://{tmp_path / 'chdb'}'}}))\n"
        'print(store.client.query("SELECT name, value FROM system.merge_tree_settings WHERE name IN '
        "('vertical_merge_algorithm_min_rows_to_activate', 'vertical_merge_algorithm_min_columns_to_activate', "
        "'max_compress_block_size') ORDER BY name\").result_rows)\n"
        "stats = store.client.query('SELECT * FROM system.jemalloc_stats').result_rows[0][0]\n"
        "print([line.strip() for line in stats.splitlines() if 'opt.dirty_decay_ms' in line])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    merge_settings, decay = out.stdout.strip().splitlines()[-2:]
    assert merge_settings == (
        "[('max_compress_block_size', '262144'), ('vertical_merge_algorithm_min_columns_to_activate', '1'), "
        "('vertical_merge_algorithm_min_rows_to_activate', '1')]"
    ), out.stderr
    assert decay.startswith("['opt.dirty_decay_ms: 1000 ")


def test_settings_are_strict():
    with pytest.raises(SettingsError, match="TOKENTRAIL_OTLP_HTTP_PORT"):
        from_env({"TOKENTRAIL_OTLP_HTTP_PORT": "http"})
    with pytest.raises(SettingsError, match="TOKENTRAIL_CLICKHOUSE_URL"):
        from_env({"TOKENTRAIL_CLICKHOUSE_URL": "postgres://x"})
    with pytest.raises(SettingsError, match="empty key"):
        from_env({"TOKENTRAIL_API_KEYS": ":proj"})
    assert from_env({"TOKENTRAIL_API_KEYS": "k1:team-a, k2"}).api_keys == {"k1": "team-a", "k2": "default"}
    with pytest.raises(
        SettingsError, match=r"TOKENTRAIL_DATABASE_HOST='0\.0\.0\.0' is reachable from other machines"
    ):
        from_env({"TOKENTRAIL_DATABASE_HOST": "0.0.0.0"})
    exposed = from_env({"TOKENTRAIL_DATABASE_HOST": "0.0.0.0", "TOKENTRAIL_DATABASE_PASSWORD": "x" * 16})
    assert (exposed.database_host, exposed.database_port) == ("0.0.0.0", 0)


@pytest.mark.embedded_only
def test_an_endpoint_file_left_by_another_process_is_not_believed(settings, store):
    """The database is held by this process, which serves no endpoint; a file naming another
    process (one that died) must not send the other process elsewhere."""
    from tokentrail.store.connection import endpoint_file

    endpoint_file(settings).write_text('{"url": "http://tokentrail:x@127.0.0.1:9", "pid": 1}')
    try:
        code = (
            "from tokentrail.server.settings import from_env\n"
            "from tokentrail.store import connect, DatabaseInUse\n"
            "try:\n"
            f"    connect(from_env({{'TOKENTRAIL_CLICKHOUSE_URL': {settings.clickhouse_url!r}}}))\n"
            "except DatabaseInUse as e:\n"
            "    print('IN USE', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert "IN USE" in out.stdout and "serves it to no other process" in out.stdout, out.stderr
    finally:
        endpoint_file(settings).unlink()


def test_reopen_after_close(settings):
    st = connect(settings)
    migrate(st)
    st.close()
    st = connect(settings)
    assert st.client.query("SELECT count() FROM spans").result_rows == [(0,)]
    st.client.command(f"DROP DATABASE {settings.database}")
    st.close()


def test_a_join_the_merge_cannot_do_runs_with_a_hash_table_and_other_errors_are_raised(store):
    """`joined` merges traces with their ledgers; where the engine makes the join a semi join (a
    filter on the ledger's side), the merge refuses it and the statement runs with a hash table."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from tokentrail.store._rows import joined, rows
    from tokentrail.store.filters import TRACES_WITH_WASTE

    client = store.client
    client.command(
        "INSERT INTO traces (project, trace_id, start_time, span_count) VALUES "
        "('default', 'a', now64(9), 1), ('default', 'b', now64(9), 2)"
    )
    client.command(
        "INSERT INTO trace_waste (project, trace_id, start_time, total_usd, productive_usd) VALUES "
        "('default', 'b', now64(9), 3, 1)"
    )
    sql = f"SELECT trace_id, wasted_usd FROM {TRACES_WITH_WASTE} WHERE wasted_usd > 0"
    params = {"project": "default"}
    with pytest.raises(DatabaseError, match="NOT_IMPLEMENTED"):
        rows(client, sql + " SETTINGS join_algorithm = 'full_sorting_merge'", params)
    assert joined(client, sql, params) == [{"trace_id": "b", "wasted_usd": 2.0}]
    everything = f"SELECT trace_id, analyzed FROM {TRACES_WITH_WASTE} ORDER BY trace_id"
    assert joined(client, everything, params) == [
        {"trace_id": "a", "analyzed": 0},
        {"trace_id": "b", "analyzed": 1},
    ]
    with pytest.raises(DatabaseError, match="no_such_column"):
        joined(client, f"SELECT no_such_column FROM {TRACES_WITH_WASTE}", params)


def test_a_bound_list_of_strings_reaches_the_engine_as_it_was_given(store):
    """`bound` writes the literal itself: quotes, backslashes, tabs, newlines, backticks and
    non-ASCII text arrive unchanged, as do an empty list and the lists it leaves to the client."""
    from tokentrail.store._rows import rows

    tricky = [
        "plain",
        "it's",
        "back\\slash",
        "tab\there",
        "new\nline",
        "`tick`",
        "",
        "é ü 字",
        "\\'",
        'say "hi"',
    ]
    ids = [f"{i:032x}" for i in range(3)]
    for values in (tricky, ids, [], ["'"]):
        got = rows(
            store.client, "SELECT {v:Array(String)} AS v, length({v:Array(String)}) AS n", {"v": values}
        )
        assert got == [{"v": values, "n": len(values)}]
    got = rows(store.client, "SELECT {n:Array(UInt64)} AS n, {s:String} AS s", {"n": [1, 2], "s": "a'b"})
    assert got == [{"n": [1, 2], "s": "a'b"}]
    inside = rows(
        store.client,
        "SELECT x FROM (SELECT arrayJoin(['it''s', 'other', 'tab\\there']) AS x)"
        " WHERE x IN (SELECT arrayJoin({v:Array(String)})) ORDER BY x",
        {"v": tricky},
    )
    assert [r["x"] for r in inside] == ["it's", "tab\there"]
