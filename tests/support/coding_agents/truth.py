"""What a correct backend must show for a session, worked out from the scenario alone.

One trace per prompt: its model calls (input INCLUSIVE of cache reads and writes, as OpenTelemetry
counts it), failed attempts, tool calls, compactions and subagents; totals per trace and per
session; and the waste to expect: the failed attempts (retries, storms, requests that gave up),
reads repeated with the same tool and parameters, compactions, and cache misses after an idle
gap longer than the provider's cache lifetime.

Only what the tool's records let a backend see is expected. Claude Code logs no event for an
attempt that failed before its request succeeded (its `llm_request` span counts them: pass
`spans=True`), reports no reasoning tokens, and shows tool inputs only with OTEL_LOG_TOOL_DETAILS;
Codex has no compaction event, no request id and no cost; Gemini CLI's tool calls carry no id
and its arguments are logged only with prompt logging on. Nothing here calls Tokentrail's code.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.coding_agents.scenario import (
    Compaction,
    ModelRequest,
    Placed,
    PlacedPrompt,
    Session,
    Tool,
    ToolUse,
)

# how long a provider keeps a prompt cache warm without use (Anthropic's default ephemeral cache
# lives 5 minutes; OpenAI keeps prefixes 5 to 10 minutes; Gemini's implicit cache is taken as 5)
CACHE_LIFETIME_S: dict[Tool, int] = {"claude_code": 300, "codex": 600, "gemini_cli": 300}
RETRY_STORM_ATTEMPTS = 3  # failed attempts of one request from which it is a storm


@dataclass(frozen=True)
class ExpectedCall:
    model: str
    input_tokens: int  # inclusive of cache reads and cache writes
    output_tokens: int  # reasoning included
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int  # as the tool reports it (Claude Code: 0)
    cost_usd: float | None  # the cost the tool reported; None when it reports none
    request_id: str | None  # the response id as the tool's records carry it
    attempts: int  # attempts a backend can count (the answer included)
    failed_attempts: int
    succeeded: bool
    agent: str | None  # the subagent that made the call
    purpose: str  # "main" or "compact"


@dataclass(frozen=True)
class ExpectedToolCall:
    name: str
    call_id: str | None  # None when the tool's records carry no id
    success: bool
    decision: str  # "accept" or "reject"
    agent: str | None


@dataclass(frozen=True)
class FailedAttemptSeen:
    call: int  # index of the call in the trace
    attempt: int  # 1-based
    status_code: int | None  # None when the records do not say which status that attempt got
    gave_up: bool  # the request's last attempt: no answer came


@dataclass(frozen=True)
class ExpectedCompaction:
    trigger: str
    tokens_before: int
    tokens_after: int


@dataclass(frozen=True)
class ExpectedSubagent:
    name: str
    agent_id: str
    calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Totals:
    calls: int  # model calls that got an answer
    failed_calls: int  # requests that gave up
    failed_attempts: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class ExpectedTrace:
    index: int
    prompt_id: str | None  # None for Codex, whose turns have no id
    prompt_length: int
    start_ns: int
    end_ns: int
    calls: tuple[ExpectedCall, ...]
    tool_calls: tuple[ExpectedToolCall, ...]
    failed_attempts: tuple[FailedAttemptSeen, ...]
    compactions: tuple[ExpectedCompaction, ...]
    subagents: tuple[ExpectedSubagent, ...]
    totals: Totals


@dataclass(frozen=True)
class RepeatedCall:
    trace: int
    tool: str
    arguments: str
    call_id: str | None
    first_call_id: str | None


@dataclass(frozen=True)
class RetryStorm:
    trace: int
    call: int
    failed_attempts: int


@dataclass(frozen=True)
class CacheMiss:
    trace: int
    call: int
    idle_s: float
    uncached_tokens: int  # input paid at full (or cache-write) price instead of cache reads


@dataclass(frozen=True)
class Waste:
    retries: tuple[tuple[int, FailedAttemptSeen], ...]  # (trace, failed attempt)
    retry_storms: tuple[RetryStorm, ...]
    gave_up: tuple[tuple[int, int], ...]  # (trace, call) of requests that exhausted their retries
    repeated_calls: tuple[RepeatedCall, ...]
    compactions: tuple[tuple[int, ExpectedCompaction], ...]
    cache_misses: tuple[CacheMiss, ...]


@dataclass(frozen=True)
class SessionTruth:
    tool: Tool
    session_id: str
    traces: tuple[ExpectedTrace, ...]
    totals: Totals
    waste: Waste


def _sees_recovered_failures(tool: Tool, spans: bool) -> bool:
    return tool != "claude_code" or spans


def _sees_arguments(session: Session) -> bool:
    if session.tool == "claude_code":
        return session.log_tool_details
    if session.tool == "gemini_cli":
        return session.log_prompts
    return True


def _call(session: Session, placed: Placed, spans: bool) -> tuple[ExpectedCall, list[FailedAttemptSeen]]:
    r = placed.step
    assert isinstance(r, ModelRequest)
    tool = session.tool
    visible = r.exhausted or _sees_recovered_failures(tool, spans)
    failed = len(r.failures) if visible else 0
    knows_status = tool != "claude_code"
    seen = [
        FailedAttemptSeen(
            -1,
            n,
            f.status_code if knows_status or (r.exhausted and n == len(r.failures)) else None,
            r.exhausted and n == len(r.failures),
        )
        for n, f in enumerate(r.failures, start=1)
        if visible
    ]
    answered = not r.exhausted
    call = ExpectedCall(
        model=r.model,
        input_tokens=r.inclusive_input if answered else 0,
        output_tokens=r.output_tokens if answered else 0,
        cache_read_tokens=r.cache_read_tokens if answered else 0,
        cache_write_tokens=r.cache_write_tokens if answered else 0,
        reasoning_tokens=r.reasoning_tokens if answered and tool != "claude_code" else 0,
        cost_usd=r.cost_usd if answered and tool == "claude_code" else None,
        request_id=r.request_id if answered and tool != "codex" else None,
        attempts=failed + (1 if answered else 0),
        failed_attempts=failed,
        succeeded=answered,
        agent=placed.agent.name if placed.agent else None,
        purpose=r.purpose,
    )
    return call, seen


def _totals(session: Session, calls: list[ExpectedCall], tools: int) -> Totals:
    answered = [c for c in calls if c.succeeded]
    cost = sum(c.cost_usd or 0.0 for c in answered) if session.tool == "claude_code" else None
    return Totals(
        calls=len(answered),
        failed_calls=len(calls) - len(answered),
        failed_attempts=sum(c.failed_attempts for c in calls),
        tool_calls=tools,
        input_tokens=sum(c.input_tokens for c in answered),
        output_tokens=sum(c.output_tokens for c in answered),
        cache_read_tokens=sum(c.cache_read_tokens for c in answered),
        cache_write_tokens=sum(c.cache_write_tokens for c in answered),
        reasoning_tokens=sum(c.reasoning_tokens for c in answered),
        cost_usd=cost,
    )


def _trace(session: Session, prompt: PlacedPrompt, spans: bool) -> ExpectedTrace:
    tool = session.tool
    calls: list[ExpectedCall] = []
    attempts: list[FailedAttemptSeen] = []
    tool_calls: list[ExpectedToolCall] = []
    compactions: list[ExpectedCompaction] = []
    subagents: dict[int, list[Placed]] = {}
    for placed in prompt.steps:
        step = placed.step
        if placed.agent is not None:
            subagents.setdefault(id(placed.agent), []).append(placed)
        if isinstance(step, ModelRequest):
            call, seen = _call(session, placed, spans)
            attempts.extend(FailedAttemptSeen(len(calls), s.attempt, s.status_code, s.gave_up) for s in seen)
            calls.append(call)
        elif isinstance(step, ToolUse):
            tool_calls.append(
                ExpectedToolCall(
                    step.name,
                    None if tool == "gemini_cli" else step.call_id,
                    step.executed and step.success,
                    step.decision,
                    placed.agent.name if placed.agent else None,
                )
            )
        elif isinstance(step, Compaction) and tool != "codex":
            compactions.append(ExpectedCompaction(step.trigger, step.tokens_before, step.tokens_after))
    expected_subagents = []
    for members in subagents.values():
        agent = members[0].agent
        assert agent is not None
        own_calls = [_call(session, m, spans)[0] for m in members if isinstance(m.step, ModelRequest)]
        expected_subagents.append(
            ExpectedSubagent(
                agent.name,
                agent.agent_id,
                sum(c.succeeded for c in own_calls),
                sum(isinstance(m.step, ToolUse) for m in members),
                sum(c.input_tokens for c in own_calls),
                sum(c.output_tokens for c in own_calls),
            )
        )
    return ExpectedTrace(
        index=prompt.index,
        prompt_id=None if tool == "codex" else prompt.prompt.prompt_id,
        prompt_length=prompt.prompt.length,
        start_ns=prompt.start_ns,
        end_ns=prompt.end_ns,
        calls=tuple(calls),
        tool_calls=tuple(tool_calls),
        failed_attempts=tuple(attempts),
        compactions=tuple(compactions),
        subagents=tuple(expected_subagents),
        totals=_totals(session, calls, len(tool_calls)),
    )


def _repeats(session: Session, timeline: list[PlacedPrompt]) -> list[RepeatedCall]:
    """Read-only tool calls repeating an earlier successful one with the same parameters."""
    if not _sees_arguments(session):
        return []
    seen: dict[tuple[str, str], str | None] = {}
    out = []
    for prompt in timeline:
        for placed in prompt.steps:
            step = placed.step
            if not isinstance(step, ToolUse) or not step.read_only or not step.executed:
                continue
            key = (step.name, step.arguments)
            call_id = None if session.tool == "gemini_cli" else step.call_id
            if key in seen:
                out.append(RepeatedCall(prompt.index, step.name, step.arguments, call_id, seen[key]))
            elif step.success:
                seen[key] = call_id
    return out


def _cache_misses(session: Session, timeline: list[PlacedPrompt]) -> list[CacheMiss]:
    """Requests that found the cache cold after an idle gap longer than its lifetime."""
    lifetime_ns = CACHE_LIFETIME_S[session.tool] * 1_000_000_000
    last: dict[tuple[str, str | None], tuple[int, bool]] = {}  # (model, agent) -> (end, cached)
    out = []
    for prompt in timeline:
        index = -1
        for placed in prompt.steps:
            r = placed.step
            if not isinstance(r, ModelRequest):
                continue
            index += 1
            if r.exhausted:
                continue
            key = (r.model, placed.agent.agent_id if placed.agent else None)
            previous = last.get(key)
            if previous is not None:
                end, was_cached = previous
                idle = placed.start_ns - end
                if was_cached and idle > lifetime_ns and r.cache_read_tokens == 0:
                    out.append(CacheMiss(prompt.index, index, idle / 1e9, r.inclusive_input))
            last[key] = (placed.end_ns, r.cache_read_tokens > 0 or r.cache_write_tokens > 0)
    return out


def ground_truth(session: Session, *, spans: bool = False) -> SessionTruth:
    """What a backend must show for `session`; `spans`: Claude Code's traces beta was on."""
    timeline = session.timeline()
    traces = tuple(_trace(session, prompt, spans) for prompt in timeline)
    calls = [c for t in traces for c in t.calls]
    storms = [
        RetryStorm(t.index, n, c.failed_attempts)
        for t in traces
        for n, c in enumerate(t.calls)
        if c.failed_attempts >= RETRY_STORM_ATTEMPTS
    ]
    waste = Waste(
        retries=tuple((t.index, a) for t in traces for a in t.failed_attempts),
        retry_storms=tuple(storms),
        gave_up=tuple((t.index, n) for t in traces for n, c in enumerate(t.calls) if not c.succeeded),
        repeated_calls=tuple(_repeats(session, timeline)),
        compactions=tuple((t.index, c) for t in traces for c in t.compactions),
        cache_misses=tuple(_cache_misses(session, timeline)),
    )
    return SessionTruth(
        session.tool,
        session.session_id,
        traces,
        _totals(session, calls, sum(len(t.tool_calls) for t in traces)),
        waste,
    )
