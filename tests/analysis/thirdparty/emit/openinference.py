"""OpenInference: `openinference-instrumentation-openai` 0.1.66 on the real openai 3.x client, with the
application's own agent runs and tools traced through `openinference-instrumentation`'s `OITracer`
(AGENT spans by context manager, TOOL spans by the `@tracer.tool` decorator), sessions and users by
`using_session` / `using_attributes`, and `opentelemetry-instrumentation-httpx` (`HTTPX2ClientInstrumentor`,
openai 3.x sends through `httpx2`) recording every HTTP attempt under the model call.

What this version records: one `ChatCompletion` / `Response` span per model call (kind LLM,
flattened `llm.*` names, the request and the response as JSON in `input.value` / `output.value`,
which is the only place the response id, and so the label, appears), usage with cached input
tokens (`llm.token_count.prompt_details.cache_read`), `llm.finish_reason` for chat completions
only (a Responses call's truncation shows only in `output.value`), and `llm.model_name` only once
a response came: a failed call names its model only inside `llm.invocation_parameters`. The HTTP
attempt spans are children of the model call span, so the span with the usage is not a leaf.

Cases: an agent loop with tools (chat completions, streamed chat, the Responses API with a function
call and a streamed answer), retries (after a 500 in the application's own loop; a 429 retried by
the client inside one call; a reply cut at the output limit, on chat completions and on Responses),
duplicate requests (chat completions; Responses with a bare string input), a loop (the same search
three times), a duplicate tool re-request, a failed task, context bloat, cache misses (model switch,
expiry, changed prefix, and a session resumed after expiry in a new trace), and the oversized-model
case with its evidence and negatives.
"""

from __future__ import annotations

import os
import time

# Lets the test find each HTTP attempt by the request id the error answers carry.
os.environ["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"] = "x-request-id,request-id"

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
from openinference.instrumentation import TracerProvider, using_attributes, using_session
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

# Longer than 16 tokens, so that an ordinary answer is never a short-answer step of the oversized
# rule; the cases that need a short answer script it.
ANSWER = "Your order left our warehouse yesterday and should reach you within three business days."

run = Run(
    "openinference",
    (
        "openinference-instrumentation-openai",
        "openinference-instrumentation",
        "openinference-semantic-conventions",
        "openai",
        "httpx2",
        "opentelemetry-instrumentation-httpx",
        "opentelemetry-sdk",
    ),
    own_provider=False,
    reply=ANSWER,
)

# OpenInference's provider: its tracers are OITracers (span kinds, decorators, context attributes)
# and its attribute limit is raised so that long flattened conversations are not cut at 128.
provider = TracerProvider(resource=Resource.create({"service.name": "corpus-openinference"}))
provider.add_span_processor(
    BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{run.endpoint}/v1/traces"), schedule_delay_millis=200)
)
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument(tracer_provider=provider)
HTTPX2ClientInstrumentor().instrument(tracer_provider=provider)
tracer = provider.get_tracer("support-app")

client = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)

SUPPORT = "You are a support assistant for an online shop. Use the tools to look things up. Answer briefly."


def _function(name: str, description: str, **properties: str) -> dict[str, Any]:
    fields = {key: {"type": kind} for key, kind in properties.items()}
    schema = {"type": "object", "properties": fields, "required": list(properties)}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS = [
    _function("lookup_order", "Status of an order.", order_id="integer"),
    _function("search_docs", "Search the help centre.", query="string"),
    _function("check_stock", "Stock level of one article.", sku="string"),
    _function("get_order", "Full record of one of the customer's recent orders.", n="integer"),
]
RESPONSE_TOOLS = [{"type": "function", **t["function"]} for t in TOOLS]  # the Responses API's flat shape
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result


@tracer.tool(name="lookup_order", description="Status of an order.")
def lookup_order(order_id: int) -> str:
    return json.dumps({"order_id": order_id, "status": "shipped" if order_id != 7 else "unknown"})


@tracer.tool(name="search_docs", description="Search the help centre.")
def search_docs(query: str) -> str:
    return "No results."


@tracer.tool(name="check_stock", description="Stock level of one article.")
def check_stock(sku: str) -> str:
    return json.dumps({"sku": sku, "in_stock": 0, "restock": "unknown"})


@tracer.tool(name="get_order", description="Full record of one of the customer's recent orders.")
def get_order(n: int) -> str:
    return f"Order {n}. {DOC}"


IMPLEMENTATIONS = {f.__name__: f for f in (lookup_order, search_docs, check_stock, get_order)}


def call_tool(name: str, arguments: str) -> str:
    return IMPLEMENTATIONS[name](**json.loads(arguments))


@contextmanager
def agent(name: str, question: str) -> Iterator[Any]:
    """One agent run, the root of its trace. An exception marks it failed (the OITracer records it
    and sets the error status); otherwise it ends OK."""
    with tracer.start_as_current_span(name, openinference_span_kind="agent") as span:
        span.set_input(question)
        yield span
        span.set_status(Status(StatusCode.OK))


def ask(question: str, system: str = SUPPORT) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def chat_loop(model: str, messages: list[dict[str, Any]], *, stream: bool = False, max_steps: int = 8) -> str:
    """The usual tool loop on chat completions: call the model, run the tools it asks for, repeat
    until it answers. Streamed calls go through the client's stream helper."""
    for _ in range(max_steps):
        if stream:
            options = {"include_usage": True}
            with client.chat.completions.stream(
                model=model, messages=messages, tools=TOOLS, stream_options=options
            ) as events:
                message = events.get_final_completion().choices[0].message
        else:
            message = (
                client.chat.completions.create(model=model, messages=messages, tools=TOOLS).choices[0].message
            )
        if not message.tool_calls:
            return message.content or ""
        calls = [c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls]
        messages.append({"role": "assistant", "content": message.content, "tool_calls": calls})
        for call in message.tool_calls:
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": call_tool(call.function.name, call.function.arguments),
                }
            )
    raise RuntimeError("the agent did not finish")


# --- cases ---------------------------------------------------------------------------------------

with run.case("productive"), agent("support-agent", "Where is order 42?") as span:
    run.script(run.reply("ask", tool=("lookup_order", {"order_id": 42})), run.reply("answer"))
    span.set_output(chat_loop("gpt-4o-mini", ask("Where is order 42?")))

with run.case("streamed"), agent("support-agent", "Is the K-200 kettle in stock?") as span:
    run.script(run.reply("ask", tool=("check_stock", {"sku": "K-200"})), run.reply("answer"))
    span.set_output(chat_loop("gpt-4o-mini", ask("Is the K-200 kettle in stock?"), stream=True))

with run.case("streamed_plain"), agent("support-agent", "What are your opening hours?") as span:
    run.script(run.reply("answer"))
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ask("What are your opening hours?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    span.set_output("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

with run.case("responses"), agent("support-agent", "Where is order 43?") as span:
    # the Responses API's tool loop: the function call and its output go back as input items,
    # and the final answer is streamed
    run.script(run.reply("ask", tool=("lookup_order", {"order_id": 43})), run.reply("answer"))
    items: list[Any] = [{"role": "user", "content": "Where is order 43?"}]
    response = client.responses.create(
        model="gpt-4o-mini", instructions=SUPPORT, input=items, tools=RESPONSE_TOOLS
    )
    for item in response.output:
        if item.type == "function_call":
            items.append(item.model_dump(exclude_none=True))
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": call_tool(item.name, item.arguments),
                }
            )
    text = ""
    for event in client.responses.create(
        model="gpt-4o-mini", instructions=SUPPORT, input=items, tools=RESPONSE_TOOLS, stream=True
    ):
        if event.type == "response.completed":
            text = event.response.output_text
    span.set_output(text)

with run.case("retry_error"), agent("support-agent", "Can I change my delivery address?") as span:
    run.script(run.reply("fail", "retry", status=500), run.reply("ok"))
    for _attempt in range(3):  # the application's own retry loop; the client does not retry
        try:
            span.set_output(chat_loop("gpt-4o-mini", ask("Can I change my delivery address?")))
            break
        except openai.InternalServerError:
            time.sleep(0.05)

with run.case("retry_http"), agent("support-agent", "Do you ship to Norway?") as span:
    # the client's own retries, inside one create(): each attempt is an HTTP span under the call
    run.script(run.reply("rate-limited", "retry", status=429, retry_after=0.05), run.reply("ok"))
    retrying = client.with_options(max_retries=2)
    answer = retrying.chat.completions.create(model="gpt-4o-mini", messages=ask("Do you ship to Norway?"))
    span.set_output(answer.choices[0].message.content)

with run.case("retry_truncated"), agent("writer-agent", "Summarise the return policy in detail.") as span:
    summary = "The return policy: " + "items can be returned within 30 days. " * 8
    run.script(
        run.reply("cut", "retry", truncated=True, text="The return policy " * 60),
        run.reply("again", text=summary),
    )
    messages = ask("Summarise the return policy in detail.", "You write policy summaries for customers.")
    first = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=200)
    if first.choices[0].finish_reason == "length":
        first = client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=2000)
    span.set_output(first.choices[0].message.content)

with run.case("retry_truncated_responses"), agent("writer-agent", "Summarise the warranty terms.") as span:
    summary = "The warranty: " + "two years on parts and labour, one on batteries. " * 6
    run.script(
        run.reply("cut", "retry", truncated=True, text="The warranty " * 60), run.reply("again", text=summary)
    )
    request = {
        "model": "gpt-4o-mini",
        "instructions": "You write policy summaries for customers.",
        "input": "Summarise the warranty terms.",
    }
    result = client.responses.create(**request, max_output_tokens=64)
    if result.status == "incomplete":
        result = client.responses.create(**request, max_output_tokens=1024)
    span.set_output(result.output_text)

with run.case("duplicate"), agent("faq-agent", "How do I reset my password?") as span:
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    messages = ask("How do I reset my password?", "You answer questions about customer accounts.")
    client.chat.completions.create(model="gpt-4o", messages=messages)
    # the same request again (a second handler for the same message): its answer was already there
    span.set_output(
        client.chat.completions.create(model="gpt-4o", messages=messages).choices[0].message.content
    )

with run.case("responses_duplicate"), agent("faq-agent", "Which payment methods do you accept?") as span:
    # a bare string input and no instructions: the instrumentation numbers this input message 1, not 0
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    client.responses.create(model="gpt-4o-mini", input="Which payment methods do you accept?")
    span.set_output(
        client.responses.create(model="gpt-4o-mini", input="Which payment methods do you accept?").output_text
    )

with run.case("loop"), agent("support-agent", "Find the warranty terms for a blender.") as span:
    search = ("search_docs", {"query": "blender warranty"})
    thinking = [run.reply(f"think{i}", *(["loop"] if i else []), tool=search) for i in range(3)]
    run.script(*thinking, run.reply("give-up", text="I could not find the blender's warranty terms, sorry."))
    span.set_output(chat_loop("gpt-4o-mini", ask("Find the warranty terms for a blender.")))

with run.case("duplicate_tool"), agent("support-agent", "Is the K-100 kettle in stock?") as span:
    # the model asks for the same stock check twice in a row (streamed calls)
    stock = ("check_stock", {"sku": "K-100"})
    run.script(
        run.reply("ask", tool=stock), run.reply("ask-again", "duplicate", tool=stock), run.reply("answer")
    )
    span.set_output(chat_loop("gpt-4o-mini", ask("Is the K-100 kettle in stock?"), stream=True))

with run.case("failed_task"):
    run.script(
        run.reply("f1", "no_outcome", tool=("lookup_order", {"order_id": 7})), run.reply("f2", "no_outcome")
    )
    try:
        with agent("refund-agent", "Refund order 7."):
            chat_loop("gpt-4o-mini", ask("Refund order 7.", "You process refunds. Look the order up first."))
            raise RuntimeError("refund service unavailable")
    except RuntimeError:
        pass

with run.case("bloat"), agent("audit-agent", "Audit the last five orders.") as span:
    # every step adds a ~2,000-token tool result that stays in the context for good
    steps = [
        run.reply(f"step{i}", *(["context_bloat"] if i >= 2 else []), tool=("get_order", {"n": i}))
        for i in range(5)
    ]
    run.script(*steps, run.reply("report", "context_bloat", text="All five orders are fine."))
    span.set_output(
        chat_loop("gpt-4o-mini", ask("Audit the last five orders.", "You audit orders one at a time."))
    )


def catalogue(section: str) -> list[dict[str, Any]]:
    """A long, stable prompt prefix (~2,600 tokens); each case its own, so that no case reads
    another's cached prefix."""
    listing = f"Here is the {section} catalogue: " + f"{section} item, price, stock; " * 400
    return [
        {"role": "system", "content": "You answer questions about the shop's catalogue."},
        {"role": "user", "content": listing},
    ]


def turn(model: str, messages: list[dict[str, Any]]) -> str:
    return client.chat.completions.create(model=model, messages=messages).choices[0].message.content or ""


with run.case("cache_miss_model"), agent("catalogue-agent", "Which items are kitchen appliances?") as span:
    run.script(run.reply("big"), run.reply("switched", "cache_miss"))
    messages = [*catalogue("kitchen"), {"role": "user", "content": "Which items are kitchen appliances?"}]
    messages += [
        {"role": "assistant", "content": turn("gpt-4o", messages)},
        {"role": "user", "content": "And which are cheapest?"},
    ]
    span.set_output(turn("gpt-4o-mini", messages))  # another model cannot read the first one's cache

with run.case("cache_miss_gap"), agent("catalogue-agent", "List the garden tools.") as span:
    run.script(run.reply("before"), run.reply("after", "cache_miss"))
    messages = [*catalogue("garden"), {"role": "user", "content": "List the garden tools."}]
    messages += [{"role": "assistant", "content": turn("gpt-4o-mini", messages)}]
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    messages += [{"role": "user", "content": "And the hoses?"}]
    span.set_output(turn("gpt-4o-mini", messages))

with run.case("cache_miss_prefix"), agent("catalogue-agent", "What is in stock?") as span:
    run.script(run.reply("p1"), run.reply("p2", "cache_miss"))
    for i in range(2):  # a timestamp at the top of the system prompt changes the prefix every call
        stamp = {"role": "system", "content": f"Current time: 2026-11-30T10:0{i}:00Z"}
        user = {"role": "user", "content": "What is in stock?"}
        span.set_output(turn("gpt-4o-mini", [stamp, *catalogue("bathroom"), user]))

# one conversation over three agent runs (traces), tied by the session id: the second resumes the
# first while its prefix is still cached, the third after the cache expired
with run.case("conversation"), using_session("oi-conv-1"), using_attributes(user_id="customer-17"):
    run.script(run.reply("turn1"), run.reply("turn2"), run.reply("turn3", "cache_miss"))
    history = catalogue("toys")
    pauses = {"And something for a toddler?": CACHE_TTL + 0.5}
    for question in ("Recommend a puzzle.", "And a board game?", "And something for a toddler?"):
        time.sleep(pauses.get(question, 0.0))
        with agent("catalogue-agent", question) as span:
            history.append({"role": "user", "content": question})
            history.append({"role": "assistant", "content": turn("gpt-4o-mini", history)})
            span.set_output(history[-1]["content"])

CLASSIFY = "Classify the customer's message as billing, shipping or other. One word."

with run.case("oversized_evidence"), agent("triage-agent", "I was charged twice.") as span:
    run.script(run.reply("cheap", text="billing"))  # the cheaper model does this step fine
    span.set_output(turn("gpt-4o-mini", ask("I was charged twice.", CLASSIFY)))

with run.case("oversized"), agent("triage-agent", "My parcel is late.") as span:
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    span.set_output(turn("gpt-4.1", ask("My parcel is late.", CLASSIFY)))

with run.case("premium_no_evidence"), agent("escalation-agent", "Is it late?") as span:
    run.script(run.reply("premium-alone", text="yes"))  # no cheaper model was seen doing this step
    span.set_output(turn("gpt-4.1", ask("Is it late?", "Answer yes or no.")))

with run.case("premium_tool_choice"), agent("triage-agent", "Refund please.") as span:
    run.script(
        run.reply("premium-tool", tool=("lookup_order", {"order_id": 9}))
    )  # a short output that is a tool choice
    response = client.chat.completions.create(
        model="gpt-4.1", messages=ask("Refund please.", CLASSIFY), tools=TOOLS
    )
    span.set_output(response.choices[0].message.model_dump_json())

run.finish()
