"""The openai instrumentor with the real client against the local API stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.demo.llm_server import LLMServer
from tokentrail.instrumentation import _content
from tokentrail.instrumentation.openai import OpenAIInstrumentor

HISTORY = [{"role": "system", "content": "You are a support agent. " * 400}, {"role": "user", "content": "Order 42?"}]


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
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[*HISTORY, {"role": "user", "content": "thx"}])
    first, second = _chats(spans)
    assert first.name == "chat gpt-4o-mini" and first.kind == SpanKind.CLIENT
    assert first.attributes["gen_ai.provider.name"] == "openai"
    assert first.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert first.attributes["gen_ai.request.temperature"] == 0.2
    assert first.attributes["server.address"] == "127.0.0.1"
    assert second.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert second.attributes["gen_ai.usage.cache_read.input_tokens"] == reply.usage.prompt_tokens_details.cached_tokens > 0
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    root = next(s for s in spans.get_finished_spans() if s.name == "invoke_agent support")
    assert first.parent.span_id == root.context.span_id
    assert "gen_ai.input.messages" not in first.attributes


def test_stream_span_ends_with_the_stream_and_carries_usage(spans, server):
    stream = _client(server).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
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
    asyncio.run(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}]))
    (span,) = _chats(spans)
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello"}]}
    ]
    assert json.loads(span.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "It shipped."


def test_errors_pass_through_and_are_recorded(spans, server):
    server.fail_next(429, retry_after=0.01, times=3)
    with pytest.raises(openai.RateLimitError):
        _client(server, max_retries=1).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
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
    first = client.responses.create(model="gpt-4o", instructions=long_instructions, input="Where is order 42?")
    second = client.responses.create(model="gpt-4o", instructions=long_instructions, input="And order 43?")
    assert first.output_text == "It shipped."
    one, two = _chats(spans)
    assert one.name == "chat gpt-4o" and one.attributes["gen_ai.operation.name"] == "chat"
    assert one.attributes["gen_ai.usage.input_tokens"] == first.usage.input_tokens > 0
    assert one.attributes["gen_ai.usage.output_tokens"] == first.usage.output_tokens
    assert one.attributes["gen_ai.response.id"] == first.id and one.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached > 0 and two.attributes["gen_ai.usage.cache_read.input_tokens"] == cached
    stream = client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    assert len(_chats(spans)) == 2  # open while the stream is unread
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text.strip() == "It shipped."
    streamed = _chats(spans)[2]
    assert streamed.attributes["gen_ai.usage.output_tokens"] > 0 and streamed.attributes["gen_ai.request.stream"] is True


def test_embeddings_span_with_input_tokens(spans, server):
    client = _client(server)
    result = client.embeddings.create(model="text-embedding-3-small", input=["refund policy", "shipping times"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("embeddings ")]
    assert span.name == "embeddings text-embedding-3-small" and span.kind == SpanKind.CLIENT
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens > 0
    asyncio.run(openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t").embeddings.create(
        model="text-embedding-3-small", input="x"))  # fmt: skip
    assert len([s for s in spans.get_finished_spans() if s.name.startswith("embeddings ")]) == 2


def test_the_clients_own_http_retries_are_spans_under_the_call(spans, server):
    server.fail_next(429, retry_after=0.05, times=2)
    reply = _client(server).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    (chat,) = _chats(spans)
    retries = sorted((s for s in spans.get_finished_spans() if s.name == "retry chat gpt-4o"),
                     key=lambda s: s.attributes["tokentrail.retry.attempt"])  # fmt: skip
    assert [s.attributes["tokentrail.retry.attempt"] for s in retries] == [1, 2]
    for retry in retries:
        assert retry.parent.span_id == chat.context.span_id
        assert retry.attributes["http.response.status_code"] == 429
        assert retry.attributes["tokentrail.retry.reason"] == "429 Too Many Requests"
        assert retry.attributes["tokentrail.retry.wait_s"] >= 0.04  # the client honoured retry-after
        assert retry.status.status_code == StatusCode.ERROR
    assert retries[0].end_time <= retries[1].start_time <= retries[1].end_time <= chat.end_time
    assert chat.status.status_code != StatusCode.ERROR  # the call itself succeeded
    assert chat.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    server.fail_next(500, times=1)
    asyncio.run(openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="t").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "again"}]))  # fmt: skip
    (async_retry,) = [s for s in spans.get_finished_spans() if s.name == "retry chat gpt-4o"
                      and s.attributes["http.response.status_code"] == 500]  # fmt: skip
    assert async_retry.attributes["tokentrail.retry.attempt"] == 1
