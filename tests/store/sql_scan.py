"""Where the source's SQL filters or joins by a subquery, and whether that is right on a cluster.

On a cluster every table is Distributed. An `IN (SELECT ...)` or a `JOIN` between two of them is
either GLOBAL (the subquery runs once, on the node that got the query, and its result is sent to
every shard) or runs on each shard over the shard's local tables (the profile's
`distributed_product_mode = 'local'`). The local form is right only when the two sides are sharded
alike and matched on that key: the source says so with a comment holding `co-sharded` just above
the statement (or inside it), and the tables its SQL names must then all share one sharding key.

A subquery that only unfolds a bound list, `IN (SELECT arrayJoin({ids:Array(String)}))`, reads no
table: it is the same set on every shard, and needs neither. It is the one form a bound list takes
on the right of `IN` (`bare_bound_lists` finds the others, see tokentrail.store).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokentrail.store.cluster import SHARD_KEYS

#: stands for an interpolated value in an f-string's text
HOLE = "\x00"

#: a subquery that only unfolds a bound list (it reads no table)
_UNFOLDED = r"\(\s*SELECT\s+arrayJoin\(\{\w+:Array\([\w(), ]+\)\}\)\s*\)"
_SUBQUERY = re.compile(
    # a subquery, or a value put in that may be one, or SQL that goes on elsewhere
    rf"\b(?P<global>GLOBAL\s+)?(?:NOT\s+)?IN\s*(?!{_UNFOLDED})(?:\(\s*(?:SELECT\b|{HOLE})|{HOLE}|\(?\s*$)"
    rf"|\b(?P<global2>GLOBAL\s+)?(?:(?:LEFT|RIGHT|INNER|FULL|OUTER|ANY|ALL|SEMI|ANTI|ASOF)\s+)*(?<!ARRAY )JOIN\b"
)
#: a bound list right of IN, as it is: `IN {ids:Array(String)}`
_BARE_LIST = re.compile(r"\bIN\s*\{\w+:Array\(")
_TABLE = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)")


@dataclass(frozen=True)
class Found:
    path: Path
    line: int
    text: str
    is_global: bool
    co_sharded: bool
    tables: frozenset[str]

    def where(self) -> str:
        return f"{self.path}:{self.line}: {' '.join(self.text.split())[:90]}"


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else HOLE
            for part in node.values
        )
    return None


def _literals(source: str) -> Iterator[tuple[ast.expr, str, ast.stmt]]:
    """Each string literal of one module that is code, not prose, with the statement it is in
    (implicit concatenation joins adjacent literals, as Python does; f-strings are read whole)."""
    tree = ast.parse(source)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    # the literal parts of f-strings are read with their f-string; docstrings are prose
    skip = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    skip |= {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        text = _text(node) if id(node) not in skip else None
        if text is None or not isinstance(node, ast.expr):
            continue
        statement: ast.AST = node
        while not isinstance(statement, ast.stmt):
            statement = parents[id(statement)]
        yield node, text, statement


def scan_source(source: str, path: Path) -> list[Found]:
    """Every IN-subquery and JOIN in the string literals of one module."""
    lines = source.splitlines()
    found = []
    for node, text, statement in _literals(source):
        if not _SUBQUERY.search(text):
            continue
        marked = _comments(lines, statement.lineno, node.end_lineno or node.lineno)
        for match in _SUBQUERY.finditer(text):
            found.append(
                Found(
                    path,
                    node.lineno + text[: match.start()].count("\n"),
                    text[match.start() : match.start() + 120],
                    bool(match["global"] or match["global2"]),
                    "co-sharded" in marked,
                    frozenset(t for t in _TABLE.findall(text) if t in SHARD_KEYS),
                )
            )
    return found


def bare_bound_lists(source: str, path: Path) -> list[str]:
    """Where a module's SQL puts a bound list right of `IN` as it is (`path:line: text`)."""
    found = []
    for node, text, _ in _literals(source):
        for match in _BARE_LIST.finditer(text):
            line = node.lineno + text[: match.start()].count("\n")
            found.append(f"{path}:{line}: {text[match.start() : match.start() + 60]}")
    return found


def _comments(lines: list[str], first: int, last: int) -> str:
    """The comment block right above line `first`, and the comments on lines first..last (1-based)."""
    above = []
    i = first - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        above.append(lines[i])
        i -= 1
    within = [line for line in lines[first - 1 : last] if "#" in line]
    return "\n".join(above + within)


def scan(roots: list[Path]) -> list[Found]:
    return [
        f
        for root in roots
        for path in sorted(root.rglob("*.py"))
        for f in scan_source(path.read_text(), path)
    ]


def problems(found: list[Found]) -> list[str]:
    """The occurrences that would be wrong, or refused, on a cluster."""
    wrong = []
    for f in found:
        if f.is_global:
            continue
        if not f.co_sharded:
            wrong.append(f"{f.where()}: neither GLOBAL nor marked co-sharded")
        elif len({SHARD_KEYS[t] for t in f.tables}) > 1:
            wrong.append(
                f"{f.where()}: marked co-sharded, but its tables are sharded differently: {sorted(f.tables)}"
            )
    return wrong
