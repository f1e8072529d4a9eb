"""The anthropic instrumentor with the real client against the local API stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
)
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.demo.llm_server import LLMServer
from tokentrail.instrumentation import _content, _llm
from tokentrail.instrumentation.anthropic import _HOOKS, AnthropicInstrumentor

MODEL = "claude-sonnet-4-6"
SYSTEM = "You are a support agent. Refunds within 30 days. " * 250  # ~3,000 tokens: long enough to cache
ASK: Any = [{"role": "user", "content": "Where is order 42?"}]


@pytest.fixture
def server(spans) -> Iterator[LLMServer]:
    AnthropicInstrumentor().instrument()
    with LLMServer(reply="It shipped.") as srv:
        yield srv
    AnthropicInstrumentor().uninstrument()


def _client(server: LLMServer, **kw: Any) -> Any:
    return anthropic.Anthropic(base_url=server.base_url, api_key="t", **kw)


def _chats(spans):
    return [s for s in spans.get_finished_spans() if s.instrumentation_scope.name == "tokentrail.anthropic"]


def test_message_span_with_inclusive_usage_and_cache(spans, server):
    client = _client(server)
    # This SDK has no `temperature` / `top_p` arguments any more; they travel in `extra_body`.
    first = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system=SYSTEM,
        messages=ASK,
        stop_sequences=["END"],
        extra_body={"temperature": 0.3, "top_p": 0.9},
    )
    again = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, messages=ASK)
    one, two = _chats(spans)
    assert one.name == f"chat {MODEL}" and one.kind == SpanKind.CLIENT
    attrs = one.attributes
    assert attrs["gen_ai.operation.name"] == "chat" and attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == MODEL and attrs["gen_ai.response.model"] == first.model
    assert attrs["gen_ai.request.max_tokens"] == 256
    assert attrs["gen_ai.request.temperature"] == 0.3 and attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.response.id"] == first.id
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == server.port
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 0
    # The second call reads the system prompt from the cache; Anthropic's input_tokens leave it out.
    usage = again.usage
    assert usage.cache_read_input_tokens >= 1024
    assert usage.input_tokens == first.usage.input_tokens - usage.cache_read_input_tokens
    assert two.attributes["gen_ai.usage.input_tokens"] == (
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    )
    assert two.attributes["gen_ai.usage.input_tokens"] == one.attributes["gen_ai.usage.input_tokens"]
    assert two.attributes["gen_ai.usage.cache_read.input_tokens"] == usage.cache_read_input_tokens
    assert two.attributes["gen_ai.usage.cache_write.input_tokens"] == usage.cache_creation_input_tokens
    assert two.attributes["gen_ai.usage.output_tokens"] == usage.output_tokens > 0
    assert "gen_ai.input.messages" not in attrs  # content capture is off by default
    assert "gen_ai.system_instructions" not in attrs


def test_stream_span_stays_open_until_consumed_and_carries_usage(spans, server):
    stream = _client(server).messages.create(model=MODEL, max_tokens=64, messages=ASK, stream=True)
    assert _chats(spans) == []  # still open while the stream is unread
    events = list(stream)
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text.strip() == "It shipped."
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = next(e for e in events if e.type == "message_delta")
    (span,) = _chats(spans)
    assert span.attributes["gen_ai.request.stream"] is True
    inclusive = start.input_tokens + start.cache_read_input_tokens + start.cache_creation_input_tokens
    assert span.attributes["gen_ai.usage.input_tokens"] == inclusive > 0
    assert span.attributes["gen_ai.usage.output_tokens"] == delta.usage.output_tokens > start.output_tokens
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert span.status.status_code == StatusCode.UNSET


def test_stream_left_early_ends_its_span_without_error(spans, server):
    stream = _client(server).messages.create(model=MODEL, max_tokens=64, messages=ASK, stream=True)
    assert next(stream).type == "message_start"
    time.sleep(0.2)  # let the stand-in finish writing, so hanging up does not reset it mid-write
    stream.close()
    (span,) = _chats(spans)
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes["gen_ai.usage.input_tokens"] > 0  # message_start was read before closing
    assert "gen_ai.response.finish_reasons" not in span.attributes


def test_stream_helper_span_ends_when_the_stream_is_read(spans, server):
    _content.configure(enabled=True)
    with _client(server).messages.stream(model=MODEL, max_tokens=64, system=SYSTEM, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        (span,) = _chats(spans)  # ended with the last event, before the block exits
        final = stream.get_final_message()
    assert text.strip() == "It shipped."
    assert not _native(spans)
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.id"] == final.id
    assert span.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert json.loads(span.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": SYSTEM}]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}]}
    ]


def test_async_call_and_stream_helper_with_content_capture(spans, server):
    _content.configure(enabled=True)
    history: Any = [
        {"role": "user", "content": "Refund order 42."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking it up."},
                {"type": "tool_use", "id": "toolu_1", "name": "find_order", "input": {"order": 42}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"}],
        },
    ]
    client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="t")

    async def calls() -> str:
        await client.messages.create(model=MODEL, max_tokens=64, system="Be brief.", messages=history)
        async with client.messages.stream(model=MODEL, max_tokens=64, messages=ASK) as stream:
            return "".join([t async for t in stream.text_stream])

    streamed = asyncio.run(calls())
    call, helper = _chats(spans)
    assert not _native(spans)  # async create and the async stream() helper: one model span each
    system = json.loads(call.attributes["gen_ai.system_instructions"])
    assert system == [{"type": "text", "content": "Be brief."}]
    assert json.loads(call.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Refund order 42."}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Looking it up."},
                {"type": "tool_call", "id": "toolu_1", "name": "find_order", "arguments": {"order": 42}},
            ],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "toolu_1", "response": "shipped"}]},
    ]
    assert json.loads(call.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It shipped."}]}
    ]
    assert helper.attributes["gen_ai.request.stream"] is True
    assert json.loads(helper.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == streamed


def test_streamed_tool_use_is_rebuilt_from_its_json_deltas(spans):
    _content.configure(enabled=True)
    usage = {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_read_input_tokens": 2048,
        "cache_creation_input_tokens": 300,
    }
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    tool = {"type": "tool_use", "id": "toolu_9", "name": "refund", "input": {}}
    events = [
        RawMessageStartEvent.model_validate({"type": "message_start", "message": message}),
        RawContentBlockStartEvent.model_validate(
            {"type": "content_block_start", "index": 0, "content_block": tool}
        ),
        *(
            RawContentBlockDeltaEvent.model_validate(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                }
            )
            for part in ('{"order": ', "42}")
        ),
        RawMessageDeltaEvent.model_validate(
            {
                "type": "message_delta",
                "usage": {"output_tokens": 17},
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            }
        ),
    ]
    span = trace.get_tracer("tokentrail.anthropic").start_span(f"chat {MODEL}")
    assert list(_llm.StreamProxy(iter(events), span, _HOOKS.accumulator())) == events
    (done,) = _chats(spans)
    assert done.attributes["gen_ai.usage.input_tokens"] == 10 + 2048 + 300
    assert done.attributes["gen_ai.usage.cache_write.input_tokens"] == 300
    assert done.attributes["gen_ai.usage.output_tokens"] == 17
    assert done.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    (output,) = json.loads(done.attributes["gen_ai.output.messages"])
    call = {"type": "tool_call", "id": "toolu_9", "name": "refund", "arguments": {"order": 42}}
    assert output == {"role": "assistant", "parts": [call]}


def test_errors_pass_through_and_are_recorded(spans, server):
    server.fail_next(500)
    with pytest.raises(anthropic.InternalServerError) as raised:
        _client(server, max_retries=0).messages.create(model=MODEL, max_tokens=8, messages=ASK)
    (span,) = _chats(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "InternalServerError"
    (event,) = span.events
    assert event.name == "exception" and event.attributes["exception.message"] == str(raised.value)


def test_spans_nest_under_the_agent(spans, server):
    with tokentrail.agent("x"):
        _client(server).messages.create(model=MODEL, max_tokens=8, messages=ASK)
    (chat,) = _chats(spans)
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent x")
    assert chat.parent is not None and chat.parent.span_id == root.context.span_id
    assert chat.context.trace_id == root.context.trace_id
    # anthropic >= 2 traces its own calls; inside ours it does not, so a call is one model span
    assert not _native(spans)


def _native(spans) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.instrumentation_scope.name.startswith("com.anthropic")]


@pytest.mark.skipif(
    not hasattr(anthropic._base_client.BaseClient, "_tracer"), reason="this anthropic traces nothing itself"
)
def test_the_clients_own_spans_stay_for_calls_we_do_not_trace(spans, server):
    client = _client(server)
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.models.list()  # the stand-in serves messages only
    (listing,) = _native(spans)
    assert listing.attributes["http.response.status_code"] == refused.value.status_code
    spans.clear()
    AnthropicInstrumentor().uninstrument()
    try:
        client.messages.create(model=MODEL, max_tokens=8, messages=ASK)
        assert not _chats(spans) and len(_native(spans)) == 1  # switched back on with the rest
    finally:
        AnthropicInstrumentor().instrument()


def _http_retries(spans):
    found = [s for s in spans.get_finished_spans() if s.attributes.get("tokentrail.retry.layer") == "http"]
    return sorted(found, key=lambda s: s.start_time)


def test_the_clients_own_http_retries_are_spans_under_the_call(spans, server):
    server.fail_next(529, retry_after=0.02, times=2)
    message = _client(server).messages.create(model=MODEL, max_tokens=100, messages=ASK)
    (chat,) = _chats(spans)
    retries = _http_retries(spans)
    assert [r.attributes["tokentrail.retry.attempt"] for r in retries] == [1, 2]
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    for retry in retries:
        assert by_id[retry.parent.span_id] is chat
        assert retry.name == f"retry chat {MODEL}" and retry.status.status_code == StatusCode.ERROR
        assert retry.attributes["http.response.status_code"] == 529
        assert retry.attributes["tokentrail.retry.reason"] == "529 Overloaded"
        assert 0.02 <= retry.attributes["tokentrail.retry.wait_s"] < 0.3  # `retry-after-ms: 20`, honoured
    assert [link.context.span_id for link in retries[1].links] == [retries[0].context.span_id]
    assert retries[1].end_time <= chat.end_time and chat.status.status_code != StatusCode.ERROR
    assert chat.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens


def test_async_stream_retry_after_a_rate_limit(spans, server):
    async def run() -> str:
        server.fail_next(429, retry_after=0.01)
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="t")
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=ASK) as stream:
            return await stream.get_final_text()

    assert asyncio.run(run()).strip() == "It shipped."
    (retry,) = _http_retries(spans)
    (chat,) = _chats(spans)
    assert retry.attributes["tokentrail.retry.reason"] == "429 Too Many Requests"
    assert (
        retry.attributes["tokentrail.retry.attempt"] == 1 and retry.context.trace_id == chat.context.trace_id
    )
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
