"""Traceloop's OpenLLMetry instrumentations (`opentelemetry-instrumentation-openai`, `-anthropic` and
`-langchain` 0.62.x), each given the corpus's tracer provider, with content capture at its default
(on, `TRACELOOP_TRACE_CONTENT`).

What users get from these versions by default:
- openai: one `openai.chat` CLIENT span per request, current while the request runs; the current
  GenAI names (`gen_ai.provider.name`, `gen_ai.usage.input_tokens`, `gen_ai.usage.cache_read.input_tokens`)
  and the messages as `gen_ai.input.messages` / `gen_ai.output.messages` JSON (the older
  `gen_ai.prompt.N.*` attributes are gone; `use_attributes=False` switches to log events instead).
- anthropic: one `anthropic.chat` CLIENT span per request, never made current. anthropic 2.x also
  traces its own calls (`anthropic.messages.create`, on by default, to the global provider), so every
  Anthropic request has two spans that both carry the usage.
- langchain/langgraph: `invoke_agent <graph>` around a graph run, `<name>.workflow` (traceloop.span.kind
  workflow), `execute_task <node>` (task), `execute_tool <tool>` (tool), and `<ChatModel>.chat` with the
  usage. Inside a chat model run the openai/anthropic instrumentors are suppressed, but the anthropic
  SDK's own span is not.

Cases: raw openai (tool step, a loop seen only in the model output, streamed, app-level retry after a
500, retry after a cut reply, HTTP-level retry seen by the httpx instrumentation, duplicate request),
raw anthropic (prompt caching with a cache write then a streamed read, retry after 529, retry after
max_tokens), cache misses (model switch, gap, prefix change; anthropic gap; a LangGraph conversation
resumed after the cache expired) and a cache hit, LangGraph agents with tools (productive, loop,
duplicate tool re-request, bloat, failed run, an Anthropic chat model), and the oversized-model cases
with their negatives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# read when the httpx transport is instrumented: lets each HTTP attempt span show which request it was
os.environ.setdefault("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", "x-request-id,request-id")

import anthropic
import openai
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent
from opentelemetry import trace
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.langchain import LangchainInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

# a default answer longer than 16 tokens: only the oversized cases below answer premium calls briefly
run = Run(
    "openllmetry",
    (
        "opentelemetry-instrumentation-openai",
        "opentelemetry-instrumentation-anthropic",
        "opentelemetry-instrumentation-langchain",
        "opentelemetry-instrumentation-httpx",
        "openai",
        "anthropic",
        "langchain-core",
        "langchain-openai",
        "langchain-anthropic",
        "langgraph",
    ),
    reply="Here is the complete answer to your question, with every detail you asked for and nothing more.",
)
OpenAIInstrumentor().instrument(tracer_provider=run.provider)
AnthropicInstrumentor().instrument(tracer_provider=run.provider)
LangchainInstrumentor().instrument(tracer_provider=run.provider)

tracer = trace.get_tracer("support-app")
oai = openai.OpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)
claude = anthropic.Anthropic(base_url=run.base_url, api_key="sk-ant-test", max_retries=0)

SYSTEM = {"role": "system", "content": "You are a support assistant for an online shop. Answer briefly."}
DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result


@contextmanager
def task(name: str) -> Iterator[Any]:
    """The application's own root span for one task (an exception marks it failed)."""
    with tracer.start_as_current_span(name) as span:
        yield span


def chat(model: str, messages: list[dict[str, Any]], client: openai.OpenAI = oai, **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=messages, **kw)  # type: ignore[arg-type]


def ask(question: str, system: dict[str, Any] = SYSTEM) -> list[dict[str, Any]]:
    return [system, {"role": "user", "content": question}]


def tool_turn(messages: list[dict[str, Any]], response: Any, result: str) -> None:
    """Append the model's tool call and the application's result for it to the conversation."""
    call = response.choices[0].message.tool_calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


def tokens(value: Any) -> int:
    """The stand-in's count for a JSON-encoded value (about four characters a token)."""
    return max(1, (len(json.dumps(value, sort_keys=True)) + 3) // 4)


# --- raw openai ----------------------------------------------------------------------------------

with run.case("productive"), task("answer-question"):
    messages = ask("Where is order 42?")
    run.script(
        run.reply("ask", tool=("lookup_order", {"order_id": 42})),
        run.reply("answer", text="It ships tomorrow."),
    )
    tool_turn(messages, chat("gpt-4o-mini", messages), '{"status": "shipped"}')
    chat("gpt-4o-mini", messages)

with run.case("loop_raw"), task("research"):
    # no tool spans here: the repeated tool calls are only in the captured model output
    messages = ask("Find the warranty terms for a toaster.")
    run.script(
        *(
            run.reply(
                f"think{i}", *(("loop",) if i else ()), tool=("search_kb", {"query": "toaster warranty"})
            )
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    for _ in range(3):
        tool_turn(messages, chat("gpt-4o-mini", messages), "No results.")
    chat("gpt-4o-mini", messages)

with run.case("streamed"), task("answer-question"):
    run.script(run.reply("stream"))
    # without include_usage the API sends no usage at all, and the span has none
    stream = chat(
        "gpt-4o-mini", ask("How do I reset my password?"), stream=True, stream_options={"include_usage": True}
    )
    answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

with run.case("retry_error"), task("answer-question"):
    messages = ask("Can I change my delivery address?")
    run.script(run.reply("fail", "retry", status=500), run.reply("ok"))
    for _attempt in range(3):  # the application's own retry loop (the client's is off)
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

# the client retries by itself; the httpx instrumentation shows each HTTP attempt under the model call
http_client = openai.DefaultHttpxClient()
HTTPX2ClientInstrumentor.instrument_client(http_client, tracer_provider=run.provider)
retrying = openai.OpenAI(
    base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=2, http_client=http_client
)

with run.case("retry_http"), task("answer-question"):
    run.script(run.reply("attempt", "retry", status=503, retry_after=0.05), run.reply("served"))
    chat("gpt-4o-mini", ask("Do you ship to Norway?"), client=retrying)

with run.case("duplicate"), task("answer-question"):
    messages = ask("What are your opening hours?")
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    chat("gpt-4o", messages)
    chat("gpt-4o", messages)  # the same request again: its answer was already there

# --- raw anthropic -------------------------------------------------------------------------------

POLICY = [
    {
        "type": "text",
        "cache_control": {"type": "ephemeral"},
        "text": "You handle warranty claims. The full warranty policy follows. " + "Clause: covered. " * 520,
    }
]


def claims_question(question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


with run.case("anthropic_cache"), task("warranty-claim"):
    first = claims_question("Is a cracked kettle lid covered?")
    total = tokens([POLICY, first])
    # the first request writes the policy to the cache (the stand-in reports no writes of its own)
    written = tokens(POLICY) // 128 * 128
    run.script(
        run.reply(
            "write",
            usage={
                "input_tokens": total - written,
                "output_tokens": 25,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": written,
            },
        ),
        run.reply("read"),
    )
    claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=512, system=POLICY, messages=first)
    with claude.messages.stream(
        model="claude-3-5-haiku-latest",
        max_tokens=512,
        system=POLICY,
        messages=claims_question("And a scratched toaster?"),
    ) as stream:
        answer = "".join(stream.text_stream)

with run.case("anthropic_retry_overloaded"), task("warranty-claim"):
    messages = claims_question("Is a broken blender jug covered?")
    run.script(run.reply("overloaded", "retry", status=529), run.reply("served"))
    for _attempt in range(3):
        try:
            claude.messages.create(
                model="claude-3-5-haiku-latest", max_tokens=512, system=POLICY, messages=messages
            )
            break
        except anthropic.InternalServerError:  # 529 overloaded
            time.sleep(0.05)

with run.case("anthropic_retry_truncated"), task("warranty-claim"):
    messages = claims_question("Explain the warranty exclusions in detail.")
    run.script(run.reply("cut", "retry", truncated=True, text="The exclusions are " * 40), run.reply("again"))
    reply = claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=messages)
    if reply.stop_reason == "max_tokens":
        claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=2048, messages=messages)

with run.case("anthropic_cache_gap"), task("warranty-claim"):
    run.script(run.reply("before"), run.reply("after", "cache_miss"))
    claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=512,
        system=POLICY,
        messages=claims_question("Is a dented pan covered?"),
    )
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=512,
        system=POLICY,
        messages=claims_question("Is a chipped mug covered?"),
    )

# --- cache misses on openai ----------------------------------------------------------------------

SHOP = {"role": "system", "content": "You answer questions about the shop's catalogue."}
LONG = [SHOP, {"role": "user", "content": "Here is the catalogue: " + "blender, kettle, toaster; " * 400}]

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
    time.sleep(CACHE_TTL + 0.5)
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the kettles?"}]
    chat("gpt-4o-mini", messages)

with run.case("cache_hit"), task("catalogue-qa"):  # a growing conversation read from the cache: no miss
    run.script(run.reply("h1"), run.reply("h2"))
    messages = [*LONG, {"role": "user", "content": "Which kettle is the quietest?"}]
    answer = chat("gpt-4o-mini", messages).choices[0].message.content
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the fastest?"}]
    chat("gpt-4o-mini", messages)

with run.case("cache_miss_prefix"), task("catalogue-qa"):
    run.script(run.reply("p1"), run.reply("p2", "cache_miss"))
    for i in range(2):  # a timestamp at the top of the system prompt changes the prefix every call
        stamp = {"role": "system", "content": f"Current time: 2026-11-30T10:0{i}:00Z"}
        chat("gpt-4o-mini", [stamp, *LONG, {"role": "user", "content": "What is in stock?"}])

# --- oversized model -----------------------------------------------------------------------------

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
    chat(
        "gpt-4.1",
        [CLASSIFY, {"role": "user", "content": "Refund please."}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "route",
                    "parameters": {"type": "object", "properties": {"to": {"type": "string"}}},
                },
            }
        ],
    )

SORT = "Sort the claim into: repair, replace or reject. One word."

with run.case("anthropic_oversized_evidence"), task("sort-claim"):
    run.script(run.reply("cheap", text="repair"))
    claude.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=16,
        system=SORT,
        messages=claims_question("The kettle lid is cracked."),
    )

with run.case("anthropic_oversized"), task("sort-claim"):
    run.script(run.reply("premium", "oversized_model", text="replace"))
    claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=16,
        system=SORT,
        messages=claims_question("The toaster does not heat at all."),
    )

# --- LangGraph agents (the LangChain instrumentor) -----------------------------------------------


@tool
def lookup_order(order_id: int) -> str:
    """Look up the status of an order."""
    return json.dumps({"order": order_id, "status": "shipped"})


@tool
def search_kb(query: str) -> str:
    """Search the help-centre articles."""
    return "No results."


@tool
def get_order(n: int) -> str:
    """Fetch the full record of one of the customer's last orders (0 is the newest)."""
    return f"Order {n}. {DOC}"


@tool
def refund_order(order_id: int) -> str:
    """Refund an order."""
    raise RuntimeError("refund service unavailable")


def chat_model(model: str = "gpt-4o-mini") -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)


support = create_react_agent(
    chat_model(),
    [lookup_order, search_kb, get_order, refund_order],
    prompt="You are the shop's support agent. Use the tools.",
    name="support-agent",
)


def support_run(question: str) -> Any:
    return support.invoke({"messages": [{"role": "user", "content": question}]})


with run.case("agent_productive"):
    run.script(
        run.reply("ask", tool=("lookup_order", {"order_id": 42})), run.reply("answer", text="It shipped.")
    )
    support_run("Where is order 42?")

with run.case("agent_loop"):
    # the model asks for the same search three times, gets the same answer, then gives up
    run.script(
        *(
            run.reply(
                f"think{i}", *(("loop",) if i else ()), tool=("search_kb", {"query": "blender warranty"})
            )
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    support_run("Find the warranty terms for a blender.")

with run.case("agent_duplicate"):
    # one re-request of the same search with the same arguments
    run.script(
        run.reply("think0", tool=("search_kb", {"query": "kettle descaling"})),
        run.reply("think1", "duplicate", tool=("search_kb", {"query": "kettle descaling"})),
        run.reply("answer", text="Descale it with vinegar."),
    )
    support_run("How do I descale my kettle?")

with run.case("agent_bloat"):
    # every step adds a ~2,000-token tool result that stays in the conversation for good
    run.script(
        *(
            run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    support_run("Audit my last five orders.")

with run.case("agent_failed"):
    run.script(
        run.reply("f1", "no_outcome", tool=("lookup_order", {"order_id": 7})),
        run.reply("f2", "no_outcome", tool=("refund_order", {"order_id": 7})),
    )
    try:
        support_run("Refund order 7.")  # the refund tool raises, and so does the agent run
    except RuntimeError:
        pass

claims = create_react_agent(
    ChatAnthropic(
        model="claude-3-5-haiku-latest", base_url=run.base_url, api_key="sk-ant-test", max_retries=0
    ),
    [lookup_order],
    prompt="You are the shop's claims agent. Use the tools.",
    name="claims-agent",
)

with run.case("agent_anthropic"):
    run.script(
        run.reply("ask", tool=("lookup_order", {"order_id": 9})),
        run.reply("answer", text="It was delivered."),
    )
    claims.invoke({"messages": [{"role": "user", "content": "Was order 9 delivered?"}]})

# a conversation of two agent runs (traces) on one LangGraph thread: the second resumes the first
# after the cache expired, so it re-sends the catalogue uncached
CATALOGUE = (
    "You answer questions about the shop's catalogue. The catalogue: " + "blender, kettle, toaster; " * 400
)
assistant = create_react_agent(
    chat_model(), [lookup_order], prompt=CATALOGUE, checkpointer=InMemorySaver(), name="catalogue-agent"
)

with run.case("conversation_gap"):
    run.script(run.reply("turn1"), run.reply("turn2", "cache_miss"))
    thread = {"configurable": {"thread_id": "oll-conv-1"}}
    assistant.invoke({"messages": [{"role": "user", "content": "Recommend a kettle."}]}, thread)
    time.sleep(CACHE_TTL + 0.5)
    assistant.invoke({"messages": [{"role": "user", "content": "And a toaster?"}]}, thread)

run.finish()
