"""A bound list of ids is read as a subquery, `IN (SELECT arrayJoin({ids:Array(String)}))`, never
as `IN {ids:Array(String)}`.

Written as it is, a list of more than about 26,000 trace ids turns a query over a MergeTree table
from a fifth of a second into minutes (measured on the embedded engine: 0.30 s with 26,000 ids,
170 s with 28,000); the subquery form takes 0.22 s at 28,000 and stays there. Which lists grow that
long depends on the data (a backfill, a conversation, a retried batch), so the form is the rule for
every one, and this scan holds the source to it.
"""

from __future__ import annotations

from pathlib import Path

from tests.store.sql_scan import bare_bound_lists
from tests.store.test_cluster import SOURCES

EXAMPLE = """
A = "SELECT 1 FROM spans WHERE trace_id IN {ids:Array(String)}"
B = f"SELECT 1 FROM spans WHERE {WHERE} AND span_id IN {{spans:Array(String)}}"
C = "SELECT 1 FROM spans WHERE trace_id IN (SELECT arrayJoin({ids:Array(String)}))"
D = "SELECT has({ids:Array(String)}, trace_id)"
"A bound list IN {ids:Array(String)} named in prose is not SQL."
"""


def test_no_query_puts_a_bound_list_right_of_in_as_it_is():
    found = [
        line
        for root in SOURCES
        for path in sorted(root.rglob("*.py"))
        for line in bare_bound_lists(path.read_text(), path)
    ]
    assert found == []


def test_the_scan_finds_a_bare_bound_list_in_plain_and_formatted_sql():
    found = bare_bound_lists(EXAMPLE, Path("example.py"))
    assert [line.split(":")[1] for line in found] == ["2", "3"]
