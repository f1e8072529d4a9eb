"""anthropic: a `chat {model}` span for every Messages call: `create` (sync, async, `stream=True`)
and the `stream()` helper.

Anthropic's `input_tokens` leaves out cache reads and writes; OTel's `gen_ai.usage.input_tokens`
includes them, so the span reports the sum and the two cache counts beside
it. A stream keeps its span open until it is read to the end, closed or left, and takes its usage
from `message_start`, updated by `message_delta`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _http_retries, _invocation, _llm
from tokentrail.instrumentation._invocation import (
    as_count,
    get_field,
    reasoning_part,
    text_part,
    tool_call_part,
    tool_response_part,
)
from tokentrail.instrumentation._safe import safely

__all__ = ["AnthropicInstrumentor"]

_instruments = ("anthropic >= 0.30",)
_MODULE = "anthropic.resources.messages"  # both classes import from here, module or package alike
_SCOPE = "tokentrail.anthropic"
_PARAMS = {
    sc.GEN_AI_REQUEST_MAX_TOKENS: "max_tokens",
    sc.GEN_AI_REQUEST_TEMPERATURE: "temperature",
    sc.GEN_AI_REQUEST_TOP_P: "top_p",
    sc.GEN_AI_REQUEST_STREAM: "stream",
}
_USAGE = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_BLOCK = ("type", "text", "thinking", "id", "name", "input", "source", "content", "tool_use_id")


# --- content, in the OTel GenAI message shape ---------------------------------------------------


def _media(block: Any, modality: str) -> dict[str, Any]:
    source = get_field(block, "source")
    kind = get_field(source, "type")
    if kind == "url":
        return {"type": "uri", "modality": modality, "uri": str(get_field(source, "url"))}
    if kind == "file":
        return {"type": "file", "modality": modality, "file_id": str(get_field(source, "file_id"))}
    # Inline bytes are left out: one image would use up the whole capture budget.
    part: dict[str, Any] = {"type": "blob", "modality": modality}
    if get_field(source, "media_type"):
        part["mime_type"] = str(get_field(source, "media_type"))
    return part


def _part(block: Any) -> dict[str, Any]:
    if isinstance(block, str):
        return text_part(block)
    kind = str(get_field(block, "type") or "")
    if kind == "text":
        return text_part(str(get_field(block, "text") or ""))
    if kind == "tool_use":
        return tool_call_part(get_field(block, "id"), get_field(block, "name"), get_field(block, "input"))
    if kind == "tool_result":
        content = get_field(block, "content")
        response = content if isinstance(content, str) else _parts(content)
        return tool_response_part(get_field(block, "tool_use_id"), response)
    if kind == "thinking":
        return reasoning_part(str(get_field(block, "thinking") or ""))
    if kind in ("image", "document"):
        return _media(block, kind)
    return {"type": kind}  # a generic part: the kind is known, its payload is not captured


def _parts(content: Any) -> list[dict[str, Any]]:
    # Lists only: a generator given as content would be used up here and sent empty.
    if isinstance(content, str):
        return [_part(content)]
    return [_part(block) for block in content] if isinstance(content, (list, tuple)) else []


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, (list, tuple)):
        return []
    return [
        {"role": str(get_field(m, "role") or "user"), "parts": _parts(get_field(m, "content"))}
        for m in messages
    ]


def _system(system: Any) -> list[dict[str, Any]]:
    """System instructions are text parts only, as the OTel GenAI message shape has them."""
    return [p for p in _parts(system) if p["type"] == "text" and p["content"]]


def _record_output(span: Span, role: Any, content: Any) -> None:
    parts = _parts(content)
    if parts:
        _invocation.set_messages(span, output=[{"role": str(role or "assistant"), "parts": parts}])


# --- spans -----------------------------------------------------------------------------------------


@safely
def _start(instance: Any, kwargs: dict[str, Any]) -> Span:
    kwargs = _llm.sent(kwargs)
    params = _llm.scalars(kwargs, _PARAMS)
    stops = kwargs.get("stop_sequences")
    if isinstance(stops, (list, tuple)) and stops and all(isinstance(s, str) for s in stops):
        params[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stops)
    capture = _content.capturing()
    request = _invocation.Request(
        sc.OP_CHAT,
        "anthropic",
        kwargs.get("model"),
        server=_llm.base_url(instance),
        params=params,
        system=_system(kwargs.get("system")) if capture else None,
        messages=_messages(kwargs.get("messages")) if capture else None,
    )
    return _invocation.start(_SCOPE, request)


def _record_message(span: Span, message: Any) -> None:
    stop = get_field(message, "stop_reason")
    finish = [str(stop)] if stop else []
    _invocation.set_response(
        span, model=get_field(message, "model"), ident=get_field(message, "id"), finish=finish
    )
    _invocation.set_usage(span, _invocation.anthropic_usage(get_field(message, "usage")))
    _record_output(span, get_field(message, "role"), get_field(message, "content"))


class _Events:
    """What the events of a stream add up to; content blocks are rebuilt only when content is captured."""

    def __init__(self) -> None:
        self.capture = _content.capturing()
        self.message: dict[str, Any] = {}
        self.usage: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}

    def _merge_usage(self, usage: Any) -> None:
        # message_delta counts are cumulative and may repeat or update those of message_start
        for key in _USAGE:
            if as_count(get_field(usage, key)) is not None:
                self.usage[key] = get_field(usage, key)
        details = get_field(usage, "output_tokens_details")
        if details is not None:
            self.usage["output_tokens_details"] = details

    def add(self, event: Any) -> None:
        kind = get_field(event, "type")
        if kind == "message_start":
            message = get_field(event, "message")
            self.message = {key: get_field(message, key) for key in ("id", "model", "role")}
            self._merge_usage(get_field(message, "usage"))
        elif kind == "message_delta":
            stop = get_field(get_field(event, "delta"), "stop_reason")
            if stop:
                self.message["stop_reason"] = stop
            self._merge_usage(get_field(event, "usage"))
        elif self.capture and kind == "content_block_start":
            started = {key: get_field(get_field(event, "content_block"), key) for key in _BLOCK}
            self.blocks[int(get_field(event, "index") or 0)] = started | {"json": []}
        elif self.capture and kind == "content_block_delta":
            block = self.blocks.get(int(get_field(event, "index") or 0))
            if block is None:
                return
            delta = get_field(event, "delta")
            step = get_field(delta, "type")
            if step == "text_delta":
                block["text"] = (block["text"] or "") + str(get_field(delta, "text") or "")
            elif step == "thinking_delta":
                block["thinking"] = (block["thinking"] or "") + str(get_field(delta, "thinking") or "")
            elif step == "input_json_delta":
                block["json"].append(str(get_field(delta, "partial_json") or ""))

    def record(self, span: Span) -> None:
        _record_message(span, {**self.message, "usage": self.usage if self.usage else None})
        blocks = [self.blocks[i] for i in sorted(self.blocks)]
        for block in blocks:
            if block["json"]:
                raw = "".join(block["json"])
                try:
                    block["input"] = json.loads(raw)
                except ValueError:
                    block["input"] = raw  # cut off mid-stream: keep what arrived
        _record_output(span, self.message.get("role"), blocks)


_HOOKS = _llm.Hooks(start=_start, record=_record_message, accumulator=_Events)


# --- the client's own call span ---------------------------------------------------------------
# anthropic >= 2 traces its API calls itself. Inside a call we trace, its span would be a second
# model span for the same call (one more row in every timeline), so there the client gets no
# tracer; its other calls (batches, files, models…) keep their spans.

_native_tracer: property | None = None  # the client's own, while ours stands in its place


def _ours(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    return getattr(scope, "name", None) == _SCOPE


def _silence_native_spans() -> None:
    global _native_tracer
    try:
        from anthropic._base_client import BaseClient
    except ImportError:
        return
    original = BaseClient.__dict__.get("_tracer")
    if not isinstance(original, property) or original.fget is None or _native_tracer is not None:
        return
    getter = original.fget

    def tracer(client: Any) -> Any:
        return None if _ours(trace.get_current_span()) else getter(client)

    _native_tracer = original
    BaseClient._tracer = property(tracer, doc=original.__doc__)  # type: ignore[method-assign,assignment]


def _restore_native_spans() -> None:
    global _native_tracer
    original, _native_tracer = _native_tracer, None
    if original is not None:
        from anthropic._base_client import BaseClient

        BaseClient._tracer = original  # type: ignore[method-assign,assignment]


# --- the stream() helper ---------------------------------------------------------------------------


def _watch(stream: Any, span: Span) -> bool:
    """Route the helper's raw event stream through a proxy that ends the span; False when there is none.

    The helper reads `_raw_stream` for iteration, `text_stream`, `get_final_message()` and `close()`
    alike, so watching it covers every way of reading the events.
    """
    raw = getattr(stream, "_raw_stream", None)
    if raw is None:
        return False
    stream._raw_stream = _llm.StreamProxy(raw, span, _Events())
    return True


def _snapshot(stream: Any) -> Any:
    return getattr(stream, "current_message_snapshot", None)


class _Helper(wrapt.ObjectProxy):  # type: ignore[misc]
    """The `stream()` helper's context manager: the span covers the request and the reading of its events."""

    def __init__(self, manager: Any, instance: Any, kwargs: dict[str, Any]) -> None:
        super().__init__(manager)
        self._self_instance = instance
        self._self_kwargs = {**kwargs, "stream": True}
        self._self_stream: Any = None
        self._self_span: Span | None = None  # kept here only when the stream could not be watched

    def _self_open(self, stream: Any, span: Span) -> Any:
        self._self_stream = stream
        if not safely(_watch)(stream, span):
            self._self_span = span
        return stream

    def _self_close(self) -> None:
        """Without a watched stream (older SDKs), the span ends on exit with the accumulated message."""
        span, self._self_span = self._self_span, None
        if span is not None:
            safely(_record_message)(span, safely(_snapshot)(self._self_stream))
            span.end()

    def __enter__(self) -> Any:
        span = _start(self._self_instance, self._self_kwargs)
        if span is None:
            return self.__wrapped__.__enter__()
        with _llm.current(span):
            stream = self.__wrapped__.__enter__()
        return self._self_open(stream, span)

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc)
        finally:
            self._self_close()

    async def __aenter__(self) -> Any:
        span = _start(self._self_instance, self._self_kwargs)
        if span is None:
            return await self.__wrapped__.__aenter__()
        with _llm.current(span):
            stream = await self.__wrapped__.__aenter__()
        return self._self_open(stream, span)

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc)
        finally:
            self._self_close()


def _stream_helper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    manager = wrapped(*args, **kwargs)
    helper = safely(_Helper)(manager, instance, kwargs)
    return manager if helper is None else helper


class AnthropicInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        import anthropic.resources.messages as module

        _http_retries.install("anthropic._base_client")
        _silence_native_spans()
        wrapt.wrap_function_wrapper(_MODULE, "Messages.create", _llm.sync_wrapper(_HOOKS))
        wrapt.wrap_function_wrapper(_MODULE, "AsyncMessages.create", _llm.async_wrapper(_HOOKS))
        for cls in ("Messages", "AsyncMessages"):  # the async helper is a plain function too
            if hasattr(getattr(module, cls), "stream"):
                wrapt.wrap_function_wrapper(_MODULE, f"{cls}.stream", _stream_helper)

    def _uninstrument(self, **kwargs: Any) -> None:
        import anthropic.resources.messages as module

        _http_retries.uninstall("anthropic._base_client")
        _restore_native_spans()
        for cls in (module.Messages, module.AsyncMessages):
            unwrap(cls, "create")
            unwrap(cls, "stream")
