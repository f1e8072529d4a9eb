"""One realistic span per emitter convention, with the normalized values it must produce.

Attribute keys and value shapes are those the emitters send. Used by the
normalizer's unit tests and sent through the real OTLP pipeline by the receiver tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tokentrail.collector.normalize import Normalized


@dataclass(frozen=True)
class ConventionCase:
    name: str
    span_name: str
    attributes: dict[str, Any]
    expected: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=lambda: {"service.name": "agent-app"})
    error: bool = False
    client: bool = False  # span kind CLIENT


_MSGS = [{"role": "user", "parts": [{"type": "text", "content": "Where is order 42?"}]}]

CASES: list[ConventionCase] = [
    ConventionCase(
        "otel-current",
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.response.id": "chatcmpl-9x",
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 220,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.usage.cache_write.input_tokens": 0,
            "gen_ai.usage.reasoning.output_tokens": 64,
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.input.messages": json.dumps(_MSGS),
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        },
        {
            "convention": "otel",
            "step_kind": "llm",
            "provider": "openai",
            "request_model": "gpt-4o",
            "response_model": "gpt-4o-2024-08-06",
            "input_tokens": 1500,
            "output_tokens": 220,
            "cache_read_tokens": 1024,
            "reasoning_tokens": 64,
            "billable": True,
            "finish_reasons": ["stop"],
            "conversation_id": "conv-1",
            "response_id": "chatcmpl-9x",
            "input_messages": _MSGS,
        },
    ),
    ConventionCase(
        "otel-v1.26",
        "chat claude-3-5-haiku",
        {
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.prompt_tokens": 300,
            "gen_ai.usage.completion_tokens": 40,
            "gen_ai.response.finish_reasons": '["end_turn"]',
        },
        {
            "convention": "otel",
            "step_kind": "llm",
            "provider": "anthropic",
            "input_tokens": 300,
            "output_tokens": 40,
            "billable": True,
            "finish_reasons": ["end_turn"],
        },
    ),
    ConventionCase(
        "otel-v1.41-cache-creation",
        "chat claude-sonnet-4-5",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 150,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cache_read.input_tokens": 30,
            "gen_ai.usage.cache_creation.input_tokens": 20,
        },
        {"step_kind": "llm", "input_tokens": 150, "cache_read_tokens": 30, "cache_write_tokens": 20},
    ),
    ConventionCase(
        "otel-tool",
        "execute_tool get_weather",
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "get_weather",
            "gen_ai.tool.call.id": "call_abc",
            "gen_ai.tool.call.arguments": '{"city": "Paris", "unit": "C"}',
            "gen_ai.tool.call.result": '{"temp": 21}',
        },
        {
            "step_kind": "tool",
            "tool_name": "get_weather",
            "tool_call_id": "call_abc",
            "billable": False,
            "tool_arguments": {"city": "Paris", "unit": "C"},
        },
    ),
    ConventionCase(
        "otel-agent-aggregate",
        "invoke_agent support",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support",
            "gen_ai.usage.input_tokens": 9000,
            "gen_ai.usage.output_tokens": 900,
        },
        {"step_kind": "agent", "agent_name": "support", "billable": False},
    ),
    ConventionCase(
        "openinference-llm",
        "ChatOpenAI",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.token_count.prompt": 800,
            "llm.token_count.completion": 50,
            "llm.token_count.total": 850,
            "llm.token_count.prompt_details.cache_read": 512,
            "llm.token_count.completion_details.reasoning": 12,
            "session.id": "sess-7",
            "user.id": "u-1",
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You are terse.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Where is order 42?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup_order",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"id": 42}',
            "llm.cost.total": 0.00042,
        },
        {
            "convention": "openinference",
            "step_kind": "llm",
            "provider": "openai",
            "request_model": "gpt-4o-mini",
            "input_tokens": 800,
            "output_tokens": 50,
            "cache_read_tokens": 512,
            "reasoning_tokens": 12,
            "conversation_id": "sess-7",
            "user_id": "u-1",
            "reported_cost": 0.00042,
            "billable": True,
            "input_messages": _MSGS,
            "system_instructions": [{"type": "text", "content": "You are terse."}],
            "output_messages": [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": {"id": 42}}
                    ],
                }
            ],
        },
    ),
    ConventionCase(
        "openinference-tool",
        "lookup_order",
        {
            "openinference.span.kind": "TOOL",
            "tool.name": "lookup_order",
            "tool.id": "call_1",
            "input.value": '{"id": 42}',
            "output.value": "shipped",
        },
        {
            "convention": "openinference",
            "step_kind": "tool",
            "tool_name": "lookup_order",
            "tool_call_id": "call_1",
            "tool_arguments": {"id": 42},
        },
    ),
    ConventionCase(
        "openllmetry-0.4",
        "openai.chat",
        {
            "llm.request.type": "chat",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.prompt_tokens": 1200,
            "gen_ai.usage.completion_tokens": 30,
            "llm.usage.total_tokens": 1230,
            "gen_ai.usage.cache_read_input_tokens": 1000,
            "traceloop.association.properties.session_id": "s-9",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "Where is order 42?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "Shipped.",
            "gen_ai.completion.0.finish_reason": "stop",
        },
        {
            "convention": "openllmetry",
            "step_kind": "llm",
            "provider": "openai",
            "input_tokens": 1200,
            "output_tokens": 30,
            "cache_read_tokens": 1000,
            "conversation_id": "s-9",
            "finish_reasons": ["stop"],
            "input_messages": _MSGS,
            "output_messages": [{"role": "assistant", "parts": [{"type": "text", "content": "Shipped."}]}],
        },
    ),
    ConventionCase(
        "openllmetry-0.5-workflow",
        "support_flow.workflow",
        {
            "traceloop.span.kind": "workflow",
            "traceloop.entity.name": "support_flow",
            "traceloop.workflow.name": "support_flow",
            "gen_ai.provider.name": "langchain",
        },
        {
            "convention": "openllmetry",
            "step_kind": "agent",
            "step_subkind": "workflow",
            "workflow_name": "support_flow",
            "provider": "",
        },
    ),
    ConventionCase(
        "pydantic-ai-agent",
        "invoke_agent support_agent",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support_agent",
            "gen_ai.aggregated_usage.input_tokens": 5000,
            "gen_ai.aggregated_usage.output_tokens": 400,
            "logfire.msg": "support_agent run",
            "pydantic_ai.all_messages": "[]",
        },
        {"convention": "pydantic_ai", "step_kind": "agent", "usage_reported": False, "billable": False},
    ),
    ConventionCase(
        "pydantic-ai-chat",
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 700,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.details.reasoning_tokens": 5,
            "gen_ai.usage.details.cache_write_tokens": 100,
        },
        {"step_kind": "llm", "reasoning_tokens": 5, "cache_write_tokens": 100, "billable": True},
    ),
    ConventionCase(
        "openai-agents-handoff",
        "handoff",
        {
            "gen_ai.operation.name": "agent_handoff",
            "gen_ai.handoff.from_agent": "triage",
            "gen_ai.handoff.to_agent": "billing",
        },
        {"convention": "openai_agents", "step_kind": "other", "step_subkind": "handoff"},
    ),
    ConventionCase(
        "openlit",
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cost": 0.0000210,
        },
        {"convention": "openlit", "step_kind": "llm", "reported_cost": 0.000021, "billable": True},
        resource={"service.name": "bot", "telemetry.sdk.name": "openlit"},
    ),
    ConventionCase(
        "claude-code-llm-request",
        "claude_code.llm_request",
        {
            "model": "claude-sonnet-4-5",
            "gen_ai.system": "anthropic",
            "input_tokens": 100,
            "output_tokens": 300,
            "cache_read_tokens": 30,
            "cache_creation_tokens": 20,
            "request_id": "req_011",
            "attempt": 2,
            "stop_reason": "tool_use",
            "session.id": "cc-session",
        },
        {
            "convention": "claude_code",
            "step_kind": "llm",
            "provider": "anthropic",
            "request_model": "claude-sonnet-4-5",
            "input_tokens": 150,
            "output_tokens": 300,
            "cache_read_tokens": 30,
            "cache_write_tokens": 20,
            "response_id": "req_011",
            "retry_attempt": 2,
            "finish_reasons": ["tool_use"],
            "conversation_id": "cc-session",
        },
        resource={"service.name": "claude-code"},
    ),
    ConventionCase(
        "gemini-cli",
        "llm_call",
        {
            "gen_ai.operation.name": "llm_call",
            "gen_ai.agent.name": "gemini-cli",
            "model": "gemini-2.5-pro",
            "input_token_count": 4000,
            "output_token_count": 200,
            "cached_content_token_count": 3000,
            "thoughts_token_count": 50,
            "gen_ai.conversation.id": "g-1",
        },
        {
            "convention": "gemini_cli",
            "step_kind": "llm",
            "input_tokens": 4000,
            "cache_read_tokens": 3000,
            "reasoning_tokens": 50,
            "conversation_id": "g-1",
        },
    ),
    ConventionCase(
        "tokentrail-retry",
        "retry chat gpt-4o",
        {
            "tokentrail.step.kind": "retry",
            "tokentrail.retry.attempt": 2,
            "tokentrail.retry.reason": "429 rate_limit",
        },
        {
            "convention": "tokentrail",
            "step_kind": "retry",
            "retry_attempt": 2,
            "retry_reason": "429 rate_limit",
        },
    ),
    ConventionCase(
        "error-with-exception-event",
        "chat gpt-4o",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        {
            "step_kind": "llm",
            "error_type": "openai.RateLimitError",
            "usage_reported": False,
            "billable": False,
        },
        error=True,
    ),
    # --- shapes the third-party corpus showed (tests/analysis/thirdparty) ---------------------------
    ConventionCase(
        "failed-call-without-usage",
        "chat gpt-4o-mini",
        {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini"},
        {
            "step_kind": "llm",
            "request_model": "gpt-4o-mini",
            "usage_reported": False,
            "billable": False,
            "error_type": "openai.RateLimitError",
        },
        error=True,
    ),
    ConventionCase(
        "openlit-failed-anthropic-name-only",
        "chat claude-sonnet-4-5",
        {},
        {"step_kind": "llm", "request_model": "claude-sonnet-4-5", "error_type": "openai.RateLimitError"},
        resource={"service.name": "bot", "telemetry.sdk.name": "openlit"},
        error=True,
        client=True,
    ),
    ConventionCase(
        "openlit-anthropic-input-leaves-out-cache",
        "chat claude-3-5-haiku-latest",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku-latest",
            "gen_ai.usage.input_tokens": 79,
            "gen_ai.usage.output_tokens": 5,
            "gen_ai.usage.cache_read.input_tokens": 2560,
            "gen_ai.usage.cache_creation.input_tokens": 0,
            "gen_ai.usage.cost": 0.0,
            "gen_ai.tool.name": "search",
            "gen_ai.tool.args": '{"q": "x"}',
        },
        {
            "convention": "openlit",
            "step_kind": "llm",
            "input_tokens": 2639,
            "cache_read_tokens": 2560,
            "cache_reported": True,
            "reported_cost": 0.0,
            "billable": True,
        },
        resource={"service.name": "bot", "telemetry.sdk.name": "openlit"},
    ),
    ConventionCase(
        "http-attempt-old-names",
        "POST",
        {"http.method": "POST", "http.url": "http://127.0.0.1/v1/chat/completions", "http.status_code": 429},
        {"step_kind": "other", "step_subkind": "http", "error_type": "429", "billable": False},
        error=True,
        client=True,
    ),
    ConventionCase(
        "http-attempt-new-names",
        "POST",
        {
            "http.request.method": "POST",
            "url.full": "http://127.0.0.1/v1/messages",
            "http.response.status_code": 200,
        },
        {"step_kind": "other", "step_subkind": "http", "error_type": ""},
        client=True,
    ),
    ConventionCase(
        "openinference-request-model-and-responses-finish",
        "Response",
        {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.model_name": "gpt-4o-2024-08-06",
            "llm.invocation_parameters": '{"model": "gpt-4o", "max_output_tokens": 200}',
            "llm.token_count.prompt": 30,
            "llm.token_count.completion": 200,
            "output.mime_type": "application/json",
            "output.value": '{"id": "resp_1", "object": "response", "status": "incomplete", "output": []}',
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Summarise.",
        },
        {
            "request_model": "gpt-4o",
            "response_model": "gpt-4o-2024-08-06",
            "finish_reasons": ["length"],
            "response_id": "resp_1",
            "cache_reported": True,
            "input_messages": [{"role": "user", "parts": [{"type": "text", "content": "Summarise."}]}],
        },
    ),
    ConventionCase(
        "openinference-agent-named-by-its-span",
        "support_agent",
        {"openinference.span.kind": "AGENT", "input.value": "Where is order 42?"},
        {"step_kind": "agent", "agent_name": "support_agent"},
    ),
    ConventionCase(
        "openinference-langgraph-node-is-a-step",
        "agent",
        {"openinference.span.kind": "AGENT", "metadata": '{"langgraph_step": 1, "langgraph_node": "agent"}'},
        {"step_kind": "other", "step_subkind": "chain"},
    ),
    ConventionCase(
        "openinference-langgraph-graph-is-the-agent",
        "LangGraph",
        {"openinference.span.kind": "CHAIN", "metadata": '{"ls_integration": "langgraph"}'},
        {"step_kind": "agent", "agent_name": "LangGraph"},
    ),
    ConventionCase(
        "openllmetry-langchain-tool-envelope",
        "execute_tool search_docs",
        {
            "traceloop.span.kind": "tool",
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "search_docs",
            "gen_ai.tool.call.arguments": json.dumps(
                {
                    "input_str": "{'query': 'warranty'}",
                    "inputs": {"query": "warranty"},
                    "metadata": {"langgraph_step": 3, "checkpoint_ns": "tools:abc"},
                    "kwargs": {"tool_call_id": "call_9"},
                }
            ),
        },
        {
            "convention": "openllmetry",
            "step_kind": "tool",
            "tool_name": "search_docs",
            "tool_call_id": "call_9",
            "tool_arguments": {"query": "warranty"},
        },
    ),
    ConventionCase(
        "anthropic-client-stop-reason",
        "anthropic.messages.create",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 44,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "anthropic.message.stop_reason": "max_tokens",
        },
        {"step_kind": "llm", "finish_reasons": ["max_tokens"], "billable": True},
    ),
    ConventionCase(
        "contrib-openai-v2-error-class-and-message-finish",
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "error.type": "<class 'openai.InternalServerError'>",
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "finish_reason": "length",
                        "parts": [{"type": "text", "content": "The policy"}],
                    }
                ]
            ),
        },
        {
            "step_kind": "llm",
            "error_type": "InternalServerError",
            "finish_reasons": ["length"],
            "cache_reported": False,
        },
    ),
    ConventionCase(
        "pydantic-ai-attempt",
        "model request attempt gpt-4o-mini",
        {
            "pydantic_ai.model_request.attempt": 0,
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.system": "openai",
        },
        {"convention": "pydantic_ai", "step_kind": "llm", "step_subkind": "attempt", "retry_attempt": 1},
        error=True,
    ),
    ConventionCase(
        "pydantic-ai-chat-leaves-out-a-zero-cache",
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 39,
            "gen_ai.usage.output_tokens": 7,
            "operation.cost": 0.00001,
            "model_request_parameters": "{}",
        },
        {"convention": "pydantic_ai", "cache_reported": True, "reported_cost": 0.00001},
    ),
    ConventionCase(
        "openai-agents-bridge-root-is-a-workflow",
        "Front desk",
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"},
        {"step_kind": "agent", "step_subkind": "workflow", "agent_name": "Front desk"},
    ),
    ConventionCase(
        "legacy-prompt-as-json-messages",
        "chat gpt-4o",
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 40,
            "gen_ai.usage.completion_tokens": 5,
            "gen_ai.prompt": json.dumps(
                [{"role": "system", "content": "Classify."}, {"role": "user", "content": "Hi"}]
            ),
            "gen_ai.completion": json.dumps(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "route", "arguments": '{"to": "billing"}'},
                        }
                    ],
                }
            ),
        },
        {
            "step_kind": "llm",
            "cache_reported": False,
            "input_messages": [
                {"role": "system", "parts": [{"type": "text", "content": "Classify."}]},
                {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
            ],
            "output_messages": [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "id": "c1", "name": "route", "arguments": {"to": "billing"}}
                    ],
                }
            ],
        },
    ),
]

JSON_FIELDS = ("input_messages", "output_messages", "system_instructions", "tool_arguments")


def check(actual: Normalized | dict[str, Any], expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        got = actual[key] if isinstance(actual, dict) else getattr(actual, key)
        if key in JSON_FIELDS:
            got = json.loads(got)
        if isinstance(want, float):
            assert got == pytest.approx(want), key
        else:
            assert got == want, key
