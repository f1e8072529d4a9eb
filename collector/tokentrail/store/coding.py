"""What the session builder reads and deletes (`tokentrail.collector.coding.sessions`).

- A session's events, for the prompts a batch touched (`prompt_events`), or, for the tools whose
  prompts are split by time (Codex names no prompt; Gemini CLI's subagents and agent events name
  none of the user's), the turns around a stretch of time (`turn_events`): from the last user
  prompt before it (the turn before may have held events that now belong to a later one) to the
  first one after it.
- The tool's own spans of a session (`own_spans`): found by the session id they carry, or by the
  trace the events were emitted in; and the other way round, the sessions whose events were
  logged in a trace of the tool's that names no session (`sessions_of_traces`).
- `withdraw_stale`: spans the builder wrote earlier that its new drafts no longer hold are
  deleted; a trace of its own left with none is withdrawn with its summary and waste.
"""

from __future__ import annotations

from typing import Any

from tokentrail.store._rows import Row, rows
from tokentrail.store.cluster import delete_rows

__all__ = ["own_spans", "prompt_events", "sessions_of_traces", "turn_events", "withdraw_stale"]

_COLUMNS = """event, toUnixTimestamp64Nano(timestamp) AS time_ns, sequence, prompt_id, attributes,
    resource_attributes, trace_id, span_id, record_hash"""
_SESSION = "project = {project:String} AND tool = {tool:String} AND session_id = {session:String}"
_WITHIN = "timestamp BETWEEN fromUnixTimestamp64Nano({lo:Int64}) AND fromUnixTimestamp64Nano({hi:Int64})"

# co-sharded: both sides read one session, and a session's events are on one shard
_PROMPT_EVENTS = f"""
SELECT {_COLUMNS} FROM agent_events FINAL
WHERE {_SESSION} AND prompt_id IN (
    SELECT DISTINCT prompt_id FROM agent_events
    WHERE {_SESSION} AND prompt_id != '' AND (prompt_id IN (SELECT arrayJoin({{prompts:Array(String)}})) OR {_WITHIN}))
ORDER BY timestamp, sequence, record_hash
"""

_TURN_EVENTS = f"""
SELECT {_COLUMNS} FROM agent_events FINAL
WHERE {_SESSION}
  AND timestamp >= ifNull(
      (SELECT maxOrNull(timestamp) FROM agent_events
       WHERE {_SESSION} AND event = 'user_prompt' AND timestamp < fromUnixTimestamp64Nano({{lo:Int64}})),
      toDateTime64(0, 9))
  AND timestamp < ifNull(
      (SELECT minOrNull(timestamp) FROM agent_events
       WHERE {_SESSION} AND event = 'user_prompt' AND timestamp > fromUnixTimestamp64Nano({{hi:Int64}})),
      toDateTime64('2200-01-01 00:00:00', 9))
ORDER BY timestamp, sequence, record_hash
"""

_CONVERSATION_START = f"""
SELECT {_COLUMNS} FROM agent_events FINAL
WHERE {_SESSION} AND event = 'conversation_starts' AND timestamp <= fromUnixTimestamp64Nano({{hi:Int64}})
ORDER BY timestamp DESC LIMIT 1
"""

# the tool's own spans carry the session id (as its conversation); not those the builder wrote
_OWN_TRACES = """
SELECT DISTINCT trace_id FROM spans
WHERE project = {project:String} AND conversation_id = {session:String} AND convention = {tool:String}
  AND attributes['tokentrail.source'] = ''
"""

_OWN_SPANS = """
SELECT trace_id, span_id, parent_span_id, step_kind, response_id,
    attributes['client_request_id'] AS client_request_id, tool_call_id
FROM spans FINAL
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})) AND attributes['tokentrail.source'] = ''
"""

_SESSIONS_OF_TRACES = """
SELECT DISTINCT trace_id, session_id FROM agent_events
WHERE project = {project:String} AND tool = {tool:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))
"""

_WRITTEN = """
SELECT trace_id, span_id FROM spans FINAL
WHERE project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)})) AND attributes['tokentrail.source'] = 'events'
"""

_STALE_SPANS = (
    "project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))"
    " AND has({span_ids:Array(String)}, span_id)"
)
_OF_TRACES = "project = {project:String} AND trace_id IN (SELECT arrayJoin({trace_ids:Array(String)}))"

#: what is derived from a trace, deleted with it
_DERIVED = ("traces", "trace_waste", "waste_findings", "model_steps")


def prompt_events(
    client: Any, project: str, tool: str, session: str, prompts: list[str], lo: int, hi: int
) -> list[Row]:
    """Every event of the prompts named, and of the prompts with an event between lo and hi (ns)."""
    params = {"project": project, "tool": tool, "session": session, "prompts": prompts, "lo": lo, "hi": hi}
    return rows(client, _PROMPT_EVENTS, params)


def turn_events(
    client: Any, project: str, tool: str, session: str, lo: int, hi: int
) -> tuple[list[Row], Row | None]:
    """The events of the turns that overlap lo..hi (ns), and Codex's conversation start."""
    params = {"project": project, "tool": tool, "session": session, "lo": lo, "hi": hi}
    start = rows(client, _CONVERSATION_START, params)
    return rows(client, _TURN_EVENTS, params), (start[0] if start else None)


def own_spans(client: Any, project: str, tool: str, session: str, trace_ids: list[str]) -> list[Row]:
    """The spans of the tool's own traces of this session, and of the traces named."""
    params = {"project": project, "tool": tool, "session": session}
    found = {r["trace_id"] for r in rows(client, _OWN_TRACES, params)} | set(trace_ids)
    if not found:
        return []
    return rows(client, _OWN_SPANS, {"project": project, "trace_ids": sorted(found)})


def sessions_of_traces(client: Any, project: str, tool: str, trace_ids: list[str]) -> list[Row]:
    """trace_id, session_id: the sessions whose events were logged in these traces."""
    return rows(client, _SESSIONS_OF_TRACES, {"project": project, "tool": tool, "trace_ids": trace_ids})


def withdraw_stale(client: Any, project: str, written: dict[str, set[str]], synthetic: set[str]) -> set[str]:
    """Delete the builder's spans in `written`'s traces that are not among the span ids just
    written there; withdraw the traces of `synthetic` (the builder's own) left empty. Returns
    the withdrawn trace ids."""
    stale = [
        r
        for r in rows(client, _WRITTEN, {"project": project, "trace_ids": sorted(written)})
        if r["span_id"] not in written.get(r["trace_id"], ())
    ]
    if not stale:
        return set()
    delete_rows(
        client,
        "spans",
        _STALE_SPANS,
        {
            "project": project,
            "trace_ids": sorted({r["trace_id"] for r in stale}),
            "span_ids": sorted({r["span_id"] for r in stale}),
        },
    )
    emptied = {r["trace_id"] for r in stale if r["trace_id"] in synthetic and not written.get(r["trace_id"])}
    if emptied:
        for table in _DERIVED:
            delete_rows(client, table, _OF_TRACES, {"project": project, "trace_ids": sorted(emptied)})
    return emptied
