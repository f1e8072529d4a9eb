"""openai: a `chat {model}` span for every chat completion and every Responses API call, and an
`embeddings {model}` span for every embeddings call; sync, async and streaming.

Usage comes from the response, or from the final chunk (chat) or `response.completed` event
(Responses) of a stream; input tokens are OpenAI's `prompt_tokens` / `input_tokens`, which include
the cached part (OTel semantics). A stream is wrapped so the span ends when the stream is consumed,
closed or left; everything else about it is unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _http_retries, _invocation, _llm
from tokentrail.instrumentation._invocation import text_part
from tokentrail.instrumentation._safe import safely

__all__ = ["OpenAIInstrumentor"]

_instruments = ("openai >= 1.40",)
_TRACER = "tokentrail.openai"
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
            parts.append(text_part(content))
        elif isinstance(content, list):
            parts.extend(text_part(p.get("text", "")) for p in content if isinstance(p, dict))
        out.append({"role": role, "parts": parts})
    return out


def _answer(text: str | None) -> list[dict[str, Any]] | None:
    return [{"role": "assistant", "parts": [text_part(text)]}] if text else None


def _start_call(
    instance: Any, kwargs: Mapping[str, Any], operation: str, params: Mapping[str, str], **content: Any
) -> Span:
    request = _invocation.Request(
        operation,
        "openai",
        kwargs.get("model"),
        server=_llm.base_url(instance),
        params=_llm.scalars(kwargs, params),
        **content,
    )
    return _invocation.start(_TRACER, request)


@safely
def _start(instance: Any, kwargs: dict[str, Any]) -> Span:
    kwargs = _llm.sent(kwargs)
    messages = _messages(kwargs.get("messages")) if _content.capturing() else None
    return _start_call(instance, kwargs, sc.OP_CHAT, _PARAMS, messages=messages)


def _record(span: Span, *, model: Any, ident: Any, finish: list[str], usage: Any, text: str | None) -> None:
    _invocation.set_response(span, model=model, ident=ident, finish=finish)
    if usage is not None:
        _invocation.set_usage(span, _invocation.openai_usage(usage, chat=True))
    _invocation.set_messages(span, output=_answer(text))


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
    if not _content.capturing():
        return _start_call(instance, kwargs, sc.OP_CHAT, _RESPONSE_PARAMS)
    given = kwargs.get("input")
    messages = [{"role": "user", "parts": [text_part(given)]}] if isinstance(given, str) else _messages(given)
    return _start_call(
        instance, kwargs, sc.OP_CHAT, _RESPONSE_PARAMS, messages=messages, system=kwargs.get("instructions")
    )


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
    _invocation.set_response(
        span,
        model=getattr(response, "model", None),
        ident=getattr(response, "id", None),
        finish=_finish_reason(response),
    )
    usage = getattr(response, "usage", None)
    if usage is not None:
        _invocation.set_usage(span, _invocation.openai_usage(usage, chat=False))
    _invocation.set_messages(span, output=_answer(getattr(response, "output_text", None)))


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
    return _start_call(instance, _llm.sent(kwargs), sc.OP_EMBEDDINGS, {})


def _record_embeddings(span: Span, response: Any) -> None:
    response = _parsed(response)
    if response is None:
        return
    _invocation.set_response(span, model=getattr(response, "model", None), ident=None, finish=[])
    usage = getattr(response, "usage", None)
    if usage is not None:  # billed on its input only
        _invocation.set_usage(span, _invocation.Usage(input_tokens=usage.prompt_tokens, output_tokens=0))


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
