"""Hand-written OpenTelemetry with only the older GenAI names (semantic conventions v1.26: no
operation name, `gen_ai.system`, `gen_ai.usage.prompt_tokens`/`completion_tokens`, prompt and
completion as span events), around the real openai client. Tool steps are spans the application
names itself (`tool.name`, `tool.arguments`), the way code written before the conventions had
tool spans does it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

# answers longer than a classification's, so that only the oversized cases give a premium model a short job
run = Run(
    "legacy_otel",
    ("openai", "opentelemetry-sdk"),
    reply="Thanks for waiting. I have checked the order history and the shipping notes for you, and here "
    "is everything I found, in full.",
)
tracer = trace.get_tracer("support-app")
client = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)

SYSTEM = {"role": "system", "content": "You are a support assistant for an online shop. Answer briefly."}
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result


def chat(model: str, messages: list[dict[str, Any]], **kw: Any) -> Any:
    """One model call, traced by hand the v1.26 way. Raises what the client raises."""
    with tracer.start_as_current_span(
        f"chat {model}", kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
    ) as span:
        span.set_attribute("gen_ai.system", "openai")
        span.set_attribute("gen_ai.request.model", model)
        span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(messages)})
        try:
            response = client.chat.completions.create(model=model, messages=messages, **kw)  # type: ignore[arg-type]
        except openai.APIError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        span.set_attribute("gen_ai.response.model", response.model)
        span.set_attribute("gen_ai.response.id", response.id)
        span.set_attribute("gen_ai.usage.prompt_tokens", response.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.completion_tokens", response.usage.completion_tokens)
        span.set_attribute("gen_ai.response.finish_reasons", [c.finish_reason for c in response.choices])
        message = response.choices[0].message
        span.add_event(
            "gen_ai.content.completion",
            {"gen_ai.completion": json.dumps(message.model_dump(exclude_none=True))},
        )
        return response


def tool(name: str, arguments: dict[str, Any], result: str) -> str:
    with tracer.start_as_current_span(f"tool {name}") as span:
        span.set_attribute("tool.name", name)
        span.set_attribute("tool.arguments", json.dumps(arguments))
        span.set_attribute("tool.result", result[:200])
        return result


@contextmanager
def task(name: str, **attrs: Any) -> Iterator[Any]:
    """The application's own root span for one task."""
    with tracer.start_as_current_span(name) as span:  # an exception marks it failed
        for key, value in attrs.items():
            span.set_attribute(key, value)
        yield span


def ask(question: str) -> list[dict[str, Any]]:
    return [SYSTEM, {"role": "user", "content": question}]


def tool_turn(messages: list[dict[str, Any]], response: Any, result: str) -> None:
    """Append the model's tool call and the tool's result to the conversation."""
    call = response.choices[0].message.tool_calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


# --- cases ---------------------------------------------------------------------------------------

with run.case("productive"), task("answer-question"):
    messages = ask("Where is order 42?")
    run.script(
        run.reply("ask", tool=("lookup_order", {"id": 42})), run.reply("answer", text="It ships tomorrow.")
    )
    first = chat("gpt-4o-mini", messages)
    tool_turn(messages, first, tool("lookup_order", {"id": 42}, '{"status": "shipped"}'))
    chat("gpt-4o-mini", messages)

with run.case("retry_error"), task("answer-question"):
    messages = ask("Can I change my delivery address?")
    run.script(run.reply("fail", "retry", status=500), run.reply("ok"))
    for _attempt in range(3):  # the application's own retry loop
        try:
            chat("gpt-4o-mini", messages)
            break
        except openai.InternalServerError:
            time.sleep(0.05)

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
        response = chat("gpt-4o-mini", messages)
        tool_turn(messages, response, tool("search", {"q": "blender warranty"}, "No results."))
    chat("gpt-4o-mini", messages)

with run.case("failed_task"):
    run.script(run.reply("f1", "no_outcome", tool=("lookup_order", {"id": 7})), run.reply("f2", "no_outcome"))
    try:
        with task("refund-order"):
            messages = ask("Refund order 7.")
            response = chat("gpt-4o", messages)
            tool_turn(messages, response, tool("lookup_order", {"id": 7}, '{"status": "unknown"}'))
            chat("gpt-4o", messages)
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
    for i in range(5):
        response = chat("gpt-4o-mini", messages)
        tool_turn(messages, response, tool("get_order", {"n": i}, f"Order {i}. {DOC}"))
    chat("gpt-4o-mini", messages)

# v1.26 has no name for cached input tokens: whether a prefix was read from the cache cannot be
# told from these spans, so the cases below must not be charged as cache misses.
LONG = [SYSTEM, {"role": "user", "content": "Here is the catalogue: " + "blender, kettle, toaster; " * 400}]

with run.case("cache_miss_model"), task("catalogue-qa"):
    run.script(run.reply("big"), run.reply("switched"))
    messages = [*LONG, {"role": "user", "content": "Which items are kitchen appliances?"}]
    answer = chat("gpt-4o", messages).choices[0].message.content
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And which are cheapest?"},
    ]
    chat("gpt-4o-mini", messages)  # another model cannot read the first one's cache

with run.case("cache_miss_gap"), task("catalogue-qa"):
    run.script(run.reply("before"), run.reply("after"))
    messages = [*LONG, {"role": "user", "content": "List the toasters."}]
    answer = chat("gpt-4o-mini", messages).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the kettles?"}]
    chat("gpt-4o-mini", messages)

with run.case("cache_miss_prefix"), task("catalogue-qa"):
    run.script(run.reply("p1"), run.reply("p2"))
    for i in range(2):  # a timestamp at the top of the system prompt changes the prefix every call
        stamp = {"role": "system", "content": f"Current time: 2026-11-30T10:0{i}:00Z"}
        chat("gpt-4o-mini", [stamp, *LONG, {"role": "user", "content": "What is in stock?"}])

# a conversation of two tasks (traces): the second resumes the first after the cache expired
with run.case("conversation_gap"):
    run.script(run.reply("turn1"), run.reply("turn2"))
    history = [*LONG, {"role": "user", "content": "Recommend a kettle."}]
    with task("chat-turn", **{"session.id": "legacy-conv-1"}):
        answer = chat("gpt-4o-mini", history).choices[0].message.content
    time.sleep(CACHE_TTL + 0.5)
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And a toaster?"}]
    with task("chat-turn", **{"session.id": "legacy-conv-1"}):
        chat("gpt-4o-mini", history)

CLASSIFY = {
    "role": "system",
    "content": "Classify the customer's message as billing, shipping or other. One word.",
}

with run.case("oversized_evidence"), task("triage"):  # the cheaper model does this step fine
    run.script(run.reply("cheap", text="billing"))
    chat("gpt-4o-mini", [CLASSIFY, {"role": "user", "content": "I was charged twice."}])

with run.case("oversized"), task("triage"):
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    chat("gpt-4.1", [CLASSIFY, {"role": "user", "content": "My parcel is late."}])

with run.case("premium_no_evidence"), task("triage"):  # no cheaper model was seen doing this step
    run.script(run.reply("premium-alone", text="yes"))
    chat(
        "gpt-4.1",
        [{"role": "system", "content": "Answer yes or no."}, {"role": "user", "content": "Is it late?"}],
    )

with run.case("premium_tool_choice"), task("triage"):  # a short output that is a tool choice
    run.script(run.reply("premium-tool", tool=("route", {"to": "billing"})))
    chat("gpt-4.1", [CLASSIFY, {"role": "user", "content": "Refund please."}])

run.finish()
