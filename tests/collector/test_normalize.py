from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.conventions import CASES, ConventionCase, check
from tokentrail.collector.normalize import normalize
from tokentrail.providers import catalog_id


def _events(case: ConventionCase) -> list[tuple[str, dict[str, Any]]]:
    return [("exception", {"exception.type": "openai.RateLimitError"})] if case.error else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_convention_normalizes(case: ConventionCase):
    n = normalize(
        case.span_name,
        case.attributes,
        case.resource,
        is_error=case.error,
        events=_events(case),
        client=case.client,
    )
    check(n, case.expected)


def test_anthropic_style_exclusive_input_becomes_inclusive():
    case = next(c for c in CASES if c.name == "claude-code-llm-request")
    n = normalize(case.span_name, case.attributes, case.resource)
    assert n.input_tokens == 100 + 30 + 20


def test_flattened_messages_sort_numerically():
    attrs = {f"llm.input_messages.{i}.message.role": "user" for i in range(12)}
    attrs |= {f"llm.input_messages.{i}.message.content": f"m{i}" for i in range(12)}
    messages = json.loads(normalize("llm", {"openinference.span.kind": "LLM", **attrs}, {}).input_messages)
    assert [m["parts"][0]["content"] for m in messages] == [f"m{i}" for i in range(12)]


def test_tool_args_hash_ignores_key_order_but_not_values_or_tool():
    def h(name: str, args: str) -> int:
        return normalize(
            "t", {"gen_ai.tool.name": name, "gen_ai.tool.call.arguments": args}, {}
        ).tool_args_hash

    assert h("search", '{"q": "x", "n": 3}') == h("search", '{"n": 3, "q": "x"}') != 0
    assert h("search", '{"q": "x", "n": 3}') != h("search", '{"q": "y", "n": 3}')
    assert h("search", '{"q": "x"}') != h("lookup", '{"q": "x"}')
    assert normalize("t", {"gen_ai.tool.name": "search"}, {}).tool_args_hash == 0


def test_input_hash_is_equal_for_the_same_request_only():
    def h(model: str, content: str) -> int:
        msgs = [{"role": "user", "parts": [{"type": "text", "content": content}]}]
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.input.messages": msgs,
        }
        return normalize("chat", attrs, {}).input_hash

    assert h("gpt-4o", "hi") == h("gpt-4o", "hi") != 0
    assert h("gpt-4o", "hi") != h("gpt-4o", "hello")
    assert h("gpt-4o", "hi") != h("gpt-4o-mini", "hi")
    assert normalize("chat", {"gen_ai.operation.name": "chat"}, {}).input_hash == 0


def test_provider_aliases_and_frameworks():
    def p(value: str) -> str:
        return normalize("c", {"gen_ai.operation.name": "chat", "gen_ai.system": value}, {}).provider

    assert [
        p(v) for v in ("Anthropic", "MistralAI", "az.ai.openai", "vertex_ai", "gemini", "xai", "AWS")
    ] == [
        "anthropic",
        "mistral_ai",
        "azure.ai.openai",
        "gcp.vertex_ai",
        "gcp.gemini",
        "x_ai",
        "aws.bedrock",
    ]
    assert p("langchain") == p("crewai") == ""


def test_a_provider_has_one_name_whichever_emitter_named_it():
    """OpenInference passes LangChain's `ls_provider` through (`ibm`, `google_genai`), OpenLLMetry
    names Together `together_ai`, the SDK's LangChain instrumentor sends OTel's names: one provider,
    one stored name, which the price catalog knows."""

    def stored(key: str, value: str) -> str:
        return normalize("c", {"gen_ai.operation.name": "chat", key: value}, {}).provider

    same = {
        "ibm.watsonx.ai": [("llm.provider", "ibm"), ("gen_ai.provider.name", "ibm.watsonx.ai")],
        "gcp.gen_ai": [("llm.provider", "google_genai"), ("llm.provider", "google")],
        "gcp.vertex_ai": [("llm.provider", "google_vertexai"), ("gen_ai.system", "vertexai")],
        "aws.bedrock": [("llm.provider", "bedrock_converse"), ("llm.provider", "amazon_bedrock")],
        "together": [("gen_ai.provider.name", "together_ai"), ("llm.provider", "together")],
    }
    for name, sent in same.items():
        assert [stored(key, value) for key, value in sent] == [name] * len(sent)
    assert catalog_id("together") == "together" and catalog_id("gcp.gen_ai") == "google"


def test_only_providers_whose_own_usage_leaves_out_cache_get_it_added():
    """OpenLIT passes the provider's own usage through: Anthropic's input leaves out cached tokens,
    OpenAI's includes them."""

    def openlit(provider: str) -> int:
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": provider,
            "gen_ai.request.model": "m",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.cache_read_input_tokens": 40,
            "gen_ai.usage.output_tokens": 10,
            "gen_ai.usage.cost": 0.0,
        }
        return normalize("chat m", attrs, {"telemetry.sdk.name": "openlit"}).input_tokens

    assert [openlit("anthropic"), openlit("Anthropic"), openlit("openai")] == [140, 140, 100]


def test_garbage_degrades_to_empty_fields():
    n = normalize(
        "x",
        {
            "gen_ai.usage.input_tokens": "many",
            "gen_ai.usage.output_tokens": -5,
            "gen_ai.input.messages": "{not json",
            "gen_ai.response.finish_reasons": 7,
        },
        {},
    )
    assert (n.input_tokens, n.output_tokens) == (0, 0)
    assert n.input_messages == "{not json"
    assert n.finish_reasons == ["7"]


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_keys = st.sampled_from(
    [
        "gen_ai.operation.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "llm.token_count.prompt",
        "gen_ai.input.messages",
        "llm.input_messages.0.message.role",
        "llm.input_messages.0.message.content",
        "gen_ai.prompt.0.role",
        "gen_ai.tool.call.arguments",
        "openinference.span.kind",
        "gen_ai.system",
        "tokentrail.step.kind",
        "attempt",
        "input_tokens",
        "cache_read_tokens",
        "gen_ai.response.finish_reasons",
        "llm.cost.total",
        "traceloop.span.kind",
    ]
) | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_keys, _values, max_size=12),
    st.dictionaries(_keys, _values, max_size=4),
    st.text(max_size=30),
)
def test_normalize_never_raises_and_counts_are_never_negative(attrs, resource, name):
    n = normalize(name, attrs, resource)
    for count in (
        n.input_tokens,
        n.output_tokens,
        n.cache_read_tokens,
        n.cache_write_tokens,
        n.reasoning_tokens,
    ):
        assert isinstance(count, int) and count >= 0
    assert 0 <= n.tool_args_hash < 2**64 and 0 <= n.input_hash < 2**64
    assert n.step_kind in ("agent", "plan", "llm", "tool", "retry", "retrieval", "embedding", "other")


def test_requested_tool_calls_hash_like_the_tool_spans_that_run_them():
    """A run whose tools leave no spans is looped through the tool calls its model asked for: they
    hash as a tool span with the same name and arguments does, whatever the key order."""
    output = [
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "c1", "name": "search", "arguments": {"q": "blender", "n": 3}}
            ],
        }
    ]
    asked = normalize(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "m",
            "gen_ai.output.messages": json.dumps(output),
        },
        {},
    )
    ran = normalize(
        "t", {"gen_ai.tool.name": "search", "gen_ai.tool.call.arguments": '{"n": 3, "q": "blender"}'}, {}
    )
    assert asked.requested_tools == [ran.tool_args_hash] != [0]
    assert (
        normalize("chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, {}).requested_tools
        == []
    )


def test_the_same_system_prompt_is_the_same_kind_of_step():
    def system(attrs: dict[str, Any]) -> int:
        return normalize(
            "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", **attrs}, {}
        ).system_hash

    instructions = json.dumps([{"type": "text", "content": "Classify the ticket."}])
    as_message = json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": "Classify the ticket."}]},
            {"role": "user", "parts": [{"type": "text", "content": "Refund please"}]},
        ]
    )
    assert system({"gen_ai.system_instructions": instructions}) != 0
    assert (
        system({"gen_ai.input.messages": as_message})
        == system({"gen_ai.input.messages": as_message.replace("Refund please", "Where is my parcel")})
        != 0
    )
    assert system({}) == 0


def test_messages_without_content_do_not_look_alike():
    """With content capture off, messages keep their structure only: every request would hash the
    same, so none gets an input hash (no duplicate can be told then)."""
    bare = json.dumps([{"role": "user", "parts": [{"type": "text"}]}])
    n = normalize(
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.input.messages": bare},
        {},
    )
    assert n.input_hash == 0
