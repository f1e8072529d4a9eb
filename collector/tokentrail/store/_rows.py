"""Rows as dicts keyed by column name, the one way the store hands query results back."""

from __future__ import annotations

from typing import Any

__all__ = ["Row", "rows"]

Row = dict[str, Any]


def rows(client: Any, sql: str, parameters: dict[str, Any] | None = None) -> list[Row]:
    """Run a SELECT with bound parameters; each row a dict of column name -> value."""
    return list(client.query(sql, parameters=parameters or {}).named_results())
