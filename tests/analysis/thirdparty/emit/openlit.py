"""OpenLIT 1.45 (`openlit.init`, its own OpenAI and Anthropic instrumentations, and the OpenTelemetry
httpx instrumentation it turns on by default) around the real openai and anthropic clients.

What OpenLIT records, and why the cases look as they do:
- one CLIENT span per model call, named `chat <request model>`, with `gen_ai.operation.name`,
  `gen_ai.provider.name`, `gen_ai.usage.input_tokens`/`output_tokens`,
  `gen_ai.usage.cache_read.input_tokens`, `gen_ai.response.id`, and the content as
  `gen_ai.input.messages`/`gen_ai.output.messages`/`gen_ai.system_instructions` (captured by
  default); under it one `POST` span per HTTP attempt (httpx instrumentation, old HTTP names);
- `gen_ai.usage.cost` is 0 on every call: the price list is downloaded at `init` and there is no
  network here;
- the tool calls a model asked for are recorded (`gen_ai.tool.name`, `gen_ai.tool.args`, for
  Anthropic also `gen_ai.tool.call.arguments`, and in the output messages) only when the request
  passes `tools=`; the application's own steps are
  spans from `@openlit.trace` (a function) and `openlit.start_trace` (a block), which carry no
  kind marker at all, so the tool steps of the agent loops below are such function spans;
- Anthropic usage is recorded as the API reports it (input tokens exclude cache reads), a failed
  Anthropic call records nothing but its span name and the exception, and a streamed Anthropic
  call loses its cache reads (the last event's usage resets them to 0);
- a streamed call's span ends only when the stream is read to its end (a stream left early is
  never exported); a streamed OpenAI call without `stream_options.include_usage` gets token
  counts OpenLIT makes up (characters / 2).

Cases (each its own trace, rooted in an `openlit.start_trace` block): productive tool round trips
(OpenAI, Anthropic), streamed answers, retries after an error answer (app-level) and after a 429
(the client's own retry: two HTTP attempts under one model call), retries after a reply cut at
the output limit, duplicates (same request twice; the same tool re-requested once), loops (the
same tool asked for three times), a failed task, context bloat, cache misses (model switch,
expiry, changed prefix, a conversation resumed in a new trace) with cache hits as negatives, and
an oversized model with its evidence and negatives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import openai
import openlit
from opentelemetry import _logs

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

# a model answer long enough (> 16 tokens) that a premium model giving it is never "oversized"
ANSWER = "Thanks for waiting. I checked the account and the order details, and everything is in order now."

run = Run("openlit", ("openlit", "openai", "anthropic"), own_provider=False, reply=ANSWER)

# read by the OpenTelemetry HTTP instrumentations that `openlit.init` turns on: the request id of
# every HTTP attempt, so a failed attempt inside a model call can be told apart
os.environ["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"] = "x-request-id,request-id"
openlit.init(
    otlp_endpoint=run.endpoint,
    application_name="corpus-openlit",
    environment="corpus",
    disable_metrics=True,
    capture_message_content=True,
)

client = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)
claude = anthropic.Anthropic(base_url=run.base_url, api_key="sk-ant-test", max_retries=0)

SYSTEM_TEXT = "You are a support assistant for an online shop. Answer briefly."
SYSTEM = {"role": "system", "content": SYSTEM_TEXT}
CLASSIFY_TEXT = "Classify the customer's message as billing, shipping or other. One word."
CLASSIFY = {"role": "system", "content": CLASSIFY_TEXT}
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result
CATALOGUE = "Here is the catalogue: " + "blender, kettle, toaster; " * 400  # ~2,600 tokens


# --- the application's tools ---------------------------------------------------------------------


@openlit.trace
def lookup_order(id: int) -> str:
    return json.dumps({"id": id, "status": "shipped" if id == 42 else "unknown"})


@openlit.trace
def search(q: str) -> str:
    return "No results."


@openlit.trace
def get_order(n: int) -> str:
    return f"Order {n}. {DOC}"


@openlit.trace
def route(to: str) -> str:
    return f"Routed to {to}."


FUNCTIONS: dict[str, Callable[..., str]] = {f.__name__: f for f in (lookup_order, search, get_order, route)}


def _schema(name: str, description: str, **params: str) -> dict[str, Any]:
    properties = {key: {"type": kind} for key, kind in params.items()}
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(params)},
    }


_SCHEMAS = [
    _schema("lookup_order", "Look up an order by its number.", id="integer"),
    _schema("search", "Search the help centre.", q="string"),
    _schema("get_order", "Fetch the n-th most recent order.", n="integer"),
    _schema("route", "Route the conversation to a team.", to="string"),
]
TOOLS = [{"type": "function", "function": s} for s in _SCHEMAS]
CLAUDE_TOOLS = [
    {"name": s["name"], "description": s["description"], "input_schema": s["parameters"]} for s in _SCHEMAS
]


# --- the application --------------------------------------------------------------------------------


@contextmanager
def task(name: str, **metadata: Any) -> Iterator[Any]:
    """One task of the application: its own root span (an exception marks it failed)."""
    with openlit.start_trace(name) as span:
        if metadata:
            span.set_metadata(metadata)
        yield span


def chat(model: str, messages: list[dict[str, Any]], **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=messages, **kw)


def ask(question: str, system: dict[str, str] = SYSTEM) -> list[dict[str, Any]]:
    return [system, {"role": "user", "content": question}]


def act(messages: list[dict[str, Any]], response: Any) -> None:
    """Run the tools the model asked for and add the call and their results to the conversation."""
    message = response.choices[0].message
    calls = message.tool_calls or []
    messages.append(
        {"role": "assistant", "content": message.content, "tool_calls": [c.model_dump() for c in calls]}
    )
    for call in calls:
        result = FUNCTIONS[call.function.name](**json.loads(call.function.arguments))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


def claude_chat(model: str, messages: list[dict[str, Any]], system: str = SYSTEM_TEXT, **kw: Any) -> Any:
    return claude.messages.create(
        model=model, max_tokens=kw.pop("max_tokens", 1024), system=system, messages=messages, **kw
    )


def claude_act(messages: list[dict[str, Any]], response: Any) -> None:
    messages.append({"role": "assistant", "content": response.content})
    results = [
        {"type": "tool_result", "tool_use_id": block.id, "content": FUNCTIONS[block.name](**block.input)}
        for block in response.content
        if block.type == "tool_use"
    ]
    messages.append({"role": "user", "content": results})


def flush_events() -> None:
    """OpenLIT also sends an inference event (a log record) per call; the runtime flushes only the
    tracer provider."""
    flush = getattr(_logs.get_logger_provider(), "force_flush", None)
    if flush is not None:
        flush()


# --- OpenAI chat completions -------------------------------------------------------------------------

with run.case("productive"), task("answer-question") as root:
    messages = ask("Where is order 42?")
    run.script(
        run.reply("ask", tool=("lookup_order", {"id": 42})), run.reply("answer", text="It ships tomorrow.")
    )
    act(messages, chat("gpt-4o-mini", messages, tools=TOOLS))
    root.set_result(chat("gpt-4o-mini", messages, tools=TOOLS).choices[0].message.content)

with run.case("streamed"), task("answer-question"):
    run.script(run.reply("stream"))
    stream = chat(
        "gpt-4o", ask("Do you ship to Norway?"), stream=True, stream_options={"include_usage": True}
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

with run.case("streamed_no_usage"), task("answer-question"):  # OpenLIT estimates the tokens itself
    run.script(run.reply("stream-bare"))
    stream = chat("gpt-4o-mini", ask("Can I pay by invoice?"), stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

with run.case("retry_error"), task("answer-question"):
    messages = ask("Can I change my delivery address?")
    run.script(run.reply("fail", "retry", status=500), run.reply("ok"))
    for _attempt in range(3):  # the application's own retry loop
        try:
            chat("gpt-4o-mini", messages)
            break
        except openai.InternalServerError:
            time.sleep(0.05)

with run.case("retry_http"), task("answer-question"):
    # the client's own retry: one model call span, two HTTP attempts under it
    run.script(run.reply("throttled", "retry", status=429, retry_after=0.1), run.reply("served"))
    client.with_options(max_retries=2).chat.completions.create(
        model="gpt-4o-mini", messages=ask("Is the blender in stock?")
    )

with run.case("retry_truncated"), task("write-summary"):
    messages = ask("Summarise the return policy in detail.")
    run.script(run.reply("cut", "retry", truncated=True, text="The return policy " * 60), run.reply("again"))
    if chat("gpt-4o", messages, max_tokens=200).choices[0].finish_reason == "length":
        chat("gpt-4o", messages, max_tokens=2000)

with run.case("duplicate"), task("answer-question"):
    messages = ask("What are your opening hours?")
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    chat("gpt-4o", messages)
    chat("gpt-4o", messages)  # the same request again: its answer was already there

with run.case("loop"), task("research"):
    messages = ask("Find the warranty terms for a blender.")
    run.script(
        *(
            run.reply(f"think{i}", *(("loop",) if i else ()), tool=("search", {"q": "blender warranty"}))
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    for _ in range(3):  # the model keeps asking for the same search, and gets the same result
        act(messages, chat("gpt-4o-mini", messages, tools=TOOLS))
    chat("gpt-4o-mini", messages, tools=TOOLS)

with run.case("duplicate_tool"), task("research"):
    messages = ask("Find the warranty terms for a kettle.")
    run.script(
        run.reply("look", tool=("search", {"q": "kettle warranty"})),
        run.reply("look-again", "duplicate", tool=("search", {"q": "kettle warranty"})),
        run.reply("found", text="Kettles have a two-year warranty."),
    )
    for _ in range(2):  # one re-request of the same search: a duplicate, not yet a loop
        act(messages, chat("gpt-4o-mini", messages, tools=TOOLS))
    chat("gpt-4o-mini", messages, tools=TOOLS)

with run.case("failed_task"):
    run.script(run.reply("f1", "no_outcome", tool=("lookup_order", {"id": 7})), run.reply("f2", "no_outcome"))
    try:
        with task("refund-order"):
            messages = ask("Refund order 7.")
            act(messages, chat("gpt-4o", messages, tools=TOOLS))
            chat("gpt-4o", messages, tools=TOOLS)
            raise RuntimeError("refund service unavailable")
    except RuntimeError:
        pass

with run.case("bloat"), task("audit-orders"):
    # every step adds a ~2,000-token tool result that stays in the context for good
    messages = ask("Audit the last five orders.")
    run.script(
        *(
            run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    for _ in range(5):
        act(messages, chat("gpt-4o-mini", messages, tools=TOOLS))
    chat("gpt-4o-mini", messages, tools=TOOLS)

# OpenLIT reports cached input tokens (`gen_ai.usage.cache_read.input_tokens`), so a long prefix
# re-sent without being read from the cache is a miss that can be told from a hit.
LONG = [SYSTEM, {"role": "user", "content": CATALOGUE}]

with run.case("cache_miss_model"), task("catalogue-qa"):
    run.script(run.reply("big"), run.reply("switched", "cache_miss"))
    messages = [*LONG, {"role": "user", "content": "Which items are kitchen appliances?"}]
    answer = chat("gpt-4o", messages).choices[0].message.content
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And which are cheapest?"},
    ]
    chat("gpt-4o-mini", messages)  # another model cannot read the first one's cache

with run.case("cache_miss_gap"), task("catalogue-qa"):
    run.script(run.reply("before"), run.reply("after", "cache_miss"))
    messages = [*LONG, {"role": "user", "content": "List the toasters."}]
    answer = chat("gpt-4o-mini", messages).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the kettles?"}]
    chat("gpt-4o-mini", messages)

with run.case("cache_miss_prefix"), task("catalogue-qa"):
    run.script(run.reply("p1"), run.reply("p2", "cache_miss"))
    for i in range(2):  # a timestamp at the top of the system prompt changes the prefix every call
        stamp = {"role": "system", "content": f"Current time: 2026-11-30T10:0{i}:00Z"}
        chat("gpt-4o-mini", [stamp, *LONG, {"role": "user", "content": "What is in stock?"}])

with run.case("cache_hit"), task("catalogue-qa"):  # a growing conversation read from the cache
    run.script(run.reply("h1"), run.reply("h2"))
    messages = [*LONG, {"role": "user", "content": "Which kettles are electric?"}]
    answer = chat("gpt-4o-mini", messages).choices[0].message.content
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And cordless?"}]
    chat("gpt-4o-mini", messages)

# a conversation of two tasks (traces): the second resumes the first after the cache expired
with run.case("conversation_gap"):
    run.script(run.reply("turn1"), run.reply("turn2", "cache_miss"))
    history = [*LONG, {"role": "user", "content": "Recommend a kettle."}]
    session = {"session.id": "openlit-conv-1", "user.id": "customer-17"}
    with openlit.using_attributes(session), task("chat-turn", **session):
        answer = chat("gpt-4o-mini", history).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And a toaster?"}]
    with openlit.using_attributes(session), task("chat-turn", **session):
        chat("gpt-4o-mini", history)

# `agent_context` is documented to tag spans with gen_ai.agent.name; in 1.45 it reaches metrics only
with run.case("oversized_evidence"), openlit.agent_context("triage"), task("triage"):
    run.script(run.reply("cheap", text="billing"))  # the cheaper model does this step fine
    chat("gpt-4o-mini", ask("I was charged twice.", CLASSIFY))

with run.case("oversized"), openlit.agent_context("triage"), task("triage"):
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    chat("gpt-4.1", ask("My parcel is late.", CLASSIFY))

with run.case("premium_no_evidence"), task("quick-check"):  # no cheaper model was seen doing this step
    run.script(run.reply("premium-alone", text="yes"))
    chat("gpt-4.1", ask("Is it late?", {"role": "system", "content": "Answer yes or no."}))

with run.case("premium_tool_choice"), openlit.agent_context("triage"), task("triage"):
    run.script(
        run.reply("premium-tool", tool=("route", {"to": "billing"}))
    )  # a short output that is a tool choice
    messages = ask("Refund please.", CLASSIFY)
    act(messages, chat("gpt-4.1", messages, tools=TOOLS))

# --- Anthropic messages ------------------------------------------------------------------------------

HAIKU, SONNET = "claude-3-5-haiku-latest", "claude-sonnet-4-5"

with run.case("claude_productive"), task("answer-question") as root:
    messages = [{"role": "user", "content": "Where is order 42?"}]
    run.script(
        run.reply("ask", tool=("lookup_order", {"id": 42})), run.reply("answer", text="It ships tomorrow.")
    )
    claude_act(messages, claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS))
    root.set_result(claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS).content[0].text)

with run.case("claude_streamed"), task("answer-question"):
    run.script(run.reply("stream"))
    with claude.messages.stream(
        model=SONNET,
        max_tokens=1024,
        system=SYSTEM_TEXT,
        messages=[{"role": "user", "content": "Do you ship to Iceland?"}],
    ) as stream:
        text = "".join(stream.text_stream)

with run.case("claude_retry_error"), task("answer-question"):
    messages = [{"role": "user", "content": "Can I change my delivery address?"}]
    run.script(run.reply("overloaded", "retry", status=529), run.reply("ok"))
    for _attempt in range(3):
        try:
            claude_chat(SONNET, messages)
            break
        except anthropic.OverloadedError:
            time.sleep(0.05)

with run.case("claude_retry_truncated"), task("write-summary"):
    messages = [{"role": "user", "content": "Summarise the return policy in detail."}]
    run.script(run.reply("cut", "retry", truncated=True, text="The return policy " * 60), run.reply("again"))
    if claude_chat(SONNET, messages, max_tokens=200).stop_reason == "max_tokens":
        claude_chat(SONNET, messages, max_tokens=2000)

with run.case("claude_duplicate"), task("answer-question"):
    messages = [{"role": "user", "content": "What are your opening hours?"}]
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    claude_chat(HAIKU, messages)
    claude_chat(HAIKU, messages)

with run.case("claude_loop"), task("research"):
    messages = [{"role": "user", "content": "Find the warranty terms for a toaster."}]
    run.script(
        *(
            run.reply(f"think{i}", *(("loop",) if i else ()), tool=("search", {"q": "toaster warranty"}))
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    for _ in range(3):
        claude_act(messages, claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS))
    claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS)

with run.case("claude_bloat"), task("audit-orders"):
    # as `bloat`; the growing prefix is read from the cache, which Anthropic (and OpenLIT) leave
    # out of the input tokens
    messages = [{"role": "user", "content": "Audit the last five orders."}]
    run.script(
        *(
            run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    for _ in range(5):
        claude_act(messages, claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS))
    claude_chat(HAIKU, messages, tools=CLAUDE_TOOLS)

with run.case("claude_cache_miss_model"), task("catalogue-qa"):
    run.script(run.reply("big"), run.reply("switched", "cache_miss"))
    messages = [{"role": "user", "content": CATALOGUE + "\nWhich items are kitchen appliances?"}]
    answer = claude_chat(SONNET, messages).content[0].text
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And which are cheapest?"},
    ]
    claude_chat(HAIKU, messages)

with run.case("claude_cache_hit"), task("catalogue-qa"):
    # read from the cache each time; the streamed call's cache reads are lost by OpenLIT
    run.script(run.reply("h1"), run.reply("h2"), run.reply("h3"))
    messages = [{"role": "user", "content": CATALOGUE + "\nWhich kettles are electric?"}]
    for question in ("And cordless?", "And under 30 euros?"):
        answer = claude_chat(SONNET, messages).content[0].text
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]
    with claude.messages.stream(
        model=SONNET, max_tokens=1024, system=SYSTEM_TEXT, messages=messages
    ) as stream:
        text = "".join(stream.text_stream)

with run.case("claude_oversized_evidence"), task("triage"):
    run.script(run.reply("cheap", text="billing"))
    claude_chat(HAIKU, [{"role": "user", "content": "I was charged twice."}], system=CLASSIFY_TEXT)

with run.case("claude_oversized"), task("triage"):
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    claude_chat(SONNET, [{"role": "user", "content": "My parcel is late."}], system=CLASSIFY_TEXT)

with run.case("claude_premium_no_evidence"), task("quick-check"):
    run.script(run.reply("premium-alone", text="no"))
    claude_chat(SONNET, [{"role": "user", "content": "Is it late?"}], system="Answer yes or no.")

flush_events()
run.finish()
