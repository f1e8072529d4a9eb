"""openai: a `chat {model}` span for every chat completion and every Responses API call, and an
`embeddings {model}` span for every embeddings call; sync, async and streaming.

Usage comes from the response, or from the final chunk (chat) or `response.completed` event
(Responses) of a stream; input tokens are OpenAI's `prompt_tokens` / `input_tokens`, which include
the cached part (OTel semantics). A stream is wrapped so the span ends when the stream is consumed,
closed or left; everything else about it is unchanged.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _http_retries, _llm
from tokentrail.instrumentation._safe import safely

__all__ = ["OpenAIInstrumentor"]

_instruments = ("openai >= 1.40",)
_MODULE = "openai.resources.chat.completions"
_RESPONSES = "openai.resources.responses"
_EMBEDDINGS = "openai.resources.embeddings"
_PARAMS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_STREAM: "stream",
}


def _messages(messages: Any) -> list[dict[str, Any]]:
    out = []
    # Lists only: a generator given as `messages` would be used up here and sent empty.
    for m in messages if isinstance(messages, (list, tuple)) else ():
        content = m.get("content") if isinstance(m, dict) else None
        role = m.get("role", "user") if isinstance(m, dict) else "user"
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            parts.extend(
                {"type": "text", "content": p.get("text", "")} for p in content if isinstance(p, dict)
            )
        out.append({"role": role, "parts": parts})
    return out


@safely
def _start(instance: Any, kwargs: dict[str, Any]) -> Span:
    kwargs = _llm.sent(kwargs)
    attributes = _llm.scalars(kwargs, _PARAMS)
    policy = _content.policy()
    messages = policy.prepare(_messages(kwargs.get("messages"))) if policy.enabled else None
    if messages is not None:
        attributes[sc.GEN_AI_INPUT_MESSAGES] = messages
    return _llm.start_chat("tokentrail.openai", "openai", instance, kwargs, attributes)


def _detail(usage: Any, details: str, name: str) -> int | None:
    """`usage.<details>.<name>` as an int, None when the API version does not report it."""
    value = getattr(getattr(usage, details, None), name, None)
    return None if value is None else int(value)


def _set_usage(span: Span, usage: Any, *, api: str) -> None:
    """Chat completions (`prompt_…`/`completion_…`) and Responses (`input_…`/`output_…`) usage alike;
    OpenAI's input count already includes the cached part, as OTel's does."""
    inputs, outputs = ("prompt", "completion") if api == "chat" else ("input", "output")
    _llm.set_usage(
        span,
        input_tokens=int(getattr(usage, f"{inputs}_tokens", 0) or 0),
        output_tokens=int(getattr(usage, f"{outputs}_tokens", 0) or 0),
        cache_read=_detail(usage, f"{inputs}_tokens_details", "cached_tokens"),
        cache_write=_detail(usage, f"{inputs}_tokens_details", "cache_write_tokens"),
        reasoning=_detail(usage, f"{outputs}_tokens_details", "reasoning_tokens"),
    )


def _record(span: Span, *, model: Any, ident: Any, finish: list[str], usage: Any, text: str | None) -> None:
    _llm.set_response(span, model=model, ident=ident, finish=finish)
    if usage is not None:
        _set_usage(span, usage, api="chat")
    if text:
        output = [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
        _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, output)


def _parsed(response: Any) -> Any:
    """The response object, also for `with_raw_response` calls (LangChain calls the client this
    way; the client caches what parse() returns, so reading it here costs the caller nothing);
    None for a raw streamed response."""
    http = getattr(response, "http_response", None)
    if http is not None and callable(getattr(response, "parse", None)):
        return response.parse() if "json" in http.headers.get("content-type", "") else None
    return response


def _record_response(span: Span, response: Any) -> None:
    response = _parsed(response)
    if response is None:
        return
    choices = getattr(response, "choices", None) or []
    text = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    _record(
        span,
        model=getattr(response, "model", None),
        ident=getattr(response, "id", None),
        finish=[str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)],
        usage=getattr(response, "usage", None),
        text=text,
    )


class _Chunks:
    """What the chunks of a stream add up to; the usage arrives on the last one, when asked for."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.finish: list[str] = []
        self.usage: Any = None
        self.model: Any = None
        self.ident: Any = None

    def add(self, chunk: Any) -> None:
        self.model = self.model or getattr(chunk, "model", None)
        self.ident = self.ident or getattr(chunk, "id", None)
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "finish_reason", None):
                self.finish.append(str(choice.finish_reason))
            content = getattr(getattr(choice, "delta", None), "content", None)
            if content:
                self.text.append(content)

    def record(self, span: Span) -> None:
        _record(
            span,
            model=self.model,
            ident=self.ident,
            finish=self.finish,
            usage=self.usage,
            text="".join(self.text) or None,
        )


_HOOKS = _llm.Hooks(start=_start, record=_record_response, accumulator=_Chunks)


# --- Responses API -------------------------------------------------------------------------------

_RESPONSE_PARAMS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_output_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_STREAM: "stream",
}


@safely
def _start_response(instance: Any, kwargs: dict[str, Any]) -> Span:
    kwargs = _llm.sent(kwargs)
    attributes = _llm.scalars(kwargs, _RESPONSE_PARAMS)
    policy = _content.policy()
    if policy.enabled:
        given = kwargs.get("input")
        messages = (
            [{"role": "user", "parts": [{"type": "text", "content": given}]}]
            if isinstance(given, str)
            else _messages(given)
        )
        for key, value in (
            (sc.GEN_AI_INPUT_MESSAGES, messages),
            (sc.GEN_AI_SYSTEM_INSTRUCTIONS, kwargs.get("instructions")),
        ):
            text = policy.prepare(value) if value else None
            if text is not None:
                attributes[key] = text
    return _llm.start_chat("tokentrail.openai", "openai", instance, kwargs, attributes)


# Output items that wait for the application to run a tool (built-in tools such as web search run
# server-side and end in a message).
_CLIENT_CALLS = frozenset(
    {
        "function_call",
        "custom_tool_call",
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
    }
)


def _finish_reason(response: Any) -> list[str]:
    """A Responses API status in the conventions' finish reasons (`stop`, `length`, `tool_call`, …)."""
    status = getattr(response, "status", None)
    if status == "completed":
        calls = any(
            getattr(item, "type", None) in _CLIENT_CALLS for item in getattr(response, "output", None) or []
        )
        return ["tool_call" if calls else "stop"]
    if status == "failed":
        return ["error"]
    reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
    if reason == "max_output_tokens":
        return ["length"]
    return [str(reason or status)] if (reason or status) else []


def _record_responses_api(span: Span, response: Any) -> None:
    response = _parsed(response)
    if response is None:
        return
    _llm.set_response(
        span,
        model=getattr(response, "model", None),
        ident=getattr(response, "id", None),
        finish=_finish_reason(response),
    )
    usage = getattr(response, "usage", None)
    if usage is not None:
        _set_usage(span, usage, api="responses")
    text = getattr(response, "output_text", None)
    if text:
        output = [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
        _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, output)


class _Events:
    """A Responses stream: the final `response.completed` (or `.incomplete` / `.failed`) event
    carries the whole response, usage included."""

    def __init__(self) -> None:
        self.final: Any = None

    def add(self, event: Any) -> None:
        if getattr(event, "type", "") in ("response.completed", "response.incomplete", "response.failed"):
            self.final = getattr(event, "response", None)

    def record(self, span: Span) -> None:
        if self.final is not None:
            _record_responses_api(span, self.final)


_RESPONSE_HOOKS = _llm.Hooks(start=_start_response, record=_record_responses_api, accumulator=_Events)


# --- embeddings ----------------------------------------------------------------------------------


@safely
def _start_embeddings(instance: Any, kwargs: dict[str, Any]) -> Span:
    kwargs = _llm.sent(kwargs)
    return _llm.start_chat("tokentrail.openai", "openai", instance, kwargs, {}, operation=sc.OP_EMBEDDINGS)


def _record_embeddings(span: Span, response: Any) -> None:
    response = _parsed(response)
    if response is None:
        return
    _llm.set_response(span, model=getattr(response, "model", None), ident=None, finish=[])
    usage = getattr(response, "usage", None)
    if usage is not None:
        _llm.set_usage(span, input_tokens=int(usage.prompt_tokens or 0), output_tokens=0)


class _NoStream:
    def add(self, item: Any) -> None:
        pass

    def record(self, span: Span) -> None:
        pass


_EMBEDDING_HOOKS = _llm.Hooks(start=_start_embeddings, record=_record_embeddings, accumulator=_NoStream)
_WRAPPED = (
    (_MODULE, "Completions", "AsyncCompletions", _HOOKS),
    (_RESPONSES, "Responses", "AsyncResponses", _RESPONSE_HOOKS),
    (_EMBEDDINGS, "Embeddings", "AsyncEmbeddings", _EMBEDDING_HOOKS),
)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        _http_retries.install("openai._base_client")
        for module, sync, async_, hooks in _WRAPPED:
            try:
                wrapt.wrap_function_wrapper(module, f"{sync}.create", _llm.sync_wrapper(hooks))
                wrapt.wrap_function_wrapper(module, f"{async_}.create", _llm.async_wrapper(hooks))
            except (ImportError, AttributeError):  # an older openai without this API
                continue

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        _http_retries.uninstall("openai._base_client")
        for module, sync, async_, _ in _WRAPPED:
            try:
                loaded = importlib.import_module(module)
            except ImportError:
                continue
            for name in (sync, async_):
                if hasattr(loaded, name):
                    unwrap(getattr(loaded, name), "create")
