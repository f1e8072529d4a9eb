"""openai: a `chat {model}` span for every chat completion, sync, async and streaming.

Usage comes from the response, or from the final chunk of a stream; input tokens are OpenAI's
`prompt_tokens`, which include the cached part (OTel semantics). A stream is wrapped so the span
ends when the stream is consumed, closed or left; everything else about it is unchanged.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _llm
from tokentrail.instrumentation._safe import safely

__all__ = ["OpenAIInstrumentor"]

_instruments = ("openai >= 1.40",)
_MODULE = "openai.resources.chat.completions"
_PARAMS = {sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens", sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
           sc.GEN_AI_REQUEST_TOP_P: "top_p", sc.GEN_AI_REQUEST_STREAM: "stream"}  # fmt: skip


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
            parts.extend({"type": "text", "content": p.get("text", "")} for p in content if isinstance(p, dict))
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


def _record(span: Span, *, model: Any, ident: Any, finish: list[str], usage: Any, text: str | None) -> None:
    _llm.set_response(span, model=model, ident=ident, finish=finish)
    if usage is not None:
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
        reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
        _llm.set_usage(span, input_tokens=int(usage.prompt_tokens or 0),
                       output_tokens=int(usage.completion_tokens or 0),
                       cache_read=None if cached is None else int(cached),
                       reasoning=None if reasoning is None else int(reasoning))  # fmt: skip
    if text:
        output = [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
        _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, output)


def _record_response(span: Span, response: Any) -> None:
    http = getattr(response, "http_response", None)
    if http is not None and callable(getattr(response, "parse", None)):
        # `with_raw_response` (LangChain calls the client this way): the client caches what
        # parse() returns, so reading it here costs the caller nothing
        if "json" not in http.headers.get("content-type", ""):
            return
        response = response.parse()
    choices = getattr(response, "choices", None) or []
    text = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    _record(span, model=getattr(response, "model", None), ident=getattr(response, "id", None),
            finish=[str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)],
            usage=getattr(response, "usage", None), text=text)  # fmt: skip


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
        _record(span, model=self.model, ident=self.ident, finish=self.finish, usage=self.usage,
                text="".join(self.text) or None)  # fmt: skip


_HOOKS = _llm.Hooks(start=_start, record=_record_response, accumulator=_Chunks)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        wrapt.wrap_function_wrapper(_MODULE, "Completions.create", _llm.sync_wrapper(_HOOKS))
        wrapt.wrap_function_wrapper(_MODULE, "AsyncCompletions.create", _llm.async_wrapper(_HOOKS))

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai.resources.chat.completions as module

        unwrap(module.Completions, "create")
        unwrap(module.AsyncCompletions, "create")
