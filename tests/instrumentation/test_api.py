from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import tokentrail
from tokentrail.instrumentation import _content


def _by_name(spans):
    return {s.name: s for s in spans.get_finished_spans()}


def test_an_agent_run_becomes_a_span_tree(spans):
    with tokentrail.agent("support", conversation_id="conv-9", user_id="u-1", task_type="refund"):
        with tokentrail.plan("support"):
            pass
        with tokentrail.llm("gpt-4o", provider="openai") as call:
            call.set_usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1000)
            call.set_response(model="gpt-4o-2024-08-06", id="chatcmpl-1", finish_reasons=["tool_call"])
        with tokentrail.tool("lookup_order", call_id="call_1", arguments={"id": 42}):
            pass
    got = _by_name(spans)
    root = got["invoke_agent support"]
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["tokentrail.task.type"] == "refund"
    chat = got["chat gpt-4o"]
    assert chat.kind == SpanKind.CLIENT
    assert chat.parent.span_id == root.context.span_id
    assert chat.attributes["gen_ai.usage.input_tokens"] == 1200
    assert chat.attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("tool_call",)
    assert got["plan support"].attributes["tokentrail.step.kind"] == "plan"
    tool = got["execute_tool lookup_order"]
    assert tool.attributes["gen_ai.tool.call.id"] == "call_1"
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # content capture is off by default
    for span in (root, chat, tool):
        assert span.attributes["gen_ai.conversation.id"] == "conv-9"
        assert span.attributes["user.id"] == "u-1"


def test_decorators_sync_and_async_and_exceptions_pass_through(spans):
    class Boom(Exception):
        pass

    error = Boom("no stock")

    @tokentrail.tool("reserve")
    def reserve() -> None:
        raise error

    @tokentrail.agent("async-agent")
    async def run() -> int:
        return 7

    with pytest.raises(Boom) as caught:
        reserve()
    assert caught.value is error
    assert asyncio.run(run()) == 7
    got = _by_name(spans)
    failed = got["execute_tool reserve"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"].endswith("Boom")
    assert [e.name for e in failed.events] == ["exception"]
    assert got["invoke_agent async-agent"].status.status_code == StatusCode.UNSET


def test_content_capture_caps_and_redaction(spans):
    _content.configure(enabled=True, max_chars=60, redact=lambda text: text.replace("secret", "[redacted]"))
    with tokentrail.tool("search", arguments={"q": "secret plans"}) as step:
        step.set_result("x" * 100)
    with tokentrail.llm("gpt-4o", provider="openai") as call:
        call.set_messages(input=[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    got = _by_name(spans)
    args = got["execute_tool search"].attributes["gen_ai.tool.call.arguments"]
    assert json.loads(args) == {"q": "[redacted] plans"}
    result = got["execute_tool search"].attributes["gen_ai.tool.call.result"]
    assert result.startswith("x" * 60) and "truncated 40 chars" in result
    assert json.loads(got["chat gpt-4o"].attributes["gen_ai.input.messages"])[0]["role"] == "user"


def test_a_failing_redactor_drops_the_value_and_never_breaks_the_host(spans):
    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    _content.configure(enabled=True, redact=broken)
    with tokentrail.tool("search", arguments={"q": "x"}) as step:
        step.set_result("y")
    span = _by_name(spans)["execute_tool search"]
    assert "gen_ai.tool.call.arguments" not in span.attributes
    assert "gen_ai.tool.call.result" not in span.attributes


def test_retrying_makes_one_span_per_attempt_linked_to_the_first(spans):
    calls: list[Exception | str] = [TimeoutError("slow"), ConnectionError("reset"), "ok"]

    def flaky() -> str:
        outcome = calls.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert tokentrail.retrying(flaky, name="fetch", attempts=3) == "ok"
    attempts = sorted(
        (s for s in spans.get_finished_spans() if s.name == "retry fetch"),
        key=lambda s: s.attributes["tokentrail.retry.attempt"],
    )
    assert [s.attributes["tokentrail.retry.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert attempts[1].attributes["tokentrail.retry.reason"] == "TimeoutError: slow"
    assert attempts[2].attributes["tokentrail.retry.reason"] == "ConnectionError: reset"
    first_id = attempts[0].context.span_id
    assert all(s.links[0].context.span_id == first_id for s in attempts[1:])

    with pytest.raises(ValueError):
        tokentrail.retrying(lambda: int("x"), name="parse", attempts=2)
    assert len([s for s in spans.get_finished_spans() if s.name == "retry parse"]) == 2


def test_outcomes_inline_and_late(spans):
    with tokentrail.agent("support"):
        tokentrail.record_outcome("ticket_resolved", success=True, value=1)
    tokentrail.record_outcome("pr_merged", success=False, task_id="TASK-7")
    got = _by_name(spans)
    root = got["invoke_agent support"]
    assert root.attributes["tokentrail.outcome.success"] is True
    assert [e.name for e in root.events] == ["tokentrail.outcome"]
    late = got["outcome pr_merged"]
    assert late.attributes["tokentrail.task.id"] == "TASK-7"
    assert late.attributes["tokentrail.outcome.success"] is False
    assert late.parent is None


def test_long_structured_content_is_cut_inside_and_stays_valid_json():
    import json

    from tokentrail.instrumentation._content import ContentPolicy

    policy = ContentPolicy(enabled=True, max_chars=2000)
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": "short question"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "x" * 50_000}]},
    ]
    text = policy.prepare(messages)
    assert text is not None and len(text) <= 2000
    parsed = json.loads(text)
    assert parsed[0]["parts"][0]["content"] == "short question"  # short strings untouched
    cut = parsed[1]["parts"][0]["response"]
    assert cut.startswith("xxx") and "truncated" in cut and len(cut) < 2000
    assert (policy.prepare("y" * 5000) or "").endswith("chars]")  # plain text: cut at the end as before
