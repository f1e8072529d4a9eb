"""Retention: with TOKENTRAIL_RETENTION_DAYS, migrate gives every telemetry table a TTL, and
ClickHouse deletes the rows older than that at the next merge."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from tokentrail.server.settings import SettingsError, from_env
from tokentrail.store import upgrade
from tokentrail.store.retention import KEPT, TELEMETRY, RetentionChange

#: keys, accounts, sessions and migrate's records: never expired by the retention
NOT_TELEMETRY = {"projects", "api_keys", "users", "memberships", "schema_migrations"}


def _with_retention(store, days: int):  # type: ignore[no-untyped-def]
    return replace(store, settings=store.settings.with_(retention_days=days))


def _engines(store) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(
        store.client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    )


def _ttl(engine_full: str) -> str | None:
    match = re.search(r" TTL (.*?)(?: SETTINGS |$)", engine_full)
    return match[1] if match else None


def _key(store, table: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A column of the table's sorting key besides the project, String or UInt64: rows that differ
    in it never replace one another. With the SQL that puts a label in it and reads it back."""
    key, columns = store.client.query(
        "SELECT sorting_key, (SELECT groupArray((name, type)) FROM system.columns "
        "WHERE database = currentDatabase() AND table = {t:String}) FROM system.tables "
        "WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows[0]
    types = dict(columns)
    column = next(
        c
        for c in (c.strip() for c in key.split(","))
        if c != "project" and types.get(c) in ("String", "UInt64")
    )
    return column, types[column]


def _insert_aged(store, table: str, label: str, days_old: int) -> None:  # type: ignore[no-untyped-def]
    """A row of `table` whose time is `days_old` days ago, told apart by `label`."""
    column, kind = _key(store, table)
    value = "{label:String}" if kind == "String" else "cityHash64({label:String})"
    store.client.command(
        f"INSERT INTO {table} (project, {column}, {TELEMETRY[table]}) "
        f"SELECT 'p', {value}, now64(9) - toIntervalDay({{days:UInt32}})",
        parameters={"label": label, "days": days_old},
    )


LABELS = ["kept-before", "old", "new", "twenty", "ancient"]


def _left(store, table: str) -> set[str]:  # type: ignore[no-untyped-def]
    """The labels of the rows left after a merge."""
    store.client.command(f"OPTIMIZE TABLE {table} FINAL")
    column, kind = _key(store, table)
    label = (
        column
        if kind == "String"
        else (
            f"transform({column}, arrayMap(l -> cityHash64(l), {{labels:Array(String)}}), {{labels:Array(String)}}, '?')"
        )
    )
    found = store.client.query(f"SELECT {label} FROM {table}", parameters={"labels": LABELS}).result_rows
    return {r[0] for r in found}


def test_retention_is_a_whole_number_of_days():
    assert from_env({"TOKENTRAIL_RETENTION_DAYS": "30"}).retention_days == 30
    assert from_env({"TOKENTRAIL_RETENTION_DAYS": "0"}).retention_days == 0
    assert from_env({}).retention_days == 0
    for bad in ("30d", "-1", "1.5", "100000"):
        with pytest.raises(SettingsError, match=r"TOKENTRAIL_RETENTION_DAYS.*keep it forever"):
            from_env({"TOKENTRAIL_RETENTION_DAYS": bad})


def test_every_table_is_telemetry_or_kept_on_purpose(store):
    tables = set(_engines(store))
    assert tables == set(TELEMETRY) | set(KEPT)
    assert set(KEPT) >= NOT_TELEMETRY


def test_a_retention_puts_a_ttl_on_every_telemetry_table_and_no_other(store):
    before = _engines(store)
    done = upgrade(_with_retention(store, 30))
    assert done.applied == []
    assert sorted(done.retention, key=lambda c: c.table) == sorted(
        (RetentionChange(t, 0, 30) for t in TELEMETRY), key=lambda c: c.table
    )
    after = _engines(store)
    columns = dict(
        store.client.query(
            "SELECT concat(table, '.', name), type FROM system.columns WHERE database = currentDatabase()"
        ).result_rows
    )
    for table in TELEMETRY:
        ttl = _ttl(after[table])
        match = re.fullmatch(r"toDateTime\((\w+)\) \+ toIntervalDay\(30\)", ttl or "")
        assert match, (table, after[table])
        assert columns[f"{table}.{match[1]}"].startswith("DateTime64"), table
    for table in NOT_TELEMETRY:
        assert _ttl(after[table]) is None, table
    # the UI's sessions keep the TTL of their own
    assert (
        _ttl(after["ui_sessions"])
        == _ttl(before["ui_sessions"])
        == "toDateTime(expires_at) + toIntervalDay(1)"
    )


def test_rows_older_than_the_retention_go_at_the_next_merge(store):
    for table in TELEMETRY:
        _insert_aged(store, table, "kept-before", 400)
        assert _left(store, table) == {"kept-before"}, table  # no retention: kept forever
    upgrade(_with_retention(store, 30))
    for table in TELEMETRY:
        _insert_aged(store, table, "old", 31)
        _insert_aged(store, table, "new", 29)
        assert _left(store, table) == {"new"}, table


def test_changing_the_retention_changes_the_ttl_and_unsetting_it_removes_it(store):
    upgrade(_with_retention(store, 30))
    _insert_aged(store, "spans", "twenty", 20)
    assert _left(store, "spans") == {"twenty"}

    done = upgrade(_with_retention(store, 10))
    assert {(c.before, c.after) for c in done.retention} == {(30, 10)}
    assert len(done.retention) == len(TELEMETRY)
    assert all("toIntervalDay(10)" in (_ttl(e) or "") for t, e in _engines(store).items() if t in TELEMETRY)
    assert _left(store, "spans") == set()

    done = upgrade(_with_retention(store, 0))
    assert {(c.before, c.after) for c in done.retention} == {(10, 0)}
    assert all(_ttl(e) is None for t, e in _engines(store).items() if t in TELEMETRY)
    _insert_aged(store, "spans", "ancient", 4000)
    assert _left(store, "spans") == {"ancient"}


def test_migrate_is_idempotent(store):
    assert upgrade(_with_retention(store, 30)).retention
    engines = _engines(store)
    again = upgrade(_with_retention(store, 30))
    assert again.applied == [] and again.retention == []
    assert _engines(store) == engines
    # and unset from the start: nothing to remove, nothing said
    assert upgrade(_with_retention(store, 0)).retention
    assert upgrade(_with_retention(store, 0)).retention == []
