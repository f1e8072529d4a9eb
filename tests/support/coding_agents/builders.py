"""Scenarios: a realistic session with every kind of waste, and a day of work for the benchmark.

Token counts follow each provider's prompt caching: the context grows with every prompt, tool
result and answer; Anthropic reads the cached prefix and writes the rest, OpenAI and Gemini read
a cached prefix (in 128-token blocks for OpenAI) and write nothing; a cache left idle longer than
its lifetime is cold, and a compaction starts a new prefix. Claude Code's `cost_usd` is priced
from the genai-prices catalog, as Claude Code prices at list price. Ids come from a seeded
generator, times from `start` on: build a session once and send that object as often as needed.
"""

from __future__ import annotations

import functools
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.coding_agents.scenario import (
    Compaction,
    DecisionSource,
    FailedAttempt,
    ModelRequest,
    Prompt,
    Session,
    Step,
    Subagent,
    Tool,
    ToolUse,
)
from tests.support.coding_agents.truth import CACHE_LIFETIME_S
from tokentrail.pricing import PriceBook

_ROOT = "/home/dev/acme-api"
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@functools.cache
def _prices() -> PriceBook:
    return PriceBook()


def claude_code_cost(request: ModelRequest) -> float:
    """What Claude Code reports as cost_usd: the request's tokens at the catalog's list price."""
    cost = _prices().cost(
        "anthropic",
        request.model,
        input_tokens=request.inclusive_input,
        output_tokens=request.output_tokens,
        cache_read_tokens=request.cache_read_tokens,
        cache_write_tokens=request.cache_write_tokens,
    )
    assert cost is not None, f"the catalog does not price {request.model}"
    return cost


@dataclass(frozen=True)
class _Vocabulary:
    """How one tool names its models, tools and errors."""

    model: str
    small_model: str
    version: str
    system_tokens: int  # system prompt and tool definitions: the context of an empty conversation
    min_cached: int  # the smallest prefix the provider caches
    block: int  # cached prefixes are a multiple of this many tokens
    writes_cache: bool  # the provider bills cache writes (Anthropic)
    read: Callable[[str], tuple[str, dict[str, Any]]]
    edit: Callable[[str], tuple[str, dict[str, Any]]]
    shell: Callable[[str], tuple[str, dict[str, Any]]]
    search: Callable[[str], tuple[str, dict[str, Any]]]
    agent: tuple[str, str] | None  # (tool name, subagent type) when subagents are emulated
    error: Callable[[int | None], str]
    exhausted_attempts: int  # attempts a request makes before giving up (default retry budget)


def _claude_error(status: int | None) -> str:
    kinds = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}
    messages = {429: "Number of request tokens has exceeded your per-minute rate limit", 529: "Overloaded"}
    if status is None:
        return "Connection error."
    kind = kinds.get(status, "api_error")
    message = messages.get(status, "Internal server error")
    return f'{status} {{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}'


def _codex_error(status: int | None) -> str:
    if status is None:
        return "error sending request for url (https://chatgpt.com/backend-api/codex/responses)"
    reasons = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    return f"unexpected status {status} {reasons.get(status, 'Error')}"


def _gemini_error(status: int | None) -> str:
    if status is None:
        return "fetch failed"
    if status == 429:
        return "[429 Too Many Requests] Resource has been exhausted (e.g. check quota)."
    return f"[{status} Internal Server Error] Internal error encountered."


def _shell(command: str) -> tuple[str, dict[str, Any]]:
    return "shell", {"command": ["bash", "-lc", command], "workdir": _ROOT, "timeout_ms": 120_000}


VOCABULARY: dict[Tool, _Vocabulary] = {
    "claude_code": _Vocabulary(
        model="claude-sonnet-4-5-20250929",
        small_model="claude-haiku-4-5-20251001",
        version="2.1.214",
        system_tokens=16_800,
        min_cached=1_024,
        block=1,
        writes_cache=True,
        read=lambda path: ("Read", {"file_path": f"{_ROOT}/{path}"}),
        edit=lambda path: (
            "Edit",
            {"file_path": f"{_ROOT}/{path}", "old_string": "return cfg", "new_string": "return cfg or {}"},
        ),
        shell=lambda cmd: ("Bash", {"command": cmd, "description": "Run the tests", "timeout": 120_000}),
        search=lambda pattern: ("Grep", {"pattern": pattern, "path": _ROOT, "output_mode": "content"}),
        agent=("Agent", "Explore"),
        error=_claude_error,
        exhausted_attempts=11,
    ),
    "codex": _Vocabulary(
        model="gpt-5-codex",
        small_model="gpt-5-codex",
        version="0.63.0",
        system_tokens=9_200,
        min_cached=1_024,
        block=128,
        writes_cache=False,
        read=lambda path: _shell(f"sed -n '1,200p' {path}"),
        edit=lambda path: (
            "apply_patch",
            {
                "input": f"*** Begin Patch\n*** Update File: {path}\n-    return cfg\n+    return cfg or {{}}\n*** End Patch\n"
            },
        ),
        shell=_shell,
        search=lambda pattern: _shell(f"rg -n '{pattern}'"),
        agent=None,  # a Codex subagent runs as a conversation of its own
        error=_codex_error,
        exhausted_attempts=5,
    ),
    "gemini_cli": _Vocabulary(
        model="gemini-2.5-pro",
        small_model="gemini-2.5-flash",
        version="0.20.0",
        system_tokens=12_400,
        min_cached=2_048,
        block=1,
        writes_cache=False,
        read=lambda path: ("read_file", {"absolute_path": f"{_ROOT}/{path}"}),
        edit=lambda path: (
            "replace",
            {"file_path": f"{_ROOT}/{path}", "old_string": "return cfg", "new_string": "return cfg or {}"},
        ),
        shell=lambda cmd: ("run_shell_command", {"command": cmd, "description": "Run the tests"}),
        search=lambda pattern: ("search_file_content", {"pattern": pattern}),
        agent=("codebase_investigator", "codebase_investigator"),
        error=_gemini_error,
        exhausted_attempts=10,
    ),
}


class _Context:
    """A conversation's context and how much of it the provider has cached."""

    def __init__(self, tokens: int) -> None:
        self.size = tokens
        self.cached = 0
        self.last_ms: int | None = None

    def use(self, now_ms: int, v: _Vocabulary, lifetime_ms: int) -> tuple[int, int, int]:
        """(fresh input, cache read, cache write) of a request sent now; the prefix is then cached."""
        warm = self.last_ms is not None and now_ms - self.last_ms <= lifetime_ms
        prefix = self.cached if warm else 0
        read = prefix - prefix % v.block if prefix >= v.min_cached else 0
        tail = min(self.size - read, 4)  # the newest message is never a cache hit
        write = self.size - read - tail if v.writes_cache else 0
        self.cached = self.size if self.size >= v.min_cached else 0
        return self.size - read - write, read, write


class _Builder:
    def __init__(self, tool: Tool, seed: int, start: datetime) -> None:
        self.rng = random.Random(f"{tool}:{seed}")
        self.tool = tool
        self.v = VOCABULARY[tool]
        self.lifetime_ms = CACHE_LIFETIME_S[tool] * 1000
        self.session = Session(
            tool=tool,
            session_id=self.uuid(),
            start=start,
            user_email="dana@acme.example",
            account_id=self.uuid(),
            organization_id=self.uuid(),
            user_id=self.hex(64) if tool == "claude_code" else self.uuid(),
            app_version=self.v.version,
            terminal_type="vscode",
            resource={"team": "platform", "repository": "acme/acme-api"},
            log_prompts=tool == "gemini_cli",  # Gemini CLI logs prompts by default, the others do not
            log_tool_details=True,
        )
        self.clock_ms = 0
        self.context = _Context(self.v.system_tokens)
        self.steps: list[Step] = []
        self.agent: Subagent | None = None
        self.pending = 0  # tokens added to the context since the last request

    # ids, as each tool spells them
    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(digits * 4):0{digits}x}"

    def base58(self, length: int) -> str:
        return "".join(self.rng.choice(_BASE58) for _ in range(length))

    def prompt_id(self) -> str:
        if self.tool == "gemini_cli":
            return f"{self.session.session_id}########{len(self.session.prompts) + 1}"
        return self.uuid()

    def call_id(self) -> str:
        if self.tool == "claude_code":
            return "toolu_01" + self.base58(22)
        if self.tool == "codex":
            return "call_" + self.base58(24)
        return f"gemini-call-{self.hex(12)}"

    def request_id(self) -> str:
        if self.tool == "claude_code":
            return "req_011C" + self.base58(20)
        if self.tool == "codex":
            return "resp_" + self.hex(48)
        return self.base58(22)

    # building
    def prompt(self, text: str, idle_ms: int = 0) -> None:
        self.steps = []
        self.session.prompts.append(Prompt(text, self.prompt_id(), self.steps, idle_ms))
        self.clock_ms += idle_ms + 1
        self.pending += len(text) // 4

    def _add(self, step: Step) -> None:
        self.steps.append(step)
        self.clock_ms += step.wall_ms

    def failures(self, *statuses: int | None, invalid: bool = False) -> tuple[FailedAttempt, ...]:
        """Failed attempts with the tool's error texts and an exponential back-off."""
        return tuple(
            FailedAttempt(
                status,
                "" if invalid else self.v.error(status),
                self.rng.randint(180, 900) if status != 500 else self.rng.randint(2_000, 9_000),
                min(32_000, 500 * 2**n) + self.rng.randint(0, 250),
                invalid,
            )
            for n, status in enumerate(statuses)
        )

    def request(
        self,
        output: int,
        *,
        stop: str = "tool_use",
        text: int = 0,
        reasoning: int = 0,
        failures: tuple[FailedAttempt, ...] = (),
        exhausted: bool = False,
        purpose: str = "main",
        add: bool = True,
    ) -> ModelRequest:
        model = self.v.small_model if self.agent else self.v.model
        self.context.size += self.pending
        self.pending = 0
        fresh = read = write = 0
        if not exhausted:
            start = self.clock_ms + sum(f.duration_ms + f.retry_delay_ms for f in failures)
            fresh, read, write = self.context.use(start, self.v, self.lifetime_ms)
        ttft = self.rng.randint(400, 1_400)
        request = ModelRequest(
            model=model,
            input_tokens=fresh,
            output_tokens=0 if exhausted else output,
            cache_read_tokens=read,
            cache_write_tokens=write,
            reasoning_tokens=0 if exhausted else reasoning,
            duration_ms=ttft + output * 12,
            ttft_ms=ttft,
            request_id="" if exhausted else self.request_id(),
            client_request_id=self.uuid(),
            failures=failures,
            exhausted=exhausted,
            stop_reason="end_turn" if stop == "end_turn" else "tool_use",
            response_length=0 if exhausted else text,
            purpose="compact" if purpose == "compact" else "main",
        )
        if self.tool == "claude_code" and not exhausted:
            request.cost_usd = claude_code_cost(request)
        if not exhausted:
            self.context.size += output
            self.context.last_ms = self.clock_ms + request.wall_ms
        if add:
            self._add(request)
        return request

    def use_tool(
        self,
        kind: str,
        target: str,
        *,
        result: int,
        success: bool = True,
        error: str = "",
        decision: str = "accept",
        source: DecisionSource = "config",
        wait_ms: int = 0,
        lines: tuple[int, int] = (0, 0),
    ) -> ToolUse:
        name, parameters = {
            "read": self.v.read,
            "edit": self.v.edit,
            "shell": self.v.shell,
            "search": self.v.search,
        }[kind](target)
        tool = ToolUse(
            name=name,
            call_id=self.call_id(),
            parameters=parameters,
            duration_ms=self.rng.randint(15, 120)
            if kind in ("read", "search")
            else self.rng.randint(800, 6_000),
            success=success,
            error=error,
            decision="reject" if decision == "reject" else "accept",
            decision_source=source,
            wait_ms=wait_ms,
            result_size_bytes=result * 4,
            lines_added=lines[0],
            lines_removed=lines[1],
            read_only=kind in ("read", "search"),
        )
        self.pending += result if tool.executed else 30
        self._add(tool)
        return tool

    @contextmanager
    def subagent(self, objective: str) -> Iterator[None]:
        """Steps taken meanwhile belong to a subagent started by the agent tool."""
        assert self.v.agent is not None
        tool_name, agent_type = self.v.agent
        agent = Subagent(agent_type, self.hex(16) if self.tool == "claude_code" else self.uuid())
        key = "subagent_type" if self.tool == "claude_code" else "objective"
        tool = ToolUse(
            tool_name, self.call_id(), {key: agent_type if key == "subagent_type" else objective}, 0
        )
        saved = (self.steps, self.context, self.pending, self.clock_ms)
        self.steps, self.context, self.pending, self.agent = (
            agent.steps,
            _Context(self.v.system_tokens // 2),
            0,
            agent,
        )
        self.pending = len(objective) // 4
        try:
            yield
        finally:
            self.steps, self.context, self.pending, self.clock_ms = saved
            self.agent = None
        tool.subagent = agent
        tool.duration_ms = agent.wall_ms + 40
        tool.result_size_bytes = 1_800
        self.pending += 450
        self._add(tool)

    def compaction(self, trigger: str = "auto") -> Compaction:
        before = self.context.size + self.pending
        after = max(2_000, before // 9)
        summary = self.request(
            max(200, after - self.v.system_tokens // 4), stop="end_turn", purpose="compact", add=False
        )
        compaction = Compaction(
            before, after, summary.wall_ms + 350, "manual" if trigger == "manual" else "auto", summary
        )
        self.context = _Context(after)
        self.pending = 0
        self._add(compaction)
        return compaction


def _default_start(hours_ago: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)


def realistic_session(tool: Tool, seed: int = 0, start: datetime | None = None) -> Session:
    """Five prompts of ordinary work with the waste a backend must find.

    A recovered retry (529) in prompt 0; a retry storm (four 429s, then an answer) and a repeated
    read of src/config.py in prompt 1; a 45-minute idle gap before prompt 2 (the prompt cache is
    cold) and a subagent that reads src/cli.py twice (Claude Code, Gemini CLI; Codex reads
    without one); an automatic compaction, a third read of src/config.py, an edit the user
    rejects and a request that exhausts its retries (HTTP 500) in prompt 3; in prompt 4 Gemini
    CLI's first answer is an empty stream retried by the chat."""
    b = _Builder(tool, seed, start or _default_start(2))
    b.prompt("Why does test_parse_config fail in tests/test_config.py?")
    b.request(180)
    b.use_tool("read", "tests/test_config.py", result=2_400)
    b.request(150, failures=b.failures(529))
    b.use_tool("read", "src/config.py", result=3_800)
    b.use_tool("search", "parse_config", result=600)
    b.request(420, stop="end_turn", text=900, reasoning=120 if tool != "claude_code" else 0)

    b.prompt("Fix it and run the tests", idle_ms=90_000)
    b.request(300, failures=b.failures(429, 429, 429, 429), reasoning=200 if tool != "claude_code" else 0)
    b.use_tool("read", "src/config.py", result=3_800)
    b.use_tool("edit", "src/config.py", result=200, source="user", wait_ms=6_000, lines=(4, 2))
    b.use_tool("shell", "pytest -q tests/test_config.py", result=900, success=False, error="ShellError")
    b.request(260)
    b.use_tool("edit", "src/config.py", result=150, lines=(1, 1))
    b.use_tool("shell", "pytest -q tests/test_config.py", result=300)
    b.request(200, stop="end_turn", text=350)

    b.prompt("Find every caller of parse_config and check they handle None", idle_ms=45 * 60_000)
    b.request(250)
    if b.v.agent is not None:
        with b.subagent("Find the callers of parse_config and whether they handle a None result"):
            b.request(120)
            b.use_tool("search", "parse_config(", result=500)
            b.use_tool("read", "src/cli.py", result=2_900)
            b.use_tool("read", "src/server.py", result=4_100)
            b.use_tool("read", "src/cli.py", result=2_900)
            b.request(500, stop="end_turn", text=1_600)
    else:
        b.use_tool("search", "parse_config(", result=500)
        b.use_tool("read", "src/cli.py", result=2_900)
        b.use_tool("read", "src/server.py", result=4_100)
    b.request(380, stop="end_turn", text=1_200)

    b.prompt("Add a None check in the callers", idle_ms=120_000)
    b.compaction()
    b.request(200)
    b.use_tool("read", "src/config.py", result=3_800)
    b.use_tool("edit", "src/cli.py", result=30, decision="reject", source="user", wait_ms=12_000)
    b.request(0, exhausted=True, failures=b.failures(*[500] * b.v.exhausted_attempts))

    b.prompt("Try again", idle_ms=30_000)
    invalid = b.failures(None, invalid=True) if tool == "gemini_cli" else ()
    b.request(240, failures=invalid)
    b.use_tool("edit", "src/cli.py", result=150, source="user", wait_ms=3_000, lines=(3, 0))
    b.request(150, stop="end_turn", text=300)
    return b.session


DAY_REQUESTS = 2_000
DAY_TOOL_CALLS = 5_000
_DAY_PROMPTS = 100
_COMPACT_AT = 150_000  # context size that triggers an automatic compaction
_REREAD = 0.06  # chance that a read goes back to a file this prompt has already read


def day_long_session(tool: Tool, seed: int = 0, start: datetime | None = None) -> Session:
    """A working day: 100 prompts, exactly 2,000 model requests (compactions' included) and
    5,000 tool calls, with recovered retries, some repeated reads, compactions, idle gaps longer
    than the cache lifetime and a lunch break."""
    b = _Builder(tool, seed, start or _default_start(10))
    requests_left, tools_left = DAY_REQUESTS, DAY_TOOL_CALLS
    for n in range(_DAY_PROMPTS):
        prompts_left = _DAY_PROMPTS - n
        requests = requests_left // prompts_left
        tools = tools_left // prompts_left
        requests_left -= requests
        tools_left -= tools
        idle = 45 * 60_000 if n == _DAY_PROMPTS // 2 else b.rng.choice([20, 40, 60, 90, 120, 180, 480]) * 1000
        b.prompt(f"Task {n}: refactor the request handlers of package {n}", idle_ms=0 if n == 0 else idle)
        if b.context.size + b.pending > _COMPACT_AT:
            b.compaction()  # its summarising request is one of the prompt's requests
            requests -= 1
        files: list[str] = []
        gaps = requests - 1
        for r in range(requests):
            last = r == requests - 1
            retry = b.failures(429) if (n * 20 + r) % 40 == 17 else ()
            b.request(
                b.rng.randint(60, 500),
                stop="end_turn" if last else "tool_use",
                text=600 if last else 0,
                failures=retry,
            )
            if last:
                break
            for _ in range(tools // gaps + (1 if r < tools % gaps else 0)):
                kind = b.rng.choices(["read", "search", "edit", "shell"], weights=[5, 2, 2, 1])[0]
                if kind == "read" and (not files or b.rng.random() >= _REREAD):
                    files.append(f"src/pkg_{n}/module_{len(files)}.py")
                    target = files[-1]
                elif kind in ("read", "edit"):
                    target = b.rng.choice(files) if files else f"src/pkg_{n}/__init__.py"
                else:
                    target = f"handler_{n}_{r}" if kind == "search" else f"pytest -q tests/pkg_{n}"
                b.use_tool(
                    kind, target, result=b.rng.randint(100, 1_200), lines=(2, 1) if kind == "edit" else (0, 0)
                )
    return b.session
