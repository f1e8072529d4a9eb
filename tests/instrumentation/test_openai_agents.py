"""The openai-agents instrumentor with a real `agents.Agent` and the openai client against the local API stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    function_tool,
    input_guardrail,
    set_trace_processors,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.demo.llm_server import LLMServer
from tokentrail.instrumentation import _content
from tokentrail.instrumentation.openai import OpenAIInstrumentor
from tokentrail.instrumentation.openai_agents import OpenAIAgentsInstrumentor

# tool calls the stand-in answers with report this usage, so the figures below are exact
USAGE = {
    "prompt_tokens": 40,
    "completion_tokens": 12,
    "total_tokens": 52,
    "prompt_tokens_details": {"cached_tokens": 8},
}


@pytest.fixture
def server(spans) -> Iterator[LLMServer]:
    # Only our processor: the SDK's default one would try to export to OpenAI (there is no internet here).
    set_trace_processors([])
    OpenAIAgentsInstrumentor().instrument()
    srv = LLMServer(reply="It shipped.")
    with srv:
        yield srv
    OpenAIAgentsInstrumentor().uninstrument()
    set_trace_processors([])


inside_tool: list[int] = []


@function_tool
def get_order(order_id: str) -> str:
    """Look up an order."""
    inside_tool.append(trace.get_current_span().get_span_context().span_id)
    return f"order {order_id}: shipped"


@input_guardrail
async def polite(ctx: Any, agent: Any, user_input: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="rude" in str(user_input))


def _agents(server: LLMServer, **client_kw: Any) -> Agent[Any]:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t", **client_kw)
    model = OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)
    billing = Agent(name="billing", instructions="You handle billing.", model=model)
    return Agent(
        name="triage",
        instructions="Route the customer.",
        model=model,
        tools=[get_order],
        handoffs=[billing],
        input_guardrails=[polite],
    )


def _run(server: LLMServer, text: str = "Where is order 42?", **kw: Any) -> Any:
    return asyncio.run(Runner.run(_agents(server), text, **kw))


def _parent_of(span) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _named(spans, name: str) -> list[Any]:
    return sorted((s for s in spans.get_finished_spans() if s.name == name), key=lambda s: s.start_time)


def test_agent_run_with_tool_handoff_and_guardrail(spans, server):
    server.tool_calls += [("get_order", {"order_id": "42"}, USAGE), ("transfer_to_billing", {}, USAGE)]
    inside_tool.clear()
    result = _run(server, run_config=RunConfig(workflow_name="support", group_id="conv-9"))
    assert result.final_output == "It shipped." and result.last_agent.name == "billing"

    (root,) = _named(spans, "invoke_workflow support")
    assert root.parent is None
    assert root.attributes["gen_ai.workflow.name"] == "support"
    (triage,), (billing,) = _named(spans, "invoke_agent triage"), _named(spans, "invoke_agent billing")
    for agent_span in (triage, billing):
        assert _parent_of(agent_span) == root.context.span_id  # task and turn spans are left out
        assert agent_span.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert triage.attributes["gen_ai.agent.name"] == "triage"

    chats = _named(spans, "chat gpt-4o")
    assert [_parent_of(c) for c in chats] == [triage.context.span_id] * 2 + [billing.context.span_id]
    first = chats[0]
    assert first.kind == SpanKind.CLIENT
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.request.model"] == "gpt-4o"
    assert first.attributes["server.address"] == "127.0.0.1"
    assert first.attributes["gen_ai.usage.input_tokens"] == 40
    assert first.attributes["gen_ai.usage.output_tokens"] == 12
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 8
    assert chats[2].attributes["gen_ai.usage.output_tokens"] > 0
    assert "gen_ai.input.messages" not in first.attributes

    (tool_span,) = _named(spans, "execute_tool get_order")
    assert _parent_of(tool_span) == triage.context.span_id
    assert tool_span.attributes["gen_ai.tool.name"] == "get_order"
    assert tool_span.attributes["gen_ai.tool.call.id"].startswith("call_")  # from the model's request
    assert "gen_ai.tool.call.arguments" not in tool_span.attributes
    assert inside_tool == [tool_span.context.span_id]  # spans started in a tool nest under it

    (handoff,) = _named(spans, "handoff billing")
    assert _parent_of(handoff) == triage.context.span_id
    assert handoff.attributes["gen_ai.handoff.from_agent"] == "triage"
    assert handoff.attributes["gen_ai.handoff.to_agent"] == "billing"
    assert handoff.attributes["tokentrail.step.subkind"] == "handoff"

    (guard,) = _named(spans, "guardrail polite")
    assert _parent_of(guard) == triage.context.span_id
    assert guard.attributes["gen_ai.guardrail.name"] == "polite"
    assert guard.attributes["gen_ai.guardrail.triggered"] is False

    finished = spans.get_finished_spans()
    assert all(s.attributes["gen_ai.conversation.id"] == "conv-9" for s in finished)
    assert all(s.context.trace_id == root.context.trace_id for s in finished)
    assert not trace.get_current_span().get_span_context().is_valid  # the caller's context is left as it was


def test_openai_client_span_nests_under_the_agents_chat_span(spans, server):
    OpenAIInstrumentor().instrument()
    try:
        with tokentrail.agent("outer", user_id="u-1"):
            _run(server)
    finally:
        OpenAIInstrumentor().uninstrument()
    (outer,) = _named(spans, "invoke_agent outer")
    (workflow,) = _named(spans, "invoke_workflow Agent workflow")
    assert _parent_of(workflow) == outer.context.span_id
    assert workflow.attributes["user.id"] == "u-1"
    ours, client = sorted(
        _named(spans, "chat gpt-4o"), key=lambda s: s.instrumentation_scope.name != "tokentrail.openai_agents"
    )
    assert ours.instrumentation_scope.name == "tokentrail.openai_agents"
    assert client.instrumentation_scope.name == "tokentrail.openai"
    assert _parent_of(client) == ours.context.span_id


def test_content_capture(spans, server):
    _content.configure(enabled=True)
    server.tool_calls.append(("get_order", {"order_id": "7"}, USAGE))
    _run(server, "Status of 7?")
    (tool_span,) = _named(spans, "execute_tool get_order")
    assert json.loads(tool_span.attributes["gen_ai.tool.call.arguments"]) == {"order_id": "7"}
    assert tool_span.attributes["gen_ai.tool.call.result"] == "order 7: shipped"
    first, second = _named(spans, "chat gpt-4o")
    assert json.loads(first.attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Route the customer."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Status of 7?"}]},
    ]
    (call,) = json.loads(first.attributes["gen_ai.output.messages"])[0]["parts"]
    assert call["type"] == "tool_call" and call["name"] == "get_order"
    assert call["id"] == tool_span.attributes["gen_ai.tool.call.id"]
    assert [m["role"] for m in json.loads(second.attributes["gen_ai.input.messages"])] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert json.loads(second.attributes["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": "It shipped."}
    ]


def test_tripped_guardrail(spans, server):
    with pytest.raises(InputGuardrailTripwireTriggered):
        _run(server, "you are rude")
    (guard,) = _named(spans, "guardrail polite")
    assert guard.attributes["gen_ai.guardrail.triggered"] is True
    (triage,) = _named(spans, "invoke_agent triage")
    assert _parent_of(guard) == triage.context.span_id
    assert not trace.get_current_span().get_span_context().is_valid


def test_model_error_is_recorded(spans, server):
    server.fail_next(500, times=5)
    with pytest.raises(openai.InternalServerError):
        asyncio.run(Runner.run(_agents(server, max_retries=0), "hi"))
    (chat,) = _named(spans, "chat gpt-4o")
    assert chat.status.status_code == StatusCode.ERROR
    assert chat.attributes["error.type"]
    assert {s.name for s in spans.get_finished_spans()} >= {
        "invoke_agent triage",
        "invoke_workflow Agent workflow",
    }
    assert not trace.get_current_span().get_span_context().is_valid


def test_uninstrument_stops_spans_and_dependencies_are_declared(spans, server):
    assert OpenAIAgentsInstrumentor().instrumentation_dependencies() == ("openai-agents >= 0.1",)
    OpenAIAgentsInstrumentor().uninstrument()
    _run(server)
    assert spans.get_finished_spans() == ()
    OpenAIAgentsInstrumentor().instrument()
    _run(server)
    assert len(_named(spans, "invoke_agent triage")) == 1
