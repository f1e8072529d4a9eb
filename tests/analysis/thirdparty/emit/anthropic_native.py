"""The anthropic client's own OpenTelemetry spans (anthropic 2.14, instrumentation scope
`com.anthropic.sdk.python`), with no other instrumentation.

The client traces itself whenever a tracer provider is registered (or given as the
`open_telemetry={"tracer_provider": ...}` client option); `ANTHROPIC_OPEN_TELEMETRY=false` turns it
off. Content (system prompt, messages, output, tool arguments and results) is recorded only in
content mode: `open_telemetry={"traces": {"content_mode": "content"}}` or
`ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE=content`, used here.

What it records:
- one CLIENT span `anthropic.messages.create` per API call, however many HTTP attempts the client's
  retries made: there is no span per attempt, only `http.request.resend_count` on the call span, so
  an attempt that failed and was retried inside one call has no span of its own. A failed call
  has status ERROR with no message, `error.type` (the API's error type, e.g. `overloaded_error`),
  `http.response.status_code`, and the last attempt's `request-id` header as `anthropic.request.id`.
- `gen_ai.usage.input_tokens` includes cache reads and writes;
  `gen_ai.usage.cache_read.input_tokens` / `gen_ai.usage.cache_write.input_tokens`; the stop reason
  as `anthropic.message.stop_reason` (no `gen_ai.response.finish_reasons`).
- the tool runner (`client.beta.messages.tool_runner`) makes an INTERNAL `invoke_agent` span
  `anthropic.messages.tool_runner`, and an `execute_tool` span `anthropic.custom_tool_use <name>`
  per tool run, next to the model calls. By default the runner keeps the conversation on the server
  (message threads) and sends only the new messages, which the model stand-in cannot bill as the
  API would; `thread=False` keeps the history in the client, as before threads.
- a stream read with the `messages.stream()` helper records its output; a raw `create(stream=True)`
  stream records usage and stop reason but no output content.

Tasks of more than one call run under an `invoke_agent` span the application writes by hand (the
client makes none outside the tool runner). Cases: productive runs (tool runner, streams), a retry
inside one call (invisible but for the resend count), a call that failed after the client's own
retries and was re-run, replies cut at `max_tokens` (plain and streamed), an identical repeat, a
repeated tool request (twice: duplicate; three times: loop), a failed task, a growing context,
prompt caching with `cache_control` (hits, and misses from a model switch, an expired cache, a
changing prefix and a resumed conversation), and oversized-model evidence, case and negatives.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
from anthropic import beta_tool
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

run = Run("anthropic_native", ("anthropic",))
# the stand-in serves models this client version already calls deprecated
warnings.filterwarnings("ignore", category=DeprecationWarning)
client = anthropic.Anthropic(
    base_url=run.base_url,
    api_key="sk-ant-test",
    open_telemetry={"tracer_provider": run.provider, "traces": {"content_mode": "content"}},
)
tracer = trace.get_tracer("support-app")
FAST = 0.05  # the scripted errors' retry-after, so the client's backoff stays short
SONNET, HAIKU = "claude-sonnet-4-5", "claude-3-5-haiku-latest"

SUPPORT = "You are a support assistant for an online shop. Answer briefly."
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result
# premium-model answers are longer than a one-word step, so none of them is an oversized-model case
# unless the case says so
FULL = "Thanks for asking. Here is what applies to your order, with the steps to take and the dates."


@beta_tool
def lookup_order(id: int) -> str:
    """Look an order up by its number."""
    return json.dumps({"id": id, "status": "shipped"})


@beta_tool
def search(q: str) -> str:
    """Search the help centre."""
    return "No results."


@beta_tool
def get_order(n: int) -> str:
    """The n-th most recent order, in full."""
    return f"Order {n}. {DOC}"


ROUTE = [
    {
        "name": "route",
        "description": "Send the message to a team.",
        "input_schema": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]},
    }
]


@contextmanager
def agent(name: str, model: str) -> Iterator[Any]:
    """The application's `invoke_agent` span: the root of one task's trace."""
    with tracer.start_as_current_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL) as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.provider.name", "anthropic")
        span.set_attribute("gen_ai.agent.name", name)
        span.set_attribute("gen_ai.request.model", model)
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            raise  # the span records the exception and its ERROR status


def solve(model: str, question: str, tools: list[Any], **kw: Any) -> Any:
    """The client's tool runner, to the final answer; its spans are the trace's root."""
    runner = client.beta.messages.tool_runner(
        model=model,
        max_tokens=1024,
        system=SUPPORT,
        tools=tools,
        messages=[{"role": "user", "content": question}],
        thread=False,
        **kw,
    )
    return runner.until_done()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def create(
    model: str, messages: list[dict[str, Any]], system: Any = SUPPORT, via: Any = None, **kw: Any
) -> Any:
    """One model call, through `via` (a copy of the client with other options) or the client."""
    kw.setdefault("max_tokens", 1024)
    return (via or client).messages.create(model=model, system=system, messages=messages, **kw)


def text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# --- cases ---------------------------------------------------------------------------------------

with run.case("productive"):
    run.script(run.reply("ask", tool=("lookup_order", {"id": 42})), run.reply("answer", text="Tomorrow."))
    solve(HAIKU, "Where is order 42?", [lookup_order])

with run.case("stream"), agent("support-agent", HAIKU):
    run.script(run.reply("streamed", text="We open at nine and close at six."))
    messages = user("When do you open?")
    with client.messages.stream(model=HAIKU, max_tokens=1024, system=SUPPORT, messages=messages) as s:
        text = "".join(s.text_stream)

with run.case("stream_raw"), agent("support-agent", HAIKU):
    run.script(run.reply("raw", text="Yes, to all EU countries."))
    for _event in create(HAIKU, user("Do you ship to Spain?"), stream=True):
        pass

# the client retries a 529 by itself inside one call: the attempt has no span (only the call's
# resend count says it happened), so it cannot be labelled
with run.case("retry_in_call"), agent("support-agent", SONNET):
    run.script(
        run.reply("overloaded", status=529, retry_after=FAST, unrecorded=True), run.reply("served", text=FULL)
    )
    create(SONNET, user("Can I pay by invoice?"))

# the client's retries run out and the call fails; the application tries the call once more
with run.case("retry_exhausted"), agent("support-agent", HAIKU):
    # the first two attempts have no span; the third is the failed call's last attempt
    run.script(
        run.reply("over0", status=529, retry_after=FAST, unrecorded=True),
        run.reply("over1", status=529, retry_after=FAST, unrecorded=True),
        run.reply("over2", "retry", status=529, retry_after=FAST),
        run.reply("up"),
    )
    messages = user("Can I change my delivery address?")
    try:
        create(HAIKU, messages)
    except anthropic.OverloadedError:
        time.sleep(0.1)
        create(HAIKU, messages)

with run.case("retry_truncated"), agent("writer-agent", SONNET):
    run.script(
        run.reply("cut", "retry", truncated=True, text="The return policy " * 60),
        run.reply("again", text=FULL),
    )
    messages = user("Summarise the return policy in detail.")
    if create(SONNET, messages, max_tokens=200).stop_reason == "max_tokens":
        create(SONNET, messages, max_tokens=2000)

with run.case("retry_truncated_stream"), agent("writer-agent", SONNET):
    run.script(
        run.reply("cut", "retry", truncated=True, text="Our warranty " * 60), run.reply("again", text=FULL)
    )
    messages = user("Explain the warranty in detail.")
    with client.messages.stream(model=SONNET, max_tokens=150, system=SUPPORT, messages=messages) as s:
        cut = s.get_final_message().stop_reason == "max_tokens"
    if cut:
        with client.messages.stream(model=SONNET, max_tokens=1500, system=SUPPORT, messages=messages) as s:
            s.until_done()

with run.case("duplicate"), agent("support-agent", SONNET):
    run.script(run.reply("first", text=FULL), run.reply("repeat", "duplicate", text=FULL))
    messages = user("What are your opening hours?")
    create(SONNET, messages)
    create(SONNET, messages)  # the same request again: its answer was already there

with run.case("duplicate_tool"):
    # the model asks for the same search twice before answering
    run.script(
        run.reply("think0", tool=("search", {"q": "kettle descaling"})),
        run.reply("think1", "duplicate", tool=("search", {"q": "kettle descaling"})),
        run.reply("answer", text="Use white vinegar."),
    )
    solve(HAIKU, "How do I descale a kettle?", [search])

with run.case("loop"):
    # the same search three times in a row, then an answer without it
    run.script(
        *(
            run.reply(f"think{i}", *(("loop",) if i else ()), tool=("search", {"q": "blender warranty"}))
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    solve(HAIKU, "Find the warranty terms for a blender.", [search])

with run.case("failed_task"):
    run.script(
        run.reply("f1", "no_outcome", tool=("lookup_order", {"id": 7})),
        run.reply("f2", "no_outcome", text=FULL),
    )
    try:
        with agent("refund-agent", SONNET):
            plan = solve(SONNET, "Refund order 7.", [lookup_order])
            raise RuntimeError("refund service unavailable")
    except RuntimeError:
        pass

with run.case("bloat"):
    # every step adds a ~2,000-token tool result that stays in the context for good; the growing
    # conversation is read from the cache (automatic caching), so none of it is a cache miss
    run.script(
        *(
            run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    solve(HAIKU, "Audit the last five orders.", [get_order], cache_control={"type": "ephemeral"})


def catalogue(store: str) -> list[dict[str, Any]]:
    """A long system prompt marked for caching, its own per case so no case reads another's cache."""
    items = f"You answer questions about the {store} catalogue: " + "blender, kettle, toaster; " * 400
    return [{"type": "text", "text": items, "cache_control": {"type": "ephemeral"}}]


def follow_up(messages: list[dict[str, Any]], answer: Any, question: str) -> list[dict[str, Any]]:
    reply = {"role": "assistant", "content": text_of(answer)}
    return [*messages, reply, {"role": "user", "content": question}]


with run.case("cache_hit"), agent("catalogue-agent", HAIKU):  # within the cache's lifetime: read from it
    run.script(run.reply("first"), run.reply("cached"))
    system, messages = catalogue("Northside"), user("Which items are kitchen appliances?")
    answer = create(HAIKU, messages, system=system)
    create(HAIKU, follow_up(messages, answer, "Which are cheapest?"), system=system)

with run.case("cache_miss_model"), agent("catalogue-agent", SONNET):
    run.script(run.reply("big", text=FULL), run.reply("switched", "cache_miss"))
    system, messages = catalogue("Eastside"), user("Which items are kitchen appliances?")
    answer = create(SONNET, messages, system=system)
    create(HAIKU, follow_up(messages, answer, "Which are cheapest?"), system=system)  # no cache of its own

with run.case("cache_miss_gap"), agent("catalogue-agent", HAIKU):
    run.script(run.reply("before"), run.reply("after", "cache_miss"))
    system, messages = catalogue("Westside"), user("List the toasters.")
    answer = create(HAIKU, messages, system=system)
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    create(HAIKU, follow_up(messages, answer, "And the kettles?"), system=system)

with run.case("cache_miss_prefix"), agent("catalogue-agent", HAIKU):
    run.script(run.reply("p1"), run.reply("p2", "cache_miss"))
    messages = user("What is in stock?")
    for i in range(2):  # a timestamp ahead of the cached block changes the prefix every call
        stamp = {"type": "text", "text": f"Current time: 2026-11-30T10:0{i}:00Z"}
        answer = create(HAIKU, messages, system=[stamp, *catalogue("Southside")])
        messages = follow_up(messages, answer, "And what is out of stock?")

# a conversation of two tasks (traces), linked by the client's conversation id: the second resumes
# the first after the cache expired
with run.case("conversation_gap"):
    run.script(run.reply("turn1"), run.reply("turn2", "cache_miss"))
    chat = client.with_options(open_telemetry={**client.open_telemetry, "conversation_id": "anthropic-c1"})
    system, history = catalogue("Harbour"), user("Recommend a kettle.")
    with agent("catalogue-agent", HAIKU):
        answer = create(HAIKU, history, system=system, via=chat)
    time.sleep(CACHE_TTL + 0.5)
    with agent("catalogue-agent", HAIKU):
        create(HAIKU, follow_up(history, answer, "And a toaster?"), system=system, via=chat)

CLASSIFY = "Classify the message as billing, shipping or other. One word."

# the cheaper model does this step fine
with run.case("oversized_evidence"), agent("triage-agent", HAIKU):
    run.script(run.reply("cheap", text="billing"))
    create(HAIKU, user("I was charged twice."), system=CLASSIFY)

with run.case("oversized"), agent("triage-agent", SONNET):
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    create(SONNET, user("My parcel is late."), system=CLASSIFY)

# no cheaper model was seen doing this step
with run.case("premium_no_evidence"), agent("faq-agent", SONNET):
    run.script(run.reply("premium-alone", text="yes"))
    create(SONNET, user("Is it late?"), system="Answer yes or no.")

# a short output that is a tool choice
with run.case("premium_tool_choice"), agent("triage-agent", SONNET):
    run.script(run.reply("premium-tool", tool=("route", {"to": "billing"})))
    create(SONNET, user("Refund please."), system=CLASSIFY, tools=ROUTE, tool_choice={"type": "any"})

run.finish()
