"""The trace filter, and the one place it becomes SQL.

A `TraceFilter` selects traces of one project: a time window on their start, plus what the user
narrowed them to (service, agent, model, status, conversation, user, a span-name search, a
minimum cost, "has waste", and for coding agents the tool, team and repository). Every page and report that takes these filters turns them into a
WHERE clause here, so a filter a page accepts is applied the same way on every page:

- `trace_where(f)`: the clause over `traces` rows (the trace list, its totals, conversations, the
  costs of tasks). With `waste_joined`, the caller reads `traces` joined with each trace's waste
  (`TRACES_WITH_WASTE`) and "has waste" tests the joined `wasted_usd`; otherwise it is a
  subquery on `trace_waste`.
- `matching_traces(f)`: for tables with a row per trace or per call other than `traces` (the waste
  ledger, findings, spans): `trace_id IN (the traces matching the filter)`, or nothing when the
  filter is only the window, which such readers bound on their own `start_time` (`window`).
- `model_is(f, column)`: where a figure is per call (a breakdown by model, a finding), the model
  filter also keeps only that model's calls; elsewhere it selects the traces that called it.

Values are always bound parameters; the only SQL text put together here comes from fixed
fragments in this module and the caller's column names. Times are Unix nanoseconds, clamped to
what a ClickHouse `DateTime64(9)` holds (`MIN_NS`, `MAX_NS`); 0 means "no bound".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANY_CODING_AGENT",
    "DEFAULT_RANGE",
    "INTEGER_SORTS",
    "MAX_NS",
    "MIN_NS",
    "SORTS",
    "TRACES_WITH_WASTE",
    "TraceFilter",
    "matching_traces",
    "model_is",
    "since",
    "trace_where",
    "traces_with_waste",
    "window",
]

#: the span of a ClickHouse DateTime64(9) in Unix nanoseconds: 1900-01-01 to 2262-04-11T23:47:16.854775807
MIN_NS = -2_208_988_800 * 10**9
MAX_NS = 2**63 - 1
DEFAULT_RANGE = "7d"
#: the coding-agent filter's value that selects the traces of every coding agent
ANY_CODING_AGENT = "any"
#: the orders of the trace list (`tokentrail.store.traces` holds their SQL)
SORTS = ("start", "cost", "waste", "tokens", "duration", "spans")
#: sort keys bound as Int64 (the others are Float64): a cursor on them must hold an integer
INTEGER_SORTS = frozenset({"start", "tokens", "duration", "spans"})


def traces_with_waste(narrow: str = "") -> str:
    """`traces` joined with each trace's waste from its latest analysis (`analyzed` is 0 for a
    trace not analysed yet). `narrow`, a test of `trace_id`, keeps the ledgers read to the traces
    the caller selects: the ledgers of every trace make a large join."""
    # co-sharded: trace_waste joined to traces by trace_id. A trace has one ledger at the most
    # (FINAL, one project), so ANY gives the rows ALL would, and a merge moves on at a trace's
    # first match: about 0.6 of the time at 500,000 traces.
    return (
        "traces FINAL ANY LEFT JOIN (SELECT trace_id, total_usd - productive_usd AS wasted_usd, 1 AS analyzed "
        "FROM trace_waste FINAL WHERE project = {project:String}"
        + (f" AND {narrow}" if narrow else "")
        + ") AS w USING (trace_id)"
    )


#: traces with each one's waste (`traces_with_waste`)
TRACES_WITH_WASTE = traces_with_waste()

# filter field -> its test on a `traces` row
_TESTS = {
    "service": "has(services, {service:String})",
    "agent": "(agent_name = {agent:String} OR has(agents, {agent:String}))",
    "model": "has(models, {model:String})",
    "status": "status = {status:String}",
    "conversation": "conversation_id = {conversation:String}",
    "user": "user_id = {user:String}",
    "team": "team = {team:String}",
    "repository": "repository = {repository:String}",
    # one coding agent's traces, or with ANY_CODING_AGENT those of every coding agent
    "coding_agent": (
        "(coding_agent = {coding_agent:String} "
        f"OR ({{coding_agent:String}} = '{ANY_CODING_AGENT}' AND coding_agent != ''))"
    ),
}
# co-sharded: over `traces` rows, by trace_id
_HAS_WASTE = (
    "trace_id IN (SELECT trace_id FROM trace_waste FINAL WHERE project = {project:String} "
    "AND total_usd - productive_usd > 0)"
)


@dataclass(frozen=True)
class TraceFilter:
    project: str
    range: str = DEFAULT_RANGE
    start_ns: int = 0  # 0: no lower bound
    end_ns: int = 0  # 0: open-ended
    service: str = ""
    agent: str = ""
    model: str = ""
    status: str = ""
    conversation: str = ""
    user: str = ""
    team: str = ""
    repository: str = ""
    coding_agent: str = ""  # claude_code, codex, gemini_cli, or ANY_CODING_AGENT
    min_cost: float | None = None
    q: str = ""
    has_waste: bool = False
    sort: str = "start"
    dir: str = "desc"
    limit: int = 50
    cursor: tuple[Any, str] | None = field(default=None, compare=False)

    @property
    def is_default(self) -> bool:
        """True when the filter is only a project and a time window."""
        return not any(
            (
                self.service,
                self.agent,
                self.model,
                self.status,
                self.conversation,
                self.user,
                self.team,
                self.repository,
                self.coding_agent,
                self.q,
                self.min_cost is not None,
                self.has_waste,
            )
        )


def window(f: TraceFilter, column: str = "start_time") -> tuple[list[str], dict[str, Any]]:
    """The project and the time window, over a table's `project` and `column`."""
    table = column.rpartition(".")[0]
    clauses = [f"{table + '.' if table else ''}project = {{project:String}}"]
    params: dict[str, Any] = {"project": f.project}
    if f.start_ns:
        clauses.append(f"{column} >= fromUnixTimestamp64Nano({{start_ns:Int64}})")
        params["start_ns"] = f.start_ns
    if f.end_ns:
        clauses.append(f"{column} < fromUnixTimestamp64Nano({{end_ns:Int64}})")
        params["end_ns"] = f.end_ns
    return clauses, params


def since(f: TraceFilter, column: str) -> str:
    """The window's lower bound alone, for the spans of traces in the window (a span starts no
    earlier than its trace, and may end after the window does); binds `start_ns`."""
    return f" AND {column} >= fromUnixTimestamp64Nano({{start_ns:Int64}})" if f.start_ns else ""


def trace_where(f: TraceFilter, *, waste_joined: bool = False) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (without the keyword) that selects `f`'s traces from `traces` rows."""
    clauses, params = window(f)
    for name, test in _TESTS.items():
        if getattr(f, name):
            clauses.append(test)
            params[name] = getattr(f, name)
    if f.min_cost is not None:
        clauses.append("cost_usd >= {min_cost:Float64}")
        params["min_cost"] = f.min_cost
    if f.has_waste:
        clauses.append("wasted_usd > 0" if waste_joined else _HAS_WASTE)
    if f.q:
        # span-name text: in the names kept on the trace's summary, or, where it has none kept
        # (written before they were, or more distinct names than it keeps), in its spans' names.
        # Those traces are picked from every summary row without names, not the newest only: a
        # few more traces at the most, read without merging (co-sharded: traces and spans by
        # trace_id).
        clauses.append(
            "(arrayExists(n -> positionCaseInsensitiveUTF8(n, {q:String}) > 0, span_names) OR names_recorded = 0"
            " AND trace_id IN (SELECT trace_id FROM spans WHERE project = {project:String}"
            + since(f, "start_time")
            + " AND trace_id IN (SELECT trace_id FROM traces WHERE project = {project:String}"
            + since(f, "start_time")
            + " AND names_recorded = 0) AND positionCaseInsensitiveUTF8(name, {q:String}) > 0))"
        )
        params["q"] = f.q
    return " AND ".join(clauses), params


def matching_traces(f: TraceFilter, column: str = "trace_id") -> tuple[str, dict[str, Any]]:
    """` AND {column} IN (f's traces)`, or "" when `f` narrows nothing beyond the window."""
    if f.is_default:
        return "", {}
    where, params = trace_where(f)
    # co-sharded: `column` is the trace id of a table sharded by trace (every caller's)
    return f" AND {column} IN (SELECT trace_id FROM traces FINAL WHERE {where})", params


def model_is(f: TraceFilter, column: str = "model") -> tuple[str, dict[str, Any]]:
    """` AND {column} = the model filter` for per-call rows, or "" without one."""
    return (f" AND {column} = {{model:String}}", {"model": f.model}) if f.model else ("", {})
