"""Running a read and getting its rows as dicts keyed by column name.

Every reader of this package goes through `rows` / `first` (or `joined`, for a statement that joins
traces with their ledgers): a row is read by the names its SELECT gives its columns
(`expr AS name`), never by position. Parameters are always bound server-side (`{name:Type}` in the
statement, the value in `params`).
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from tokentrail.store.connection import Client

__all__ = ["Client", "Row", "first", "joined", "rows"]

Row = dict[str, Any]


def rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
    """The statement's rows, each a dict in the column order of its SELECT."""
    return list(client.query(sql, parameters=params or {}).named_results())


def first(client: Client, sql: str, params: dict[str, Any] | None = None) -> Row | None:
    """The statement's first row, or None when it has none."""
    found: Row | None = client.query(sql, parameters=params or {}).first_item
    return found


def joined(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
    """The rows of a statement that joins every trace with its ledger: by merging the two, which
    are sorted alike (by trace id), rather than by a hash table of every ledger (about half the
    time at 500,000 traces). The engine makes some joins a kind the merge does not do (ANY LEFT
    with a filter on the ledger's side, or one no trace can pass, becomes a semi join): those run
    again with a hash table. `sql` has no SETTINGS of its own."""
    try:
        return rows(client, sql + " SETTINGS join_algorithm = 'full_sorting_merge'", params)
    except DatabaseError as e:
        if "NOT_IMPLEMENTED" not in str(e) or "join_algorithm" not in str(e):
            raise
    return rows(client, sql + " SETTINGS join_algorithm = 'hash'", params)
