"""The shared model-call helper, where no instrumentor test reaches: a stream that breaks mid-way,
and counts a provider leaves out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from anthropic.types import RawMessageStartEvent
from opentelemetry.trace import SpanKind, StatusCode

from tokentrail.instrumentation import _invocation, _llm
from tokentrail.instrumentation.anthropic import _HOOKS

USAGE = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 2048}


def _message_start() -> Any:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": USAGE,
    }
    return RawMessageStartEvent.model_validate({"type": "message_start", "message": message})


def test_a_stream_that_breaks_fails_the_call_and_keeps_the_usage_it_read(spans):
    dropped = ConnectionError("peer closed connection without sending complete message body")

    def events() -> Iterator[Any]:
        yield _message_start()
        raise dropped

    request = _invocation.Request(
        "chat", "anthropic", "claude-sonnet-4-6", server="https://api.anthropic.com"
    )
    span = _invocation.start("tokentrail.anthropic", request)
    read = []
    with pytest.raises(ConnectionError) as raised:
        for event in _llm.StreamProxy(events(), span, _HOOKS.accumulator()):
            read.append(event)
    assert raised.value is dropped and len(read) == 1

    (done,) = spans.get_finished_spans()
    assert done.name == "chat claude-sonnet-4-6" and done.kind == SpanKind.CLIENT
    assert done.attributes["server.address"] == "api.anthropic.com"
    assert done.attributes["server.port"] == 443
    assert done.status.status_code == StatusCode.ERROR
    assert done.status.description == str(dropped)
    assert done.attributes["error.type"] == "ConnectionError"
    (event,) = done.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ConnectionError"
    # billed for what was read before the break: the input, cache reads included
    assert done.attributes["gen_ai.usage.input_tokens"] == 10 + 2048
    assert done.attributes["gen_ai.usage.cache_read.input_tokens"] == 2048
    assert done.attributes["gen_ai.response.id"] == "msg_1"


def test_counts_a_provider_leaves_out_stay_unset(spans):
    span = _invocation.start("tokentrail.test", _invocation.Request("chat", "anthropic", "claude-haiku-4-5"))
    _invocation.set_usage(span, _invocation.anthropic_usage({"input_tokens": 12, "output_tokens": 3}))
    span.end()
    (done,) = spans.get_finished_spans()
    assert done.attributes["gen_ai.usage.input_tokens"] == 12
    assert done.attributes["gen_ai.usage.output_tokens"] == 3
    for missing in (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
    ):
        assert missing not in done.attributes
