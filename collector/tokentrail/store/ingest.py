"""The statements that store what the collector received: span rows as Arrow; log rows, agent events
and metric points as JSON.

Every insert is synchronous (`async_insert = 0`): when the call returns, the rows are written, which
is what lets the writer move its spool checkpoint. The embedded database (chDB) can read the Arrow
files the flattening workers staged itself, several at once through a glob of their names, which
makes one part instead of one per file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokentrail.store.connection import Client

__all__ = ["insert_json_rows", "insert_span_files", "insert_span_stream", "is_reachable", "readable_as_one"]

_SETTINGS = {"async_insert": 0}
_GLOB_CHARS = re.compile(r"[*?{}\[\]]")


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in columns)


def readable_as_one(files: Sequence[Path]) -> bool:
    """Whether ClickHouse can read these files in one INSERT: one directory, and no character in
    its path that ClickHouse would read as a pattern."""
    directory = files[0].parent
    return not _GLOB_CHARS.search(str(directory)) and all(f.parent == directory for f in files)


def insert_span_files(client: Client, columns: Sequence[str], files: Sequence[Path]) -> None:
    """Span rows from Arrow stream files the database reads itself (`readable_as_one` first)."""
    directory = files[0].parent
    names = files[0].name if len(files) == 1 else "{" + ",".join(f.name for f in files) + "}"
    client.command(
        f"INSERT INTO spans ({_columns(columns)}) FROM INFILE {_sql_string(f'{directory}/{names}')} "
        "FORMAT ArrowStream",
        settings=_SETTINGS,
    )


def insert_span_stream(client: Client, columns: Sequence[str], stream: bytes | Iterable[bytes]) -> None:
    """Span rows from one Arrow stream, whole or in pieces (sent as they come)."""
    client.raw_insert("spans", list(columns), stream, settings=_SETTINGS, fmt="ArrowStream")


def insert_json_rows(client: Client, table: str, columns: Sequence[str], rows: bytes) -> None:
    """Rows of `table` (logs, agent events, metric points), one JSON array per line in `columns`
    order."""
    client.raw_insert(table, list(columns), rows, settings=_SETTINGS, fmt="JSONCompactEachRow")


def is_reachable(client: Client) -> bool:
    """Whether the database answers at all."""
    try:
        client.command("SELECT 1")
        return True
    except Exception:
        return False
