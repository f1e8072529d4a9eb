"""Running a read and getting its rows as dicts keyed by column name.

Every reader of this package goes through `rows` / `first`: a row is read by the names its SELECT
gives its columns (`expr AS name`), never by position. Parameters are always bound server-side
(`{name:Type}` in the statement, the value in `params`).
"""

from __future__ import annotations

from typing import Any

from tokentrail.store.connection import Client

__all__ = ["Client", "Row", "first", "rows"]

Row = dict[str, Any]


def rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
    """The statement's rows, each a dict in the column order of its SELECT."""
    return list(client.query(sql, parameters=params or {}).named_results())


def first(client: Client, sql: str, params: dict[str, Any] | None = None) -> Row | None:
    """The statement's first row, or None when it has none."""
    found: Row | None = client.query(sql, parameters=params or {}).first_item
    return found
