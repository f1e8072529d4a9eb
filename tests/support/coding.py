"""Coding-agent traces for the Developers pages' tests, shaped the way Claude Code's are: one trace
per user prompt, a root `claude_code.interaction` span (`session.id`, `user.email`, `prompt.id`)
over `claude_code.llm_request` spans (Anthropic's usage: input tokens without the cached ones)
and `claude_code.tool` spans; the team and the repository on the resource. Made with the real OTel
SDK (`Recorder(service="claude-code", resource=...)`) and stored through the collector's own path.

The cost each prompt should come to is worked out here from the tokens it chose and the catalog's
prices, not read back from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.recorder import Recorder, prices, support_run
from tokentrail.analysis.run import analyze_range
from tokentrail.collector.outcomes import outcome_request
from tokentrail.collector.writer import load

MODEL = "claude-sonnet-4-5"
ANN, BOB, CAROL = "ann@example.com", "bob@example.com", "carol@example.com"
#: ann's pause between her first two prompts, and between the next two
IDLE_MS, SHORT_MS = 10 * 60_000, 30_000

Post = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Call:
    """One API request: Anthropic's counts (input without the cache reads and writes)."""

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    failed: bool = False
    model: str = MODEL

    @property
    def cost(self) -> float:
        value = prices().cost(
            "anthropic",
            self.model,
            input_tokens=self.input + self.cache_read + self.cache_write,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )
        assert value is not None, self.model
        return value


@dataclass
class Prompt:
    """A recorded prompt: its trace, its calls, and its root span's start and end (ns)."""

    trace_id: str
    calls: list[Call]
    tools: list[str]
    start_ns: int
    end_ns: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls)

    @property
    def wasted_by_retries(self) -> float:
        """A failed request that was made again is the retry bucket's."""
        return sum(c.cost for c in self.calls if c.failed)


def claude_code(team: str, repository: str) -> Recorder:
    """A recorder whose resource says Claude Code, the team and the repository."""
    return Recorder(service="claude-code", resource={"team": team, "repository": repository})


def prompt(
    rec: Recorder,
    session: str,
    email: str,
    prompt_id: str,
    calls: list[Call],
    tools: tuple[str, ...] = (),
    **root_attributes: Any,
) -> Prompt:
    """One prompt's trace: the interaction, its API requests in order, then its tool calls."""
    with rec.span(
        "claude_code.interaction",
        5,
        session__id=session,
        user__email=email,
        prompt__id=prompt_id,
        **root_attributes,
    ) as root:
        for i, c in enumerate(calls):
            with rec.span(
                "claude_code.llm_request",
                700,
                error="overloaded_error" if c.failed else "",
                model=c.model,
                input_tokens=c.input,
                output_tokens=c.output,
                cache_read_tokens=c.cache_read,
                cache_creation_tokens=c.cache_write,
                request_id=f"req_{prompt_id}_{i}",
            ):
                pass
        for i, tool in enumerate(tools):
            with rec.span("claude_code.tool", 150, tool_name=tool, tool_use_id=f"toolu_{prompt_id}_{i}"):
                pass
    return Prompt(
        trace_id=format(root.get_span_context().trace_id, "032x"),
        calls=list(calls),
        tools=list(tools),
        start_ns=root.start_time,
        end_ns=root.end_time,
        extra=dict(root_attributes),
    )


def total(prompts: list[Prompt]) -> float:
    return sum(p.cost for p in prompts)


def outcomes_of(store: Any, project: str = "default") -> Post:
    """Record an outcome (a `POST /api/outcomes` body) as that endpoint builds it, straight into
    the store."""

    def post(body: dict[str, Any]) -> None:
        load(store.client, project, [outcome_request(body).SerializeToString()], prices())

    return post


@dataclass
class Team:
    ann: list[Prompt]  # sess-ann-1: three prompts (a pull request merged); sess-ann-2: one
    bob: list[Prompt]  # sess-bob: two prompts (its pull request was closed unmerged)
    carol: list[Prompt]  # sess-carol, in another team and repository: two prompts (merged)
    support: str  # a support bot's trace in the same project: no coding agent's


def seed_team(store: Any, post: Post) -> Team:
    """Three developers' Claude Code sessions in two teams and repositories, their outcomes
    (recorded with `post`), a support bot's trace beside them, all analysed. Ann's second prompt
    has a failed request made again (retry waste); bob's session failed (all its spend ends in no
    outcome). No other waste: no later call re-sends 1,024 uncached tokens."""
    payments = claude_code("payments", "acme/api")
    ann = [prompt(payments, "sess-ann-1", ANN, "a1", [Call(1200, 300, 20000, 1000)], ("Read", "Bash"))]
    payments.tick(IDLE_MS)
    overloaded = Call(800, 0, 20000, failed=True)
    ann.append(prompt(payments, "sess-ann-1", ANN, "a2", [overloaded, Call(800, 200, 20000, 150)], ("Edit",)))
    payments.tick(SHORT_MS)
    ann.append(prompt(payments, "sess-ann-1", ANN, "a3", [Call(500, 100, 22000)]))
    ann.append(prompt(payments, "sess-ann-2", ANN, "a4", [Call(2000, 400, 0, 5000)], ("Grep",)))
    bob = [
        prompt(payments, "sess-bob", BOB, "b1", [Call(3000, 800, 10000, 2000)], ("Bash",)),
        prompt(payments, "sess-bob", BOB, "b2", [Call(900, 200, 12000)]),
    ]
    payments.store(store.client)
    search = claude_code("search", "acme/search")
    carol = [
        prompt(search, "sess-carol", CAROL, "c1", [Call(4000, 1500, 30000, 8000)], ("Read",)),
        prompt(search, "sess-carol", CAROL, "c2", [Call(600, 900, 38000, 300)], ("Bash",)),
    ]
    search.store(store.client)
    bot = Recorder()
    support = support_run(bot, conversation="conv-support")  # a retried call: waste, but no coding agent's
    bot.store(store.client)
    post({"conversation_id": "sess-ann-1", "name": "pr_merged", "success": True})
    post({"conversation_id": "sess-bob", "name": "pr_merged", "success": False})
    post({"conversation_id": "sess-carol", "name": "pr_merged", "success": True})
    post({"trace_id": carol[1].trace_id, "name": "tests_passed", "success": True})
    analyze_range(store.client, "default", 0, 2**62, prices())
    return Team(ann, bob, carol, support)
