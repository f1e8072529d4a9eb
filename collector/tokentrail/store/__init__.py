"""The storage layer: the ClickHouse connection, the schema, and every SQL statement the collector,
the analysis and the web UI run, grouped by the table or the reader they serve.

Rows come back as dicts keyed by column name. The ClickHouse schema (migrations/) is the contract
between collector and web; neither imports the other, both import this package.

A bound list of ids is always read as a subquery, `trace_id IN (SELECT arrayJoin({ids:Array(String)}))`:
written as `IN {ids:Array(String)}`, a list of more than about 26,000 ids turns a query over a
MergeTree table from a fifth of a second into minutes. tests/store/test_bound_lists.py
holds every query to the form. Where the subquery's set would not narrow the granules read (span
ids within given traces), the list is tested with `has({ids:Array(String)}, span_id)` instead.
Every statement binds its parameters through `_rows.bound`, which writes a list of strings as its
literal at once, where the client escapes it a character at a time.
"""

from __future__ import annotations

from tokentrail.store.connection import Client, DatabaseInUse, Store, connect
from tokentrail.store.migrations import Migration, Upgrade, load_migrations, migrate, migrations_dir, upgrade

__all__ = [
    "Client",
    "DatabaseInUse",
    "Migration",
    "Store",
    "Upgrade",
    "connect",
    "load_migrations",
    "migrate",
    "migrations_dir",
    "upgrade",
]
