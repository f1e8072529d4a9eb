"""pydantic-ai's own OpenTelemetry instrumentation (`pydantic-ai-slim` 2.68, instrumentation format
version 5, the default; `include_content` on, the default), enabled the documented way with
`Agent.instrument_all(InstrumentationSettings(...))`, around `OpenAIChatModel` (openai 3.x client) and
`AnthropicModel` (anthropic 2.x client).

What it emits, per agent run: an `invoke_agent <name>` root span (`gen_ai.operation.name=invoke_agent`,
the run's summed usage as `gen_ai.aggregated_usage.*`, the whole history as `pydantic_ai.all_messages`),
one `chat <model>` CLIENT span per model request (usage, response id, finish reasons, `operation.cost`,
`gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`), one
`execute_tool <name>` span per tool call (`gen_ai.tool.name`, `gen_ai.tool.call.arguments`,
`gen_ai.tool.call.result`), and, when a hook makes another attempt at a request, a `model request
attempt <model>` ERROR span under the request's `chat` span for each failed or rejected attempt. The
anthropic client traces itself as well (`anthropic.messages.create`, under the `chat` span, with the
same usage again). Format version 2 (deprecated) names the spans `agent run` / `running tool` and the
tool attributes `tool_arguments` / `tool_response`; versions 3 and 4 (deprecated) differ from 5 only in
how thinking and multimodal parts are written and in marking deferred tool calls as errors; version 6
(opt-in) puts tool results in `role=tool` messages. Version 1 (message events) no longer exists.

Cases: a productive run with a tool (plain and streamed, on both providers); retries made by
pydantic-ai capability hooks (`RetryModelRequest` after a 500 / 529 or a reply cut off at the output
limit, `ModelRetry` after a cut-off reply), by the openai client's own retries (seen through the httpx2
instrumentation), a fallback to another model (the failed attempt is a retry: the request was made
again, on another model), tool-argument validation
and output-validator retries (successful calls: productive by the rules); a run that fails at the
provider and one whose tool raises (no outcome); a double-submitted request (duplicate); the model
asking for the same tool three times (loop) and twice (duplicate); a tool result that keeps the
context growing (bloat); cache misses from a model switch between turns of one conversation, a slow
tool, a clock in the instructions and a conversation resumed after the cache expired; gpt-4.1 and
claude-sonnet doing steps gpt-4o-mini and claude-haiku do (oversized) and their negatives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from datetime import UTC, datetime
from typing import Any

# the HTTP instrumentation records these response headers, which carry each request's label
os.environ["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"] = "x-request-id,request-id"

import anthropic
import httpx2
import openai
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from pydantic_ai import Agent, ModelRetry, RetryModelRequest, RunContext
from pydantic_ai.capabilities import AbstractCapability, ModelFallback
from pydantic_ai.exceptions import ModelAPIError, ModelServerError, ModelUnavailableError
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models import ModelRequestContext
from pydantic_ai.models.anthropic import AnthropicModel, AnthropicModelSettings
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from tests.analysis.thirdparty.emit._runtime import CACHE_TTL, Run

run = Run("pydantic_ai", ("pydantic-ai-slim", "openai", "anthropic", "opentelemetry-instrumentation-httpx"))
Agent.instrument_all(InstrumentationSettings(tracer_provider=run.provider))
tracer = trace.get_tracer("helpdesk-app")

# max_retries=0: a provider error reaches pydantic-ai instead of being retried inside the client
openai_provider = OpenAIProvider(
    openai_client=openai.AsyncOpenAI(base_url=f"{run.base_url}/v1", api_key="sk-test", max_retries=0)
)
anthropic_provider = AnthropicProvider(
    anthropic_client=anthropic.AsyncAnthropic(base_url=run.base_url, api_key="sk-ant-test", max_retries=0)
)


def gpt(name: str) -> OpenAIChatModel:
    return OpenAIChatModel(name, provider=openai_provider)


def claude(name: str) -> AnthropicModel:
    return AnthropicModel(name, provider=anthropic_provider)


DOC = "Order history and shipping notes for the customer. " * 150  # ~2,000 tokens per tool result
ORDERS = {42: {"status": "shipped", "eta": "tomorrow"}, 7: {"status": "delivered"}}
# longer than 16 tokens: a premium model writing it is not doing a cheap model's short step
LONG_ANSWER = (
    "I have passed this on to the right team; they will get back to you by email within two working days."
)


def catalogue(shop: str) -> str:
    """A ~2,600-token prompt; the shop's name keeps one case's prefix from being cached by another's."""
    return f"Here is the catalogue of the {shop} shop: " + "blender, kettle, toaster; " * 400


# --- capabilities --------------------------------------------------------------------------------


class ResendOnFailure(AbstractCapability[Any]):
    """Make one more attempt at a request when the provider fails or the reply is cut off, with a
    bigger output budget for the second attempt."""

    async def on_model_request_error(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, error: Exception
    ) -> ModelResponse:
        if isinstance(error, ModelServerError | ModelUnavailableError) and request_context.attempt == 1:
            raise RetryModelRequest()
        raise error

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        if response.finish_reason == "length" and request_context.attempt == 1:
            raise RetryModelRequest()
        return response

    async def prepare_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        if request_context.attempt == 1:
            return request_context
        settings = {**(request_context.model_settings or {}), "max_tokens": 4096}
        return dataclasses.replace(request_context, model_settings=settings)  # type: ignore[arg-type]


class AskToShorten(AbstractCapability[Any]):
    """Tell the model its reply was cut off, so it answers again more briefly."""

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: ModelRequestContext, response: ModelResponse
    ) -> ModelResponse:
        if response.finish_reason == "length":
            raise ModelRetry(
                "Your answer was cut off at the length limit. Answer in at most three sentences."
            )
        return response


# --- agents --------------------------------------------------------------------------------------

SUPPORT = "You are a support assistant for an online shop. Answer briefly."
support = Agent(gpt("gpt-4o-mini"), name="support", instructions=SUPPORT, capabilities=[ResendOnFailure()])


@support.tool_plain
def lookup_order(order_id: int) -> str:
    """Look up an order's status by its number."""
    return json.dumps(ORDERS.get(order_id, {"status": "unknown"}))


@support.output_validator
def no_placeholders(output: str) -> str:
    if "TODO" in output:
        raise ModelRetry("Do not leave placeholders in the answer.")
    return output


helpdesk = Agent(
    claude("claude-sonnet-4-5"),
    name="helpdesk",
    capabilities=[ResendOnFailure()],
    model_settings={"max_tokens": 200},
    instructions="You are the helpdesk of an online shop. Be precise.",
)
helpdesk.tool_plain(lookup_order)

writer = Agent(
    gpt("gpt-4o-mini"),
    name="policy-writer",
    instructions="You explain the shop's return policy.",
    capabilities=[AskToShorten()],
    model_settings={"max_tokens": 200},
)

refunds = Agent(gpt("gpt-4o-mini"), name="refunds", instructions="You process refund requests.")
refunds.tool_plain(lookup_order)


@refunds.tool_plain
def issue_refund(order_id: int) -> str:
    """Refund an order in full."""
    raise RuntimeError("refund service unavailable")


research = Agent(gpt("gpt-4o-mini"), name="research", instructions="You research product questions.")


@research.tool_plain
def search(query: str) -> str:
    """Search the product knowledge base."""
    return "No results."


auditor = Agent(gpt("gpt-4o-mini"), name="auditor", instructions="You audit orders for problems.")


@auditor.tool_plain
def get_order(n: int) -> str:
    """The full record of one of the customer's recent orders (0 is the latest)."""
    return f"Order {n}. {DOC}"


shop_assistant = Agent(
    gpt("gpt-4o-mini"), name="catalogue", instructions="You answer questions about the shop's catalogue."
)


@shop_assistant.tool_plain
async def check_warehouse(item: str) -> str:
    """Ask the warehouse system how many of an item are in stock."""
    await asyncio.sleep(CACHE_TTL + 0.5)  # the warehouse system is slow: past the cache's lifetime
    return f"{item}: 12 in stock"


concierge = Agent(gpt("gpt-4o-mini"), name="concierge")


@concierge.instructions
def concierge_instructions() -> str:
    # the clock at the top of the system prompt changes the prompt prefix on every request
    return f"Current time: {datetime.now(UTC).isoformat()}. You help customers find products."


@concierge.tool_plain
def check_stock(item: str) -> str:
    """How many of an item are in stock."""
    return f"{item}: 12 in stock"


librarian = Agent(
    claude("claude-sonnet-4-5"),
    name="librarian",
    instructions="You answer from the manuals.",
    model_settings=AnthropicModelSettings(anthropic_cache=True),
)


@librarian.tool_plain
async def fetch_manual_page(page: int) -> str:
    """Fetch one page of a product manual from the archive."""
    await asyncio.sleep(CACHE_TTL + 0.5)  # the archive is slow: past the cache's lifetime
    return f"Page {page}: descale the kettle monthly."


CLASSIFY = "Classify the customer's message as billing, shipping or other. Answer with one word."
triage = Agent(gpt("gpt-4o-mini"), name="triage", instructions=CLASSIFY)


@triage.tool_plain
def escalate(team: str) -> str:
    """Hand the conversation over to a human team."""
    return f"escalated to {team}"


late_check = Agent(gpt("gpt-4.1"), name="late-check", instructions="Answer yes or no.")
summarizer = Agent(
    claude("claude-3-5-haiku-latest"),
    name="summarizer",
    instructions="Summarise the ticket in at most five words.",
)


async def expect_failure(coro: Any) -> None:
    """The application reports a failed run to the user and goes on."""
    try:
        await coro
    except (ModelAPIError, RuntimeError):
        pass


# --- cases ---------------------------------------------------------------------------------------


async def main() -> None:
    with run.case("productive"):
        run.script(
            run.reply("ask", tool=("lookup_order", {"order_id": 42})),
            run.reply("answer", text="It ships tomorrow."),
        )
        await support.run("Where is order 42?")

    with run.case("productive_stream"):
        run.script(
            run.reply("ask", tool=("lookup_order", {"order_id": 7})),
            run.reply("answer", text="It was delivered."),
        )
        async with support.run_stream("Where is order 7?") as result:
            async for _ in result.stream_output():
                pass

    with run.case("anthropic_productive"):
        run.script(
            run.reply("ask", tool=("lookup_order", {"order_id": 42})),
            run.reply("answer", text="It ships tomorrow."),
        )
        await helpdesk.run("Where is order 42?")

    with run.case("anthropic_stream"):
        run.script(run.reply("answer", text="Returns are free within thirty days of delivery."))
        async with helpdesk.run_stream("How do returns work?") as result:
            async for _ in result.stream_output():
                pass

    # a provider error, retried by the capability in the same request step: a failed-attempt span
    with run.case("retry_error"):
        run.script(run.reply("fail", "retry", status=500), run.reply("ok", text="We open at nine."))
        await support.run("When do you open?")

    with run.case("retry_overloaded"):
        run.script(run.reply("overloaded", "retry", status=529), run.reply("ok", text="We open at nine."))
        await helpdesk.run("When do you open?")

    # a reply cut off at the output limit and resent with a bigger budget: the rejected attempt's
    # span carries the usage it was billed
    with run.case("retry_truncated_resend"):
        run.script(
            run.reply("cut", "retry", truncated=True, text="The warranty covers " * 40),
            run.reply("again", text="Two years, parts and labour."),
        )
        await helpdesk.run("What does the warranty cover?")

    # a reply cut off at the output limit, and the model told so: its `chat` span ends in error
    with run.case("retry_truncated"):
        run.script(
            run.reply("cut", "retry", truncated=True, text="The return policy " * 40),
            run.reply("short", text="Return it within thirty days for a full refund."),
        )
        await writer.run("Explain the return policy in detail.")

    # the openai client's own retry, inside one `chat` span: only the HTTP spans show the attempts
    with run.case("retry_http"):
        http_client = httpx2.AsyncClient()
        HTTPX2ClientInstrumentor.instrument_client(http_client)
        traced = OpenAIChatModel(
            "gpt-4o-mini",
            provider=OpenAIProvider(
                base_url=f"{run.base_url}/v1", api_key="sk-test", http_client=http_client
            ),
        )
        run.script(
            run.reply("limited", "retry", status=429, retry_after=0.05), run.reply("ok", text="Yes, we do.")
        )
        await support.run("Do you ship to Norway?", model=traced)

    # another model answers after the first failed: the request was made again, so the failed attempt
    # is a retry (pydantic-ai nests it in the span of the request that answered)
    with run.case("fallback"):
        failover = Agent(
            gpt("gpt-4o-mini"),
            name="support",
            capabilities=[ModelFallback(gpt("gpt-4o"))],
            instructions=SUPPORT,
        )
        run.script(run.reply("fail", "retry", status=500), run.reply("fallback", text=LONG_ANSWER))
        await failover.run("My parcel arrived damaged.")

    # the model's tool arguments fail validation; it is asked again and corrects them
    with run.case("tool_args_retry"):
        run.script(
            run.reply("bad-args", tool=("lookup_order", {"order_id": "forty-two"})),
            run.reply("fixed", tool=("lookup_order", {"order_id": 42})),
            run.reply("answer", text="It ships tomorrow."),
        )
        await support.run("Where is order forty-two?")

    # the output validator rejects a reply; the calls themselves succeeded
    with run.case("output_validator_retry"):
        run.script(
            run.reply("placeholder", text="TODO: look up the hours"),
            run.reply("fixed", text="We open at nine."),
        )
        await support.run("What are your opening hours?")

    with run.case("provider_down"):
        run.script(
            run.reply("ask", "no_outcome", tool=("lookup_order", {"order_id": 7})),
            run.reply("down", "no_outcome", status=500),
        )
        await expect_failure(refunds.run("Refund order 7."))

    with run.case("failed_task"):
        run.script(
            run.reply("look", "no_outcome", tool=("lookup_order", {"order_id": 7})),
            run.reply("refund", "no_outcome", tool=("issue_refund", {"order_id": 7})),
        )
        await expect_failure(refunds.run("Refund order 7 please."))

    # the request handler runs the agent twice for one submission
    with run.case("duplicate"), tracer.start_as_current_span("POST /tickets"):
        run.script(
            run.reply("first", text="We open at nine."),
            run.reply("repeat", "duplicate", text="We open at nine."),
        )
        for _ in range(2):
            await support.run("What time do you open on Saturdays?")

    with run.case("same_question_new_trace"):  # another customer asking the same: not a duplicate
        run.script(run.reply("again", text="We open at nine."))
        await support.run("What time do you open on Saturdays?")

    with run.case("loop"):
        same_search = ("search", {"query": "blender warranty"})
        run.script(
            *(run.reply(f"search{i}", *(("loop",) if i else ()), tool=same_search) for i in range(3)),
            run.reply("give-up", text="I could not find it."),
        )
        await research.run("Find the warranty terms for a blender.")

    with run.case("duplicate_tool"):
        run.script(
            run.reply("search", tool=("search", {"query": "kettle descaling"})),
            run.reply("search-again", "duplicate", tool=("search", {"query": "kettle descaling"})),
            run.reply("answer", text="Descale it monthly with vinegar."),
        )
        await research.run("How do I descale the kettle?")

    with run.case("bloat"):  # every step adds a ~2,000-token tool result that stays in the context
        steps = [
            run.reply(f"step{i}", *(("context_bloat",) if i > 1 else ()), tool=("get_order", {"n": i}))
            for i in range(5)
        ]
        run.script(*steps, run.reply("report", "context_bloat", text="All five orders are fine."))
        await auditor.run("Audit my last five orders.")

    # the second turn of the conversation goes to another model, which cannot read the first's cache
    with run.case("cache_miss_model"):
        run.script(run.reply("turn1", text=LONG_ANSWER), run.reply("turn2", "cache_miss", text="The kettle."))
        first = await shop_assistant.run(
            catalogue("Leeds") + "\nWhich items are kitchen appliances?", model=gpt("gpt-4o")
        )
        await shop_assistant.run("And which is cheapest?", message_history=first.all_messages())

    with run.case("cache_miss_gap"):
        run.script(
            run.reply("ask", tool=("check_warehouse", {"item": "kettle"})),
            run.reply("answer", "cache_miss", text="We have twelve kettles."),
        )
        await shop_assistant.run(catalogue("York") + "\nHow many kettles do you have?")

    with run.case("cache_miss_prefix"):
        run.script(
            run.reply("ask", tool=("check_stock", {"item": "toaster"})),
            run.reply("answer", "cache_miss", text="We have twelve toasters."),
        )
        await concierge.run(catalogue("Bath") + "\nAre toasters in stock?")

    # a conversation of two runs (traces): the second resumes the first after the cache expired
    with run.case("conversation_gap"):
        run.script(
            run.reply("turn1", text="The kettle."), run.reply("turn2", "cache_miss", text="The toaster.")
        )
        first = await shop_assistant.run(catalogue("Hull") + "\nRecommend a kettle.")
        await asyncio.sleep(CACHE_TTL + 0.5)
        await shop_assistant.run("And a toaster?", message_history=first.all_messages())

    with run.case("conversation_warm"):  # resumed at once: the prefix is read from the cache
        run.script(run.reply("turn1", text="The blender."), run.reply("turn2", text="The kettle."))
        first = await shop_assistant.run(catalogue("Kent") + "\nRecommend a blender.")
        await shop_assistant.run("And a kettle?", message_history=first.all_messages())

    with run.case("anthropic_cache_miss_gap"):
        # the first request writes the prefix to the cache, which has expired when the second is made
        write = {
            "input_tokens": 93,
            "cache_creation_input_tokens": 2560,
            "cache_read_input_tokens": 0,
            "output_tokens": 4,
        }
        run.script(
            run.reply("ask", tool=("fetch_manual_page", {"page": 12}), usage=write),
            run.reply("answer", "cache_miss", text="Descale it monthly."),
        )
        await librarian.run(catalogue("Derby") + "\nHow often should I descale the kettle?")

    with run.case("oversized_evidence"):  # the cheaper model does this step fine
        run.script(run.reply("cheap", text="billing"))
        await triage.run("I was charged twice.")

    with run.case("oversized"):
        run.script(run.reply("premium", "oversized_model", text="shipping"))
        await triage.run("My parcel is late.", model=gpt("gpt-4.1"))

    with run.case("premium_tool_choice"):  # a short output that is a tool choice, then a long answer
        run.script(
            run.reply("route", tool=("escalate", {"team": "billing"})),
            run.reply("handover", text=LONG_ANSWER),
        )
        await triage.run("I want a refund, let me talk to someone.", model=gpt("gpt-4.1"))

    with run.case("premium_no_evidence"):  # no cheaper model was seen doing this step
        run.script(run.reply("premium-alone", text="yes"))
        await late_check.run("Is the parcel late if it was due yesterday?")

    with run.case("anthropic_oversized_evidence"):
        run.script(run.reply("cheap", text="Double charge on card."))
        await summarizer.run("Hello, my card was charged twice for order 42, please fix it.")

    with run.case("anthropic_oversized"):
        run.script(run.reply("premium", "oversized_model", text="Parcel late, wants refund."))
        await summarizer.run(
            "My parcel is a week late and I would like my money back.", model=claude("claude-sonnet-4-5")
        )


asyncio.run(main())
run.finish()
