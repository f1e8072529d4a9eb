"""The model-API stand-in, driven by the real openai and anthropic client libraries."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tokentrail.demo.llm_server import LLMServer


@pytest.fixture
def server():
    with LLMServer(reply="Order 42 shipped yesterday.") as srv:
        yield srv


def _openai(server: LLMServer, **kw: Any) -> Any:  # the tests read fields the stand-in always sends
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="test", **kw)


def test_openai_chat_with_usage_and_prompt_caching(server):
    client = _openai(server)
    history = [
        {"role": "system", "content": "You are a support agent. " * 400},
        {"role": "user", "content": "Where is order 42?"},
    ]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    assert first.choices[0].message.content == "Order 42 shipped yesterday."
    assert first.model == "gpt-4o-mini-2024-07-18"
    assert first.usage.prompt_tokens > 2000
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    again = client.chat.completions.create(
        model="gpt-4o-mini", messages=[*history, {"role": "user", "content": "thanks"}]
    )
    cached = again.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0
    assert again.usage.prompt_tokens > first.usage.prompt_tokens > cached
    same = client.chat.completions.create(model="gpt-4o-mini", messages=history)
    assert same.usage.prompt_tokens == first.usage.prompt_tokens


def test_openai_stream_ends_with_usage(server):
    stream = _openai(server).chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Order 42 shipped yesterday."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_client_retries_scripted_429_and_500(server):
    server.fail_next(429, retry_after=0.01)
    server.fail_next(500, retry_after=0.01)
    reply = _openai(server, max_retries=2).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert len(server.requests) == 3
    server.fail_next(429, retry_after=0.01, times=5)
    with pytest.raises(openai.RateLimitError):
        _openai(server, max_retries=1).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )


def test_anthropic_messages_plain_stream_and_cache(server):
    client: Any = anthropic.Anthropic(base_url=server.base_url, api_key="test")
    system = "Policy: refunds within 30 days. " * 300
    first = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": "refund?"}],
    )
    assert first.content[0].text == "Order 42 shipped yesterday."
    assert first.usage.cache_read_input_tokens == 0
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": "refund now?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() == "Order 42 shipped yesterday."
    assert final.usage.cache_read_input_tokens >= 1024
    # Anthropic semantics: input_tokens excludes the cached part
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens > first.usage.input_tokens
    server.fail_next(529, retry_after=0.01)
    retried: Any = anthropic.Anthropic(
        base_url=server.base_url, api_key="test", max_retries=1
    ).messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert retried.stop_reason == "end_turn"
