"""A LangChain model run as a GenAI model call: the request from what the start callback is told,
the response from the `LLMResult` the end callback gets.

LangChain hands the callbacks the model's `invocation_params` (each integration's own parameter
names) and `ls_*` metadata (`ls_provider`, `ls_model_name`, `ls_temperature`, `ls_max_tokens`,
`ls_stop`, the same names for every integration); the parameters are read first. Usage comes from
the standardized `usage_metadata` of the output message (its input includes cache reads), else from
the integration's `llm_output` (`token_usage` in OpenAI's shape, `usage` in Anthropic's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _invocation, _llm
from tokentrail.instrumentation._invocation import Usage, as_count
from tokentrail.instrumentation.langchain._messages import finish_reason, first, output_messages
from tokentrail.providers import otel_name

__all__ = ["record_result", "request"]

# LangChain's `ls_provider` values → `gen_ai.provider.name` values
_PARAMS = {
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_SEED: "seed",
    sc.GEN_AI_REQUEST_STREAM: "stream",
}


def _provider(metadata: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    raw = metadata.get("ls_provider") or str(params.get("_type") or "").split("-", 1)[0]
    if not raw:
        return None
    return otel_name(str(raw)) or None


def _request_params(params: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    attributes = _llm.scalars(params, _PARAMS)
    max_tokens = first(params, ("max_tokens", "max_completion_tokens", "max_output_tokens"))
    max_tokens = max_tokens if max_tokens is not None else metadata.get("ls_max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    if sc.GEN_AI_REQUEST_TEMPERATURE not in attributes and isinstance(
        metadata.get("ls_temperature"), (int, float)
    ):
        attributes[sc.GEN_AI_REQUEST_TEMPERATURE] = metadata["ls_temperature"]
    stop = params.get("stop") or metadata.get("ls_stop")
    if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    return attributes


def request(
    serialized: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
    kwargs: Mapping[str, Any],
    operation: str,
    messages: list[dict[str, Any]] | None,
) -> _invocation.Request:
    """The model call a chat model or LLM run starts; `messages` only when content is captured."""
    params = kwargs.get("invocation_params") or {}
    model = (
        first(params, ("model", "model_name", "model_id", "deployment_name"))
        or metadata.get("ls_model_name")
        or first((serialized or {}).get("kwargs"), ("model", "model_name"))
        or ""
    )
    return _invocation.Request(
        operation,
        _provider(metadata, params),
        str(model),
        params=_request_params(params, metadata),
        messages=messages,
    )


def _usage(generations: Sequence[Any], llm_output: Mapping[str, Any]) -> Usage | None:
    for generation in generations:
        meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if meta:  # LangChain's standard: input_tokens already includes the cached parts
            details_in = meta.get("input_token_details") or {}
            details_out = meta.get("output_token_details") or {}
            return Usage(
                input_tokens=as_count(meta.get("input_tokens")),
                output_tokens=as_count(meta.get("output_tokens")),
                cache_read=as_count(details_in.get("cache_read")),
                cache_write=as_count(details_in.get("cache_creation")),
                reasoning=as_count(details_out.get("reasoning")),
            )
    raw = llm_output.get("token_usage") or llm_output.get("usage")
    if not isinstance(raw, Mapping):
        return None
    if "prompt_tokens" in raw:
        return _invocation.openai_usage(raw, chat=True)
    return _invocation.anthropic_usage(raw)


def record_result(span: Any, response: Any) -> None:
    """Usage, response model, id and finish reasons, and the output when content is captured."""
    generations: list[Any] = list((getattr(response, "generations", None) or [[]])[0] or [])
    llm_output: Mapping[str, Any] = getattr(response, "llm_output", None) or {}
    usage = _usage(generations, llm_output)
    if usage is not None:
        _invocation.set_usage(span, usage)
    metadata: Mapping[str, Any] = next(
        (m for g in generations if (m := getattr(getattr(g, "message", None), "response_metadata", None))), {}
    )
    model = first(metadata, ("model_name", "model")) or first(llm_output, ("model_name", "model"))
    ident = first(metadata, ("id",)) or first(llm_output, ("id",))
    finish = [reason for g in generations if (reason := finish_reason(g))]
    _invocation.set_response(span, model=model, ident=ident, finish=finish)
    if _content.capturing():
        _invocation.set_messages(span, output=output_messages(generations))
