"""The OpenAI Agents SDK (`openai-agents` 0.24) traced into OpenTelemetry by the contrib bridge
`opentelemetry-instrumentation-openai-agents-v2` 0.1.0, with HTTP attempts from the contrib httpx
instrumentation (`HTTPX2ClientInstrumentor`: openai 3.x sends through `httpx2`).

The bridge is a tracing processor of the SDK: every SDK trace becomes a root span named after the
workflow (`gen_ai.operation.name` invoke_agent, SERVER), under it a task span and per agent an
`invoke_agent <name>` span, per turn a turn span, per model request a `chat <model>` span (the
Responses model's `ResponseSpanData`, or `GenerationSpanData` for `OpenAIChatCompletionsModel`),
per tool an `execute_tool <name>` span, plus handoff and guardrail spans. The SDK's own export to
OpenAI is removed, so the bridge is the only processor.

What the bridge cannot record:
- no cached-input-token attribute at all: cache misses cannot be told from hits, so the cache
  cases below (model switch by handoff, a slow tool past the cache's lifetime, a timestamp in the
  instructions, a `group_id` conversation resumed after a gap) are negatives;
- no finish reason and no response status on the Responses path; a reply cut at the output limit
  makes the SDK raise, and its span keeps neither its usage, nor its model, nor its response id
  (the truncated case's label cannot be found on any span);
- Chat Completions spans carry no response id, so the one Chat Completions case is productive;
- the root span always ends OK (a failed run shows only on its `invoke_agent` span), and the
  trace's `group_id` is not recorded.

Cases: productive (tool, LLM input guardrail, streamed, Chat Completions, handoff), retries
(a 500 retried by the runner's retry policy, a 429 retried by the client, a truncated reply
retried by the runner), duplicate (same question twice in a trace, one tool re-request), loop,
failed runs (model error with retries off, a tool that raises, max turns exceeded), context
bloat, cache negatives, oversized model with evidence and its negatives.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

# HTTP attempts must name the request they answered (the stand-in writes the label there)
os.environ["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"] = "x-request-id,request-id"

import agents
from agents import (
    Agent,
    GuardrailFunctionOutput,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelRetrySettings,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    RunContextWrapper,
    Runner,
    UserError,
    function_tool,
    input_guardrail,
    retry_policies,
    set_default_openai_client,
    trace,
)
from agents.retry import RetryPolicyContext
from openai import AsyncOpenAI, InternalServerError
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from pydantic import BaseModel

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

run = Run(
    "openai_agents",
    (
        "openai-agents",
        "opentelemetry-instrumentation-openai-agents-v2",
        "openai",
        "opentelemetry-instrumentation-httpx",
    ),
)

# The bridge appends itself to the SDK's processors: clear them first, so nothing is exported to
# OpenAI's trace ingestion (OPENAI_API_KEY is set in the environment).
agents.set_trace_processors([])
OpenAIAgentsInstrumentor().instrument(tracer_provider=run.provider, capture_message_content=True)
HTTPX2ClientInstrumentor().instrument(tracer_provider=run.provider)

client = AsyncOpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)
set_default_openai_client(client, use_for_tracing=False)
# the client's own retries (the openai default), for the throttling case only
retrying_client = AsyncOpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=2)

DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result
CATALOGUE = "Here is the catalogue: " + "blender, kettle, toaster; " * 400  # ~2,600 tokens
CLASSIFY = "Classify the customer's message as billing, shipping or other. Answer with one word."


# --- tools ---------------------------------------------------------------------------------------


@function_tool
def lookup_order(order_id: int) -> str:
    """Look up an order's status by its number."""
    return json.dumps({"order_id": order_id, "status": "shipped", "eta": "tomorrow"})


@function_tool
def search(query: str) -> str:
    """Search the help centre."""
    return "No results."


@function_tool
def search_page(query: str, page: int) -> str:
    """Search the catalogue, one page of results at a time."""
    return f"Page {page}: nothing matching {query!r}."


@function_tool
def check_stock(sku: str) -> str:
    """Units in stock for a product."""
    return json.dumps({"sku": sku, "units": 3})


@function_tool
def get_order(n: int) -> str:
    """The full record of one of the customer's recent orders (0 = latest)."""
    return f"Order {n}. {DOC}"


@function_tool(failure_error_function=None)  # the refund must not be papered over: let it raise
def issue_refund(order_id: int) -> str:
    """Refund an order."""
    raise RuntimeError("refund service unavailable")


@function_tool
async def fetch_inventory(warehouse: str) -> str:
    """Current inventory of a warehouse (a slow back-office call)."""
    await asyncio.sleep(CACHE_TTL + 0.5)  # longer than the prompt cache lives
    return f"{warehouse}: 12 kettles, 4 toasters."


@function_tool
def route_ticket(queue: str) -> str:
    """Send the ticket to a queue."""
    return f"routed to {queue}"


class TopicCheck(BaseModel):
    on_topic: bool
    reason: str


topic_checker = Agent(
    name="Topic check",
    model="gpt-4o-mini",
    output_type=TopicCheck,
    instructions="Decide whether the message is about the shop's orders.",
)


@input_guardrail(run_in_parallel=False)
async def on_topic(ctx: RunContextWrapper[None], agent: Agent[Any], message: Any) -> GuardrailFunctionOutput:
    result = await Runner.run(topic_checker, message, context=ctx.context)
    return GuardrailFunctionOutput(
        output_info=result.final_output, tripwire_triggered=not result.final_output.on_topic
    )


def retry_cut_off(context: RetryPolicyContext) -> bool:
    """Ask again when a reply stopped at the output limit (the SDK raises on an incomplete response)."""
    return isinstance(context.error, ModelBehaviorError) and "incomplete" in str(context.error)


def stamped(ctx: RunContextWrapper[None], agent: Agent[Any]) -> str:
    return f"Current time: {datetime.now(UTC).isoformat()}. You answer questions about the catalogue."


def config(workflow: str, **kw: Any) -> RunConfig:
    return RunConfig(workflow_name=workflow, **kw)


# --- cases ---------------------------------------------------------------------------------------


async def productive() -> None:
    support = Agent(
        name="Order support",
        model="gpt-4o-mini",
        tools=[lookup_order],
        input_guardrails=[on_topic],
        instructions="You help customers with their orders. Answer briefly.",
    )
    with run.case("productive"):
        run.script(
            run.reply("guard", text='{"on_topic": true, "reason": "asks about an order"}'),
            run.reply("ask", tool=("lookup_order", {"order_id": 42})),
            run.reply("answer", text="Order 42 has shipped and arrives tomorrow."),
        )
        await Runner.run(support, "Where is order 42?", run_config=config("Order support"))

    locator = Agent(
        name="Store locator",
        model="gpt-4o-mini",
        tools=[check_stock],
        instructions="You tell customers where a product is in stock.",
    )
    with run.case("productive_streamed"):
        run.script(
            run.reply("ask", tool=("check_stock", {"sku": "KET-1"})),
            run.reply("answer", text="Three kettles are in stock at the city store."),
        )
        streamed = Runner.run_streamed(
            locator, "Is the KET-1 kettle in stock?", run_config=config("Store locator")
        )
        async for _event in streamed.stream_events():
            pass

    # Chat Completions spans record no response id: these requests cannot be identified by the
    # test, so this case is kept productive (any finding on it shows as an unlabelled span)
    chat_agent = Agent(
        name="Order support (chat completions)",
        tools=[lookup_order],
        model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client),
        instructions="You help customers with their orders. Answer briefly.",
    )
    with run.case("productive_chat_completions"):
        run.script(
            run.reply("ask", tool=("lookup_order", {"order_id": 7})),
            run.reply("answer", text="Order 7 has shipped and arrives tomorrow."),
        )
        await Runner.run(
            chat_agent, "Where is order 7?", run_config=config("Order support (chat completions)")
        )


async def retries() -> None:
    # the SDK does not retry by default; its runner retries when the model settings ask for it
    settings = ModelSettings(
        retry=ModelRetrySettings(
            max_retries=2,
            backoff={"initial_delay": 0.05, "jitter": False},
            policy=retry_policies.any(
                retry_policies.provider_suggested(), retry_policies.http_status([429, 500, 503])
            ),
        )
    )
    helper = Agent(
        name="Address helper",
        model="gpt-4o-mini",
        model_settings=settings,
        instructions="You help customers change their delivery address.",
    )
    with run.case("retry_runner"):
        run.script(
            run.reply("fail", "retry", status=500),
            run.reply("ok", text="Yes, until the order ships: use the Change address link."),
        )
        await Runner.run(helper, "Can I change my delivery address?", run_config=config("Address helper"))

    # a 429 retried inside the openai client: one model span, two HTTP attempts under it
    shipping = Agent(
        name="Shipping helper",
        model=OpenAIResponsesModel("gpt-4o-mini", openai_client=retrying_client),
        instructions="You answer questions about shipping.",
    )
    with run.case("retry_http_429"):
        run.script(
            run.reply("throttled", "retry", status=429, retry_after=0.05),
            run.reply("ok", text="Standard shipping takes three to five days."),
        )
        await Runner.run(shipping, "How long does shipping take?", run_config=config("Shipping helper"))

    writer = Agent(
        name="Policy writer",
        model="gpt-4o",
        model_settings=ModelSettings(
            max_tokens=200, retry=ModelRetrySettings(max_retries=1, policy=retry_cut_off)
        ),
        instructions="You write summaries of the shop's policies.",
    )
    with run.case("retry_truncated"):
        # The SDK raises on the incomplete answer and the bridge records the failed call without its
        # usage: billed, but the trace cannot say by how much.
        run.script(
            run.reply("cut", "retry", truncated=True, text="The return policy " * 60, usage_lost=True),
            run.reply("again", text="Items can be returned within 30 days with the receipt, free of charge."),
        )
        await Runner.run(writer, "Summarise the return policy.", run_config=config("Policy writer"))


async def repeats() -> None:
    faq = Agent(
        name="Opening hours", model="gpt-4o-mini", instructions="You answer questions about the shop."
    )
    with run.case("duplicate"), trace("Opening hours page"):
        run.script(
            run.reply("first", text="We open at 9am and close at 6pm."),
            run.reply("repeat", "duplicate", text="We open at 9am and close at 6pm."),
        )
        # the page asks again on reload: the same request, whose answer was already there
        for _ in range(2):
            await Runner.run(faq, "What are your opening hours?")

    stock = Agent(
        name="Stock checker",
        model="gpt-4o-mini",
        tools=[check_stock],
        instructions="You check whether products are in stock.",
    )
    with run.case("duplicate_tool"):
        run.script(
            run.reply("ask", tool=("check_stock", {"sku": "TOA-2"})),
            run.reply("ask-again", "duplicate", tool=("check_stock", {"sku": "TOA-2"})),
            run.reply("answer", text="Yes, three toasters are in stock."),
        )
        await Runner.run(stock, "Is the TOA-2 toaster in stock?", run_config=config("Stock checker"))

    researcher = Agent(
        name="Warranty researcher",
        model="gpt-4o-mini",
        tools=[search],
        instructions="You find warranty terms in the help centre.",
    )
    with run.case("loop"):
        run.script(
            *(
                run.reply(
                    f"think{i}", *(("loop",) if i else ()), tool=("search", {"query": "blender warranty"})
                )
                for i in range(3)
            ),
            run.reply("give-up", text="I could not find the warranty terms."),
        )
        await Runner.run(
            researcher, "Find the warranty terms for a blender.", run_config=config("Warranty researcher")
        )


async def failures() -> None:
    # no retry settings and a client that does not retry: the model error ends the run
    returns = Agent(
        name="Returns desk", model="gpt-4o-mini", tools=[lookup_order], instructions="You handle returns."
    )
    with run.case("failed_model_error"):
        run.script(
            run.reply("r1", "no_outcome", tool=("lookup_order", {"order_id": 9})),
            run.reply("r2", "no_outcome", status=500),
        )
        try:
            await Runner.run(returns, "I want to return order 9.", run_config=config("Returns desk"))
        except InternalServerError:
            pass

    refunds = Agent(
        name="Refund desk",
        model="gpt-4o-mini",
        tools=[lookup_order, issue_refund],
        instructions="You refund orders.",
    )
    with run.case("failed_tool"):
        run.script(
            run.reply("f1", "no_outcome", tool=("lookup_order", {"order_id": 7})),
            run.reply("f2", "no_outcome", tool=("issue_refund", {"order_id": 7})),
        )
        try:
            await Runner.run(refunds, "Refund order 7.", run_config=config("Refund desk"))
        except UserError:  # the SDK wraps the tool's exception
            pass

    browser = Agent(
        name="Catalogue search",
        model="gpt-4o-mini",
        tools=[search_page],
        instructions="You search the catalogue for the customer.",
    )
    with run.case("failed_max_turns"):
        run.script(
            *(
                run.reply(f"page{p}", "no_outcome", tool=("search_page", {"query": "blue kettle", "page": p}))
                for p in (1, 2, 3)
            )
        )
        try:
            await Runner.run(
                browser, "Find me a blue kettle.", max_turns=3, run_config=config("Catalogue search")
            )
        except MaxTurnsExceeded:
            pass


async def bloat() -> None:
    auditor = Agent(
        name="Order auditor",
        model="gpt-4o-mini",
        tools=[get_order],
        instructions="You audit the customer's recent orders.",
    )
    with run.case("bloat"):
        # every step adds a ~2,000-token tool result that stays in the conversation for good
        run.script(
            *(
                run.reply(f"step{i}", *(("context_bloat",) if i >= 2 else ()), tool=("get_order", {"n": i}))
                for i in range(5)
            ),
            run.reply("report", "context_bloat", text="All five orders are fine."),
        )
        await Runner.run(
            auditor, "Audit my last five orders.", max_turns=10, run_config=config("Order auditor")
        )


async def cache_negatives() -> None:
    # no cached-token attribute: none of these can be charged as a cache miss
    expert = Agent(name="Catalogue expert", model="gpt-4o-mini", instructions="You know the catalogue well.")
    front = Agent(
        name="Front desk",
        model="gpt-4o",
        handoffs=[expert],
        instructions="You route customers to the right expert.",
    )
    with run.case("cache_miss_model"):
        run.script(
            run.reply("route", tool=("transfer_to_catalogue_expert", {})),
            run.reply("answer", text="The blenders, kettles and toasters are all kitchen appliances."),
        )
        await Runner.run(
            front, f"{CATALOGUE}\nWhich items are kitchen appliances?", run_config=config("Front desk")
        )

    stockroom = Agent(
        name="Stockroom",
        model="gpt-4o-mini",
        tools=[fetch_inventory],
        instructions="You answer questions about stock levels.",
    )
    with run.case("cache_miss_gap"):
        run.script(
            run.reply("ask", tool=("fetch_inventory", {"warehouse": "north"})),
            run.reply("answer", text="The north warehouse has 12 kettles and 4 toasters."),
        )
        await Runner.run(
            stockroom,
            f"{CATALOGUE}\nHow many kettles are in the north warehouse?",
            run_config=config("Stockroom"),
        )

    concierge = Agent(name="Catalogue concierge", model="gpt-4o-mini", instructions=stamped)
    with run.case("cache_miss_prefix"), trace("Catalogue concierge"):
        run.script(
            run.reply("turn1", text="We have blenders, kettles and toasters."),
            run.reply("turn2", text="The toasters are the cheapest."),
        )
        first = await Runner.run(concierge, f"{CATALOGUE}\nWhat do you sell?")
        await Runner.run(
            concierge, [*first.to_input_list(), {"role": "user", "content": "Which is cheapest?"}]
        )

    # one conversation over two traces (`group_id`), resumed after the cache expired
    adviser = Agent(name="Kettle adviser", model="gpt-4o-mini", instructions="You recommend products.")
    with run.case("conversation_gap"):
        run.script(run.reply("turn1", text="The K-200 kettle."), run.reply("turn2", text="The T-50 toaster."))
        first = await Runner.run(
            adviser,
            f"{CATALOGUE}\nRecommend a kettle.",
            run_config=config("Kettle adviser", group_id="kettle-conv-1"),
        )
        await asyncio.sleep(CACHE_TTL + 0.5)
        await Runner.run(
            adviser,
            [*first.to_input_list(), {"role": "user", "content": "And a toaster?"}],
            run_config=config("Kettle adviser", group_id="kettle-conv-1"),
        )


async def oversized() -> None:
    with run.case("oversized_evidence"):  # the cheaper model does this agent's step fine
        cheap = Agent(name="Ticket triage", model="gpt-4o-mini", instructions=CLASSIFY)
        run.script(run.reply("cheap", text="billing"))
        await Runner.run(cheap, "I was charged twice.", run_config=config("Ticket triage"))

    with run.case("oversized"):
        premium = Agent(name="Ticket triage", model="gpt-4.1", instructions=CLASSIFY)
        run.script(run.reply("premium", "oversized_model", text="shipping"))
        await Runner.run(premium, "My parcel is late.", run_config=config("Ticket triage"))

    with run.case("premium_no_evidence"):  # no cheaper model was seen doing this agent's step
        checker = Agent(name="Late checker", model="gpt-4.1", instructions="Answer yes or no.")
        run.script(run.reply("premium-alone", text="yes"))
        await Runner.run(checker, "Is a parcel sent a week ago late?", run_config=config("Late checker"))

    with run.case("premium_tool_choice"):  # a short output that is a tool choice
        router = Agent(
            name="Ticket triage",
            model="gpt-4.1",
            instructions=CLASSIFY,
            tools=[route_ticket],
            tool_use_behavior="stop_on_first_tool",
        )
        run.script(run.reply("premium-tool", tool=("route_ticket", {"queue": "billing"})))
        await Runner.run(router, "Refund please.", run_config=config("Ticket triage"))


async def main() -> None:
    await productive()
    await retries()
    await repeats()
    await failures()
    await bloat()
    await cache_negatives()
    await oversized()


asyncio.run(main())
run.finish()
