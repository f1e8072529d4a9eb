"""The openai instrumentor with the real client against the local API stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.responses import Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.demo.llm_server import LLMServer
from tokentrail.instrumentation import _content, _http_retries
from tokentrail.instrumentation.openai import OpenAIInstrumentor, _record_responses_api

HISTORY = [
    {"role": "system", "content": "You are a support agent. " * 400},
    {"role": "user", "content": "Order 42?"},
]


@pytest.fixture
def server(spans) -> Iterator[LLMServer]:
    OpenAIInstrumentor().instrument()
    with LLMServer(reply="It shipped.") as srv:
        yield srv
    OpenAIInstrumentor().uninstrument()


def _client(server: LLMServer, **kw: Any) -> Any:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="t", **kw)


def _chats(spans):
    return [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]


def test_chat_completion_span_with_usage_and_cache(spans, server):
    client = _client(server)
    with tokentrail.agent("support"):
        client.chat.completions.create(model="gpt-4o-mini", messages=HISTORY, temperature=0.2)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[*HISTORY, {"role": "user", "content": "thx"}]
        )
    first, second = _chats(spans)
    assert first.name == "chat gpt-4o-mini" and first.kind == SpanKind.CLIENT
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert first.attributes["gen_ai.request.temperature"] == 0.2
    assert first.attributes["server.address"] == "127.0.0.1"
    assert second.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert (
        second.attributes["gen_ai.usage.cache_read.input_tokens"]
        == reply.usage.prompt_tokens_details.cached_tokens
        > 0
    )
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent support")
    assert first.parent.span_id == root.context.span_id
    assert "gen_ai.input.messages" not in first.attributes


def test_stream_span_ends_with_the_stream_and_carries_usage(spans, server):
    stream = _client(server).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert _chats(spans) == []  # still open while the stream is unread
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() == "It shipped."
    (span,) = _chats(spans)
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert span.attributes["gen_ai.request.stream"] is True


def test_async_call_and_content_capture(spans, server):
    _content.configure(enabled=True)
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t")
    asyncio.run(
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    )
    (span,) = _chats(spans)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello"}]}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "It shipped."


def test_errors_pass_through_and_are_recorded(spans, server):
    server.fail_next(429, retry_after=0.01, times=3)
    with pytest.raises(openai.RateLimitError):
        _client(server, max_retries=1).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    (span,) = _chats(spans)
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "RateLimitError"


def test_raw_response_calls_carry_usage(spans, server):
    """LangChain calls `with_raw_response.create`; the span must still have the usage, or the
    collector would bill the leaf call as nothing."""
    raw = _client(server).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    (span,) = _chats(spans)
    assert span.attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens > 0
    assert span.attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert span.attributes["gen_ai.response.id"] == completion.id


def test_responses_api_sync_and_stream(spans, server):
    client = _client(server)
    long_instructions = "You are a careful support agent. " * 300
    first = client.responses.create(
        model="gpt-4o", instructions=long_instructions, input="Where is order 42?"
    )
    second = client.responses.create(model="gpt-4o", instructions=long_instructions, input="And order 43?")
    assert first.output_text == "It shipped."
    one, two = _chats(spans)
    assert one.name == "chat gpt-4o" and one.attributes["gen_ai.operation.name"] == "chat"
    assert one.attributes["gen_ai.usage.input_tokens"] == first.usage.input_tokens > 0
    assert one.attributes["gen_ai.usage.output_tokens"] == first.usage.output_tokens
    assert one.attributes["gen_ai.response.id"] == first.id and one.attributes[
        "gen_ai.response.finish_reasons"
    ] == ("stop",)
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached > 0 and two.attributes["gen_ai.usage.cache_read.input_tokens"] == cached
    stream = client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    assert len(_chats(spans)) == 2  # open while the stream is unread
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text.strip() == "It shipped."
    streamed = _chats(spans)[2]
    assert (
        streamed.attributes["gen_ai.usage.output_tokens"] > 0
        and streamed.attributes["gen_ai.request.stream"] is True
    )


def test_responses_of_a_reasoning_model_report_reasoning_and_cached_tokens(spans, server):
    client = _client(server)
    instructions = "Answer as a careful support agent would. " * 300
    first = client.responses.create(
        model="o4-mini",
        instructions=instructions,
        input="Order 42?",
        reasoning={"effort": "low"},
        max_output_tokens=500,
    )
    stream = client.responses.create(
        model="o4-mini", instructions=instructions, input="Order 43?", stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    final = events[-1].response
    one, two = _chats(spans)
    assert first.usage.output_tokens_details.reasoning_tokens > 0
    assert (
        one.attributes["gen_ai.usage.reasoning.output_tokens"]
        == first.usage.output_tokens_details.reasoning_tokens
    )
    assert one.attributes["gen_ai.usage.output_tokens"] == first.usage.output_tokens  # reasoning included
    assert one.attributes["gen_ai.request.max_tokens"] == 500
    assert one.attributes["gen_ai.usage.cache_read.input_tokens"] == 0
    # the streamed call shares the long instructions: its usage, from `response.completed`, has them cached
    assert two.attributes["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert (
        two.attributes["gen_ai.usage.cache_read.input_tokens"]
        == final.usage.input_tokens_details.cached_tokens
        > 0
    )
    assert (
        two.attributes["gen_ai.usage.reasoning.output_tokens"]
        == final.usage.output_tokens_details.reasoning_tokens
    )
    assert (
        final.usage.output_tokens_details.reasoning_tokens
        > first.usage.output_tokens_details.reasoning_tokens
    )
    assert (
        two.attributes["gen_ai.response.id"] == final.id
        and two.attributes["gen_ai.response.model"] == "o4-mini"
    )


def test_async_responses_with_content_capture(spans, server):
    _content.configure(enabled=True)

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t")
        await client.responses.create(
            model="gpt-4o",
            instructions="Be brief.",
            input=[{"role": "user", "content": "Where is order 42?"}],
        )
        return await client.responses.create(model="gpt-4o", input="again")

    last = asyncio.run(run())
    one, two = _chats(spans)
    assert json.loads(one.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Where is order 42?"}]}
    ]
    assert one.attributes["gen_ai.system_instructions"] == "Be brief."
    assert json.loads(two.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == last.output_text
    assert two.attributes["gen_ai.usage.input_tokens"] == last.usage.input_tokens


def test_responses_usage_mapping_for_what_the_stand_in_does_not_send(spans):
    """Cache writes and tool-call endings come from the real API only: the mapping on a parsed response."""
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-5",
            "status": "completed",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "refund",
                    "arguments": "{}",
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 3000,
                "output_tokens": 40,
                "total_tokens": 3040,
                "input_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 512},
                "output_tokens_details": {"reasoning_tokens": 32},
            },
        }
    )
    span = trace.get_tracer("tokentrail.openai").start_span("chat gpt-5")
    _record_responses_api(span, response)
    span.end()
    (done,) = _chats(spans)
    assert done.attributes["gen_ai.usage.input_tokens"] == 3000
    assert done.attributes["gen_ai.usage.cache_read.input_tokens"] == 2048
    assert done.attributes["gen_ai.usage.cache_write.input_tokens"] == 512
    assert done.attributes["gen_ai.usage.reasoning.output_tokens"] == 32
    assert done.attributes["gen_ai.response.finish_reasons"] == ("tool_call",)


def test_embeddings_span_with_input_tokens(spans, server):
    client = _client(server)
    result = client.embeddings.create(
        model="text-embedding-3-small", input=["refund policy", "shipping times"]
    )
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("embeddings ")]
    assert span.name == "embeddings text-embedding-3-small" and span.kind == SpanKind.CLIENT
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    assert span.attributes["gen_ai.response.model"] == "text-embedding-3-small"
    again = client.embeddings.create(model="text-embedding-3-small", input="refund policy")
    assert again.data[0].embedding == result.data[0].embedding  # deterministic vectors
    asyncio.run(
        openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t").embeddings.create(
            model="text-embedding-3-small", input="x"
        )
    )
    assert len([s for s in spans.get_finished_spans() if s.name.startswith("embeddings ")]) == 3


def _retries(spans, name: str = "retry chat gpt-4o"):
    found = [s for s in spans.get_finished_spans() if s.name == name]
    return sorted(found, key=lambda s: (s.start_time, s.attributes["tokentrail.retry.attempt"]))


def test_the_clients_own_http_retries_are_spans_under_the_call(spans, server):
    server.fail_next(429, retry_after=0.01, times=2)
    reply = _client(server).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    (chat,) = _chats(spans)
    retries = _retries(spans)
    assert [s.attributes["tokentrail.retry.attempt"] for s in retries] == [1, 2]
    for retry in retries:
        assert (
            retry.parent.span_id == chat.context.span_id and retry.context.trace_id == chat.context.trace_id
        )
        assert (
            retry.attributes["http.response.status_code"] == 429 and retry.attributes["error.type"] == "429"
        )
        assert retry.attributes["tokentrail.retry.reason"] == "429 Too Many Requests"
        assert retry.attributes["tokentrail.step.kind"] == "retry"
        assert retry.attributes["tokentrail.retry.layer"] == "http"
        # the client honoured `retry-after-ms: 10` instead of its own backoff (0.5 s and up)
        assert 0.01 <= retry.attributes["tokentrail.retry.wait_s"] < 0.2
        assert retry.status.status_code == StatusCode.ERROR
        assert retry.start_time >= chat.start_time
    first, second = retries
    assert first.end_time <= second.start_time <= second.end_time <= chat.end_time
    assert not first.links
    assert [link.context.span_id for link in second.links] == [first.context.span_id]
    assert second.attributes["tokentrail.retry.first_span_id"] == format(first.context.span_id, "016x")
    assert chat.status.status_code != StatusCode.ERROR  # the call itself succeeded
    assert chat.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens > 0
    assert chat.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens > 0
    assert len([p for p, _ in server.requests if p.endswith("/chat/completions")]) == 3


def test_a_server_error_then_success_with_the_clients_own_backoff(spans, server):
    server.fail_next(500)
    _client(server).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "again"}])
    (retry,) = _retries(spans)
    assert retry.attributes["tokentrail.retry.attempt"] == 1
    assert retry.attributes["http.response.status_code"] == 500
    assert retry.attributes["tokentrail.retry.reason"] == "500 Internal Server Error"
    # no retry-after: the client's exponential backoff, 0.5 s less up to 25 % jitter
    assert 0.375 <= retry.attributes["tokentrail.retry.wait_s"] < 0.7
    (chat,) = _chats(spans)
    assert retry.parent.span_id == chat.context.span_id and chat.attributes["gen_ai.usage.input_tokens"] > 0


def test_async_and_streamed_calls_retry_visibly_too(spans, server):
    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t")
        server.fail_next(503, retry_after=0.01)
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
        server.fail_next(429, retry_after=0.01)
        stream = await client.responses.create(model="gpt-4o-mini", input="b", stream=True)
        return "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])

    assert asyncio.run(run()).strip() == "It shipped."
    chat, streamed = _chats(spans)
    (chat_retry,) = _retries(spans)
    (stream_retry,) = _retries(spans, "retry chat gpt-4o-mini")
    assert chat_retry.attributes["tokentrail.retry.reason"] == "503 Service Unavailable"
    assert chat_retry.parent.span_id == chat.context.span_id
    assert stream_retry.attributes["http.response.status_code"] == 429
    assert stream_retry.parent.span_id == streamed.context.span_id
    assert streamed.attributes["gen_ai.usage.output_tokens"] > 0


def test_retries_that_run_out_leave_every_attempt_and_the_error(spans, server):
    server.fail_next(429, retry_after=0.01, times=3)
    with pytest.raises(openai.RateLimitError):
        _client(server, max_retries=2).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    (chat,) = _chats(spans)
    assert [s.attributes["tokentrail.retry.attempt"] for s in _retries(spans)] == [
        1,
        2,
    ]  # the third failure is the call's
    assert chat.status.status_code == StatusCode.ERROR and chat.attributes["error.type"] == "RateLimitError"


def test_a_timeout_retry_names_the_error(spans):
    OpenAIInstrumentor().instrument()
    try:
        with LLMServer(reply="late", latency=0.4) as slow:
            client = openai.OpenAI(base_url=f"{slow.base_url}/v1", api_key="t", timeout=0.1, max_retries=1)
            with pytest.raises(openai.APITimeoutError):
                client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    finally:
        OpenAIInstrumentor().uninstrument()
    (retry,) = _retries(spans)
    assert retry.attributes["tokentrail.retry.reason"].startswith("ReadTimeout")
    assert (
        retry.attributes["error.type"] == "ReadTimeout"
        and "http.response.status_code" not in retry.attributes
    )


def test_retries_of_calls_we_do_not_model_are_named_by_their_request(spans, server):
    client = _client(server)
    server.fail_next(429, retry_after=0.01)
    with pytest.raises(openai.NotFoundError):  # the stand-in has no legacy completions
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    assert [
        s for s in spans.get_finished_spans() if s.name.startswith("retry")
    ] == []  # untraced: no orphan spans
    server.fail_next(429, retry_after=0.01)
    with tokentrail.agent("support"), pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    (retry,) = [s for s in spans.get_finished_spans() if s.name.startswith("retry")]
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent support")
    assert retry.name == "retry POST /completions" and retry.parent.span_id == root.context.span_id


def test_our_failures_never_break_the_clients_retries(spans, server, monkeypatch):
    def broken(*args: Any) -> str:
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(_http_retries, "_call_name", broken)
    server.fail_next(429, retry_after=0.01)
    reply = _client(server).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "It shipped."
    assert _retries(spans) == [] and len(_chats(spans)) == 1


def test_uninstrument_restores_the_retry_loop(spans):
    import openai._base_client as base

    OpenAIInstrumentor().instrument()
    assert hasattr(base.SyncAPIClient._sleep_for_retry, "__wrapped__")
    OpenAIInstrumentor().uninstrument()
    assert not hasattr(base.SyncAPIClient._sleep_for_retry, "__wrapped__")
    assert not hasattr(base.AsyncAPIClient._build_request, "__wrapped__")
