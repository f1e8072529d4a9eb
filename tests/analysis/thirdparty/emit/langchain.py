"""LangChain and LangGraph (langchain-core 1.8, langchain-openai 1.7, langchain-anthropic 1.7,
langgraph 1.2) traced by OpenInference's LangChain instrumentor (0.1.80), the usual way LangChain
applications send OpenTelemetry traces. The instrumentor is a LangChain callback handler: every
runnable becomes a span, `openinference.span.kind` LLM, TOOL, PROMPT or CHAIN after LangChain's run
type, or AGENT whenever the runnable's name contains "agent" (so a `create_react_agent` graph named
"…_agent" is an AGENT root, and so is each step of its node named "agent"). The chat model's span is
the one with the usage (`llm.token_count.*`); every span carries LangChain's input and output as JSON
(`input.value`, `output.value`), which is where the provider's response id is. These spans never
become the current span, so nothing made by other instrumentations nests under them.

What an application writes: `create_react_agent` agents with `@tool` tools (a checkpointer and a
`thread_id` make a conversation of several traces, recorded as `session.id`), prompt | model chains,
`@chain` functions, `.with_retry()`, streaming, the Responses API. The cases: a productive agent on
each provider; retries (a 500 and a 529 retried by `.with_retry()`, replies cut at the output limit
then asked again); a repeated request; a tool loop and a single tool re-request; a run whose tool
raises; a growing context of large tool results; cache misses (model switch, expiry, a timestamp
ahead of the prompt, a conversation resumed after expiry, an Anthropic conversation after expiry);
a premium model doing a step a cheaper one was seen doing, and the premium negatives (no evidence, a
tool choice).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

# The anthropic client (2.x) traces its own API calls into the global tracer provider. LangChain's
# spans never become the current span, so each Anthropic request would be recorded a second time,
# alone in a trace of its own; those spans are the anthropic_native emitter's subject, not this one's.
os.environ["ANTHROPIC_OPEN_TELEMETRY"] = "false"

from langchain_anthropic import ChatAnthropic
from langchain_core.messages import SystemMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import chain
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent
from openinference.instrumentation import using_attributes
from openinference.instrumentation.langchain import LangChainInstrumentor

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

# The stand-in's default answer is longer than 16 tokens, so that only the short answers scripted
# below can be taken for a premium model doing a cheap model's job.
run = Run(
    "langchain",
    (
        "langchain-core",
        "langchain-openai",
        "langchain-anthropic",
        "langgraph",
        "openinference-instrumentation-langchain",
    ),
    reply="Here is what I found: the details are in the account notes, and nothing else needs your attention.",
)
LangChainInstrumentor().instrument(tracer_provider=run.provider)


def openai(model: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=f"{run.base_url}/v1", api_key="sk-test", **kw)


def anthropic(model: str, **kw: Any) -> ChatAnthropic:
    return ChatAnthropic(model=model, base_url=run.base_url, api_key="sk-ant-test", **kw)


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


SUPPORT = "You are a support assistant for an online shop. Answer briefly."
HISTORY = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result


@tool
def lookup_order(order_id: int) -> str:
    """Look up an order's status by its id."""
    return json.dumps({"order_id": order_id, "status": "shipped"})


@tool
def search_docs(query: str) -> str:
    """Search the product documentation."""
    return "No results."


@tool
def get_order_history(n: int) -> str:
    """The full history of the customer's n-th most recent order."""
    return f"Order {n}. {HISTORY}"


@tool
def issue_refund(order_id: int) -> str:
    """Refund an order in full."""
    raise RuntimeError("refund service unavailable")


@tool
def check_return_window(order_id: int) -> str:
    """Whether an order can still be returned."""
    return json.dumps({"order_id": order_id, "returnable": True, "days_left": 12})


@tool
def escalate(reason: str) -> str:
    """Hand the conversation to a human agent."""
    return "Escalated."


@tool
def route(queue: str) -> str:
    """Send the customer's message to a queue: billing, shipping or other."""
    return f"Routed to {queue}."


# --- cases ---------------------------------------------------------------------------------------

with run.case("productive"):
    agent = create_react_agent(openai("gpt-4o-mini"), [lookup_order], prompt=SUPPORT, name="support_agent")
    run.script(
        run.reply("ask", tool=("lookup_order", {"order_id": 42})),
        run.reply("answer", text="It ships tomorrow."),
    )
    agent.invoke(user("Where is order 42?"))

with run.case("productive_claude"):
    agent = create_react_agent(
        anthropic("claude-sonnet-4-5"), [check_return_window], prompt=SUPPORT, name="returns_agent"
    )
    run.script(run.reply("ask", tool=("check_return_window", {"order_id": 9})), run.reply("answer"))
    agent.invoke(user("Can I still return order 9?"))

# the client's own retries are off, so that LangChain's `.with_retry()` makes each attempt a model call
with run.case("retry_error"):
    prompt = ChatPromptTemplate.from_messages([("system", SUPPORT), ("human", "{question}")])
    answer = prompt | openai("gpt-4o-mini", max_retries=0).with_retry(stop_after_attempt=3)
    run.script(run.reply("fail", "retry", status=500), run.reply("ok"))
    answer.invoke({"question": "Can I change my delivery address?"})

with run.case("retry_overloaded"):
    prompt = ChatPromptTemplate.from_messages([("system", SUPPORT), ("human", "{question}")])
    answer = prompt | anthropic("claude-3-5-haiku-latest", max_retries=0).with_retry(stop_after_attempt=3)
    run.script(run.reply("overloaded", "retry", status=529), run.reply("ok"))
    answer.invoke({"question": "Do you ship to Norway?"})


@chain
def write_summary(topic: str) -> str:
    """Asks again with a larger output budget when the answer was cut off."""
    messages = [("system", SUPPORT), ("human", f"Summarise {topic} in detail.")]
    reply = openai("gpt-4o", max_tokens=200).invoke(messages)
    if reply.response_metadata.get("finish_reason") == "length":
        reply = openai("gpt-4o", max_tokens=2000).invoke(messages)
    return str(reply.content)


with run.case("retry_truncated"):
    run.script(run.reply("cut", "retry", truncated=True, text="The return policy " * 60), run.reply("again"))
    write_summary.invoke("the return policy")


@chain
def write_summary_claude(topic: str) -> str:
    messages = [("system", SUPPORT), ("human", f"Summarise {topic} in detail.")]
    reply = anthropic("claude-sonnet-4-5", max_tokens=200).invoke(messages)
    if reply.response_metadata.get("stop_reason") == "max_tokens":
        reply = anthropic("claude-sonnet-4-5", max_tokens=2000).invoke(messages)
    return str(reply.content)


with run.case("retry_truncated_claude"):
    run.script(
        run.reply("cut", "retry", truncated=True, text="Shipping works as follows " * 40), run.reply("again")
    )
    write_summary_claude.invoke("the shipping terms")

faq = ChatPromptTemplate.from_messages([("system", SUPPORT), ("human", "{question}")]) | openai("gpt-4o")


@chain
def answer_faq(question: str) -> str:
    preview = faq.invoke({"question": question})  # the first answer is only logged…
    logging.getLogger("faq").info("preview: %s", preview.content)
    return str(faq.invoke({"question": question}).content)  # …and the same request is made again


with run.case("duplicate"):
    run.script(run.reply("first"), run.reply("repeat", "duplicate"))
    answer_faq.invoke("What are your opening hours?")

with run.case("loop"):  # the model keeps asking for the same search, and gets the same result
    agent = create_react_agent(openai("gpt-4o-mini"), [search_docs], prompt=SUPPORT, name="research_agent")
    run.script(
        *(
            run.reply(
                f"think{i}", *(("loop",) if i else ()), tool=("search_docs", {"query": "blender warranty"})
            )
            for i in range(3)
        ),
        run.reply("give-up", text="I could not find it."),
    )
    agent.invoke(user("Find the warranty terms for a blender."))

with run.case("duplicate_tool"):  # the model asks once more for what it was just given
    agent = create_react_agent(openai("gpt-4o-mini"), [lookup_order], prompt=SUPPORT, name="orders_agent")
    run.script(
        run.reply("ask", tool=("lookup_order", {"order_id": 7})),
        run.reply("ask-again", "duplicate", tool=("lookup_order", {"order_id": 7})),
        run.reply("answer", text="Order 7 has shipped."),
    )
    agent.invoke(user("Has order 7 shipped?"))

with run.case("failed_run"):  # the refund tool raises: LangGraph's ToolNode re-raises it, the run fails
    agent = create_react_agent(
        openai("gpt-4o-mini"), [lookup_order, issue_refund], prompt=SUPPORT, name="refund_agent"
    )
    run.script(
        run.reply("look", "no_outcome", tool=("lookup_order", {"order_id": 7})),
        run.reply("refund", "no_outcome", tool=("issue_refund", {"order_id": 7})),
    )
    try:
        agent.invoke(user("Refund order 7."))
    except RuntimeError:
        pass

with run.case("bloat"):  # every step adds a ~2,000-token tool result that stays in the context for good
    agent = create_react_agent(openai("gpt-4o-mini"), [get_order_history], prompt=SUPPORT, name="audit_agent")
    run.script(
        *(
            run.reply(
                f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order_history", {"n": i})
            )
            for i in range(5)
        ),
        run.reply("report", "context_bloat", text="All five orders are fine."),
    )
    agent.invoke(user("Audit my last five orders."))

with run.case("streamed"):
    # langchain-openai asks for a stream's usage by itself only when talking to api.openai.com
    model = openai("gpt-4o", stream_usage=True)
    stream = ChatPromptTemplate.from_messages([("system", SUPPORT), ("human", "{question}")]) | model
    streamed = run.reply("chat-stream")
    # LangChain drops a streamed chat completion's id: only the answer's text can name the request
    streamed.text = (
        f"Returns are free within 30 days of delivery; the label is in your account (ref {streamed.label})."
    )
    run.script(streamed)
    text = "".join(str(chunk.content) for chunk in stream.stream({"question": "Are returns free?"}))

with run.case("responses_api"):
    model = openai("gpt-4o", use_responses_api=True)
    run.script(run.reply("responses-stream"))
    text = "".join(
        str(c.content) for c in model.stream([("system", SUPPORT), ("human", "Is gift wrapping available?")])
    )


# Each case's prompt opens differently, so that no case reads another one's cache.
def catalogue(shop: str) -> str:
    return f"You answer questions about the {shop} catalogue: " + "blender, kettle, toaster; " * 400


@chain
def compare_models(question: str) -> str:
    messages: list[tuple[str, str]] = [("system", catalogue("kitchen shop")), ("human", question)]
    answer = openai("gpt-4o").invoke(messages)
    messages += [("ai", str(answer.content)), ("human", "And which are cheapest?")]
    switched = openai("gpt-4o-mini")  # another model cannot read the first one's cache
    return str(switched.invoke(messages).content)


with run.case("cache_miss_model"):
    run.script(run.reply("big"), run.reply("switched", "cache_miss"))
    compare_models.invoke("Which items are kitchen appliances?")


@chain
def slow_follow_up(question: str) -> str:
    model = openai("gpt-4o-mini")
    messages: list[tuple[str, str]] = [("system", catalogue("home store")), ("human", question)]
    answer = model.invoke(messages)
    time.sleep(CACHE_TTL + 0.5)  # past the cache's lifetime
    messages += [("ai", str(answer.content)), ("human", "And the kettles?")]
    return str(model.invoke(messages).content)


with run.case("cache_miss_gap"):
    run.script(run.reply("before"), run.reply("after", "cache_miss"))
    slow_follow_up.invoke("List the toasters.")

stamped = ChatPromptTemplate.from_messages(
    [
        ("system", "Current time: {now}"),
        ("system", catalogue("outlet")),
        ("human", "{question}"),
    ]
) | openai("gpt-4o-mini")


@chain
def stock_report(questions: list[str]) -> list[str]:
    # a timestamp ahead of the catalogue changes the prompt's prefix at every call
    return [
        str(stamped.invoke({"now": datetime.now(UTC).isoformat(), "question": q}).content) for q in questions
    ]


with run.case("cache_miss_prefix"):
    run.script(run.reply("p1"), run.reply("p2", "cache_miss"))
    stock_report.invoke(["What is in stock?", "What is on sale?"])

# a conversation of three traces (one per turn, the LangGraph checkpointer keeps the history): the
# second turn reads the first one's cache, the third comes after the cache expired
with run.case("conversation"):
    agent = create_react_agent(
        openai("gpt-4o-mini"),
        [lookup_order],
        prompt=catalogue("garden centre"),
        checkpointer=InMemorySaver(),
        name="catalogue_agent",
    )
    thread = {"configurable": {"thread_id": "catalogue-chat-1"}}
    run.script(run.reply("turn1"), run.reply("turn2"), run.reply("turn3", "cache_miss"))
    with using_attributes(user_id="customer-17"):
        agent.invoke(user("Recommend a kettle."), thread)
        agent.invoke(user("And a toaster?"), thread)
        time.sleep(CACHE_TTL + 0.5)
        agent.invoke(user("And a blender?"), thread)


@chain
def claude_follow_ups(question: str) -> str:
    model = anthropic("claude-3-5-haiku-latest")
    # Anthropic caches a prefix only up to a block marked for caching
    system = SystemMessage(
        [{"type": "text", "text": catalogue("hardware store"), "cache_control": {"type": "ephemeral"}}]
    )
    messages: list[Any] = [system, ("human", question)]
    for follow_up, pause in (("And the cheapest?", 0.0), ("And the most popular?", CACHE_TTL + 0.5)):
        answer = model.invoke(messages)
        messages += [("ai", str(answer.content)), ("human", follow_up)]
        time.sleep(pause)  # the second answer reads the first one's cache, the third comes too late
    return str(model.invoke(messages).content)


with run.case("cache_miss_gap_claude"):
    run.script(run.reply("first"), run.reply("cached"), run.reply("late", "cache_miss"))
    claude_follow_ups.invoke("Which drills do you have?")

CLASSIFY = "Classify the customer's message as billing, shipping or other. Answer with one word."

with run.case("oversized_evidence"):  # the cheaper model does this agent's step fine
    agent = create_react_agent(openai("gpt-4o-mini"), [escalate], prompt=CLASSIFY, name="triage_agent")
    run.script(run.reply("cheap", text="billing"))
    agent.invoke(user("I was charged twice."))

with run.case("oversized"):
    agent = create_react_agent(openai("gpt-4.1"), [escalate], prompt=CLASSIFY, name="triage_agent")
    run.script(run.reply("premium", "oversized_model", text="shipping"))
    agent.invoke(user("My parcel is late."))

with run.case("premium_no_evidence"):  # no cheaper model was seen doing this step
    agent = create_react_agent(openai("gpt-4.1"), [escalate], prompt="Answer yes or no.", name="policy_agent")
    run.script(run.reply("premium-alone", text="yes"))
    agent.invoke(user("Can I pay by invoice?"))

with run.case("premium_tool_choice"):  # a short output that is a tool choice
    router = ChatPromptTemplate.from_messages([("system", CLASSIFY), ("human", "{message}")]) | openai(
        "gpt-4.1"
    ).bind_tools([route], tool_choice="route")
    run.script(run.reply("premium-tool", tool=("route", {"queue": "billing"})))
    router.invoke({"message": "Refund please."})

run.finish()
