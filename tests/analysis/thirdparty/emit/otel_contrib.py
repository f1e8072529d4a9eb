"""The OpenTelemetry contrib instrumentations: `opentelemetry-instrumentation-openai-v2` (2.4b0, on
`opentelemetry-util-genai`) around the real openai client, and `opentelemetry-instrumentation-httpx`
(`HTTPX2ClientInstrumentor`: openai 3.x sends through `httpx2`) for one span per HTTP attempt.

Version behaviour that shapes these traces:
- openai-v2 2.4b0 imports `opentelemetry.util.genai.instruments` and calls
  `TelemetryHandler.start_inference`, which util-genai 1.2b0 removed: it runs with util-genai up to
  1.1b0. From util-genai 1.0 on, `is_experimental_mode()` is always true, so the instrumentation
  always takes the latest-experimental path (`gen_ai.provider.name`, `gen_ai.input.messages` /
  `gen_ai.output.messages` as JSON span attributes, no `gen_ai.system`), whatever
  `OTEL_SEMCONV_STABILITY_OPT_IN` says. Content is captured only with
  `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_only` (or `span_and_event` /
  `event_only`); the legacy value `true` is rejected with a warning and captures nothing. The
  configuration here is the documented one for spans: opt-in plus `span_only`.
- Only `chat.completions.create` and `embeddings.create` are wrapped (not the Responses API). No
  cached-token attribute is recorded, so a prompt-cache miss cannot be told from a hit: no case is
  labelled cache_miss. A streamed call records no `gen_ai.response.finish_reasons` (the finish
  reason is only in `gen_ai.output.messages`). A failed call has status ERROR with the client's
  message, and `error.type` is the string of the exception class (`<class '...'>`).
- The httpx instrumentation (old HTTP conventions: `http.status_code`) makes one CLIENT span per
  attempt under the model call; `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE` puts the
  stand-in's request id of a failed attempt on it (`http.response.header.x_request_id`).

The application makes its own `invoke_agent` / `execute_tool` spans, named as the GenAI conventions
document them, around a plain tool-calling loop. Cases: productive runs, HTTP-level retries inside
one `create()` (429, then 500 and 503), a call that failed after the client's own retries and was
re-run, replies cut at the output limit (plain and streamed), an identical repeat, a repeated tool
request (twice: duplicate; three times: loop), a failed run, a growing context, cache-miss shapes
that must not be charged (a model switch, an expired cache, a resumed conversation: no cache
attribute), and oversized-model evidence, case and negatives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# read when the instrumentors are set up, so before that
os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_only"
os.environ["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"] = "x-request-id,request-id"

import openai
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.trace import SpanKind

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

run = Run(
    "otel_contrib",
    (
        "openai",
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry-util-genai",
        "opentelemetry-instrumentation-httpx",
    ),
)
OpenAIInstrumentor().instrument(tracer_provider=run.provider)
HTTPX2ClientInstrumentor().instrument(tracer_provider=run.provider)
tracer = trace.get_tracer("support-app")
# the client's defaults: two retries of a 408/409/429/5xx answer, each an HTTP attempt span
client = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test")
FAST = 0.05  # the scripted errors' retry-after, so the client's backoff stays short
USAGE = {"include_usage": True}  # a streamed answer reports its usage only when asked

SUPPORT = {"role": "system", "content": "You are a support assistant for an online shop. Answer briefly."}
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result
# premium-model answers are longer than a one-word step, so none of them is an oversized-model case
# unless the case says so
FULL = "Thanks for asking. Here is what applies to your order, with the steps to take and the dates."


def _function(name: str, description: str, **params: str) -> dict[str, Any]:
    properties = {key: {"type": kind} for key, kind in params.items()}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(params)},
        },
    }


TOOLS = [
    _function("lookup_order", "Look an order up by its number.", id="integer"),
    _function("search", "Search the help centre.", q="string"),
    _function("get_order", "The n-th most recent order, in full.", n="integer"),
]
ROUTE = [_function("route", "Send the message to a team.", to="string")]

TOOL_IMPL: dict[str, Callable[..., str]] = {
    "lookup_order": lambda id: json.dumps({"id": id, "status": "shipped"}),
    "search": lambda q: "No results.",
    "get_order": lambda n: f"Order {n}. {DOC}",
    "route": lambda to: f"routed to {to}",
}


@contextmanager
def agent(name: str, model: str, conversation: str | None = None) -> Iterator[Any]:
    """An `invoke_agent` span, the root of one task's trace."""
    with tracer.start_as_current_span(f"invoke_agent {name}", kind=SpanKind.INTERNAL) as span:
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.agent.name", name)
        span.set_attribute("gen_ai.request.model", model)
        if conversation:
            span.set_attribute("gen_ai.conversation.id", conversation)
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            raise  # the span records the exception and its ERROR status


def execute(call: Any) -> str:
    """Run one tool call the model asked for, in an `execute_tool` span."""
    name, arguments = call.function.name, call.function.arguments
    with tracer.start_as_current_span(f"execute_tool {name}", kind=SpanKind.INTERNAL) as span:
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("gen_ai.tool.name", name)
        span.set_attribute("gen_ai.tool.type", "function")
        span.set_attribute("gen_ai.tool.call.id", call.id)
        span.set_attribute("gen_ai.tool.call.arguments", arguments)
        result = TOOL_IMPL[name](**json.loads(arguments))
        span.set_attribute("gen_ai.tool.call.result", result)
        return result


def solve(model: str, messages: list[dict[str, Any]], max_steps: int = 8) -> str:
    """The tool-calling loop: ask, run the tools the model asks for, until it answers."""
    for _ in range(max_steps):
        message = chat(model, messages, tools=TOOLS).choices[0].message
        if not message.tool_calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            messages.append({"role": "tool", "tool_call_id": call.id, "content": execute(call)})
    raise RuntimeError("no answer within the step limit")


def ask(question: str, system: dict[str, str] = SUPPORT) -> list[dict[str, Any]]:
    return [system, {"role": "user", "content": question}]


def chat(model: str, messages: list[dict[str, Any]], **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=messages, **kw)  # type: ignore[arg-type]


# --- cases ---------------------------------------------------------------------------------------

with run.case("productive"), agent("support-agent", "gpt-4o-mini"):
    run.script(run.reply("ask", tool=("lookup_order", {"id": 42})), run.reply("answer", text="Tomorrow."))
    solve("gpt-4o-mini", ask("Where is order 42?"))

with run.case("stream"), agent("support-agent", "gpt-4o-mini"):
    run.script(run.reply("streamed", text="We open at nine and close at six."))
    stream = chat("gpt-4o-mini", ask("When do you open?"), stream=True, stream_options=USAGE)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

# the client retries by itself inside one create(): each failed attempt is an HTTP span, a retry
with run.case("http_retry_429"), agent("support-agent", "gpt-4o-mini"):
    run.script(run.reply("limited", "retry", status=429, retry_after=FAST), run.reply("served"))
    chat("gpt-4o-mini", ask("Do you ship to Norway?"))

with run.case("http_retry_5xx"), agent("support-agent", "gpt-4o"):
    run.script(
        run.reply("e500", "retry", status=500, retry_after=FAST),
        run.reply("e503", "retry", status=503, retry_after=FAST),
        run.reply("served", text=FULL),
    )
    chat("gpt-4o", ask("Can I pay by invoice?"))

# the client's retries run out and the call fails; the application tries the call once more
with run.case("retry_exhausted"), agent("support-agent", "gpt-4o-mini"):
    run.script(
        *(run.reply(f"down{i}", "retry", status=500, retry_after=FAST) for i in range(3)), run.reply("up")
    )
    messages = ask("Can I change my delivery address?")
    try:
        chat("gpt-4o-mini", messages)
    except openai.InternalServerError:
        time.sleep(0.1)
        chat("gpt-4o-mini", messages)

with run.case("retry_truncated"), agent("writer-agent", "gpt-4o"):
    run.script(
        run.reply("cut", "retry", truncated=True, text="The return policy " * 60),
        run.reply("again", text=FULL),
    )
    messages = ask("Summarise the return policy in detail.")
    if chat("gpt-4o", messages, max_tokens=200).choices[0].finish_reason == "length":
        chat("gpt-4o", messages, max_tokens=2000)

with run.case("retry_truncated_stream"), agent("writer-agent", "gpt-4o"):
    run.script(
        run.reply("cut", "retry", truncated=True, text="Our warranty " * 60), run.reply("again", text=FULL)
    )
    messages = ask("Explain the warranty in detail.")
    finish = None
    for chunk in chat("gpt-4o", messages, max_tokens=150, stream=True, stream_options=USAGE):
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    if finish == "length":
        for _chunk in chat("gpt-4o", messages, max_tokens=1500, stream=True, stream_options=USAGE):
            pass

with run.case("duplicate"), agent("support-agent", "gpt-4o"):
    run.script(run.reply("first", text=FULL), run.reply("repeat", "duplicate", text=FULL))
    messages = ask("What are your opening hours?")
    chat("gpt-4o", messages)
    chat("gpt-4o", messages)  # the same request again: its answer was already there

with run.case("duplicate_tool"), agent("research-agent", "gpt-4o-mini"):
    # the model asks for the same search twice before answering
    run.script(
        run.reply("think0", tool=("search", {"q": "kettle descaling"})),
        run.reply("think1", "duplicate", tool=("search", {"q": "kettle descaling"})),
        run.reply("answer", text="Use white vinegar."),
    )
    solve("gpt-4o-mini", ask("How do I descale a kettle?"))

with run.case("loop"), agent("research-agent", "gpt-4o-mini"):
    # the same search three times in a row, then an answer without it
    run.script(
        *(
            run.reply(f"think{i}", *(("loop",) if i else ()), tool=("search", {"q": "blender warranty"}))
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    solve("gpt-4o-mini", ask("Find the warranty terms for a blender."))

with run.case("failed_task"):
    run.script(
        run.reply("f1", "no_outcome", tool=("lookup_order", {"id": 7})),
        run.reply("f2", "no_outcome", text=FULL),
    )
    try:
        with agent("refund-agent", "gpt-4o"):
            plan = solve("gpt-4o", ask("Refund order 7."))
            raise RuntimeError("refund service unavailable")
    except RuntimeError:
        pass

with run.case("bloat"), agent("audit-agent", "gpt-4o-mini"):
    # every step adds a ~2,000-token tool result that stays in the context for good
    run.script(
        *(
            run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    solve("gpt-4o-mini", ask("Audit the last five orders."))

# No cached-token attribute: these re-send a long prefix that is not cached (another model, the
# cache expired), yet a miss cannot be told from a hit on these spans, so nothing is charged.
CATALOGUE = {"role": "system", "content": "Here is the catalogue: " + "blender, kettle, toaster; " * 400}

with run.case("catalogue_switch"), agent("catalogue-agent", "gpt-4o"):
    run.script(run.reply("big", text=FULL), run.reply("switched"))
    messages = [CATALOGUE, {"role": "user", "content": "Which items are kitchen appliances?"}]
    answer = chat("gpt-4o", messages).choices[0].message.content
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Which are cheapest?"}]
    chat("gpt-4o-mini", messages)

with run.case("catalogue_gap"), agent("catalogue-agent", "gpt-4o-mini"):
    run.script(run.reply("before"), run.reply("after"))
    messages = [CATALOGUE, {"role": "user", "content": "List the toasters."}]
    answer = chat("gpt-4o-mini", messages).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the kettles?"}]
    chat("gpt-4o-mini", messages)

# a conversation of two tasks (traces) linked by the agent spans' conversation id; the second resumes
# the first after the cache expired
with run.case("conversation_gap"):
    run.script(run.reply("turn1"), run.reply("turn2"))
    history = [CATALOGUE, {"role": "user", "content": "Recommend a kettle."}]
    with agent("catalogue-agent", "gpt-4o-mini", conversation="contrib-conv-1"):
        answer = chat("gpt-4o-mini", history).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And a toaster?"}]
    with agent("catalogue-agent", "gpt-4o-mini", conversation="contrib-conv-1"):
        chat("gpt-4o-mini", history)

CLASSIFY = {"role": "system", "content": "Classify the message as billing, shipping or other. One word."}

# the cheaper model does this step fine
with run.case("oversized_evidence"), agent("triage-agent", "gpt-4o-mini"):
    run.script(run.reply("cheap", text="billing"))
    chat("gpt-4o-mini", ask("I was charged twice.", CLASSIFY))

with run.case("oversized"), agent("triage-agent", "gpt-4.1"):
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    chat("gpt-4.1", ask("My parcel is late.", CLASSIFY))

# no cheaper model was seen doing this step
with run.case("premium_no_evidence"), agent("faq-agent", "gpt-4.1"):
    run.script(run.reply("premium-alone", text="yes"))
    chat("gpt-4.1", ask("Is it late?", {"role": "system", "content": "Answer yes or no."}))

# a short output that is a tool choice
with run.case("premium_tool_choice"), agent("triage-agent", "gpt-4.1"):
    run.script(run.reply("premium-tool", tool=("route", {"to": "billing"})))
    choice = chat("gpt-4.1", ask("Refund please.", CLASSIFY), tools=ROUTE, tool_choice="required")
    execute(choice.choices[0].message.tool_calls[0])

run.finish()
