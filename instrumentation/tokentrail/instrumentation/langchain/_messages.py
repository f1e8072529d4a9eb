"""LangChain messages and generations in the OTel GenAI message shape.

A LangChain message has a `type` (`human`, `ai`, `system`, `tool`, …), content that is a string or
a list of blocks, and, on model output, `tool_calls`; a tool message answers one call by its id.
Blocks other than text and reasoning keep only their kind (their payload, an image say, is not
captured). Every function here reads defensively and is only called from code wrapped in `safely`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tokentrail.instrumentation import _content
from tokentrail.instrumentation._invocation import (
    reasoning_part,
    text_part,
    tool_call_part,
    tool_response_part,
)

__all__ = ["finish_reason", "first", "message", "output_messages"]

_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "assistant",
}


def first(mapping: Mapping[str, Any] | None, keys: Iterable[str]) -> Any:
    """The first non-empty value among `keys`: LangChain's dicts (metadata, invocation parameters,
    generation info) name one thing differently from one integration to the next."""
    for key in keys:
        value = (mapping or {}).get(key)
        if value not in (None, ""):
            return value
    return None


def _parts(content: Any) -> list[dict[str, Any]]:
    """Message content (a string or a list of blocks) as message parts."""
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if isinstance(block, str):
            parts.append(text_part(block))
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "text" or "text" in block:
                parts.append(text_part(block.get("text", "")))
            elif kind in ("reasoning", "thinking"):
                parts.append(reasoning_part(block.get("reasoning") or block.get("thinking") or ""))
            elif kind:
                parts.append({"type": str(kind)})
    return parts


def message(message: Any) -> dict[str, Any]:
    """One LangChain message."""
    kind = str(getattr(message, "type", "") or "")
    role = _ROLES.get(kind) or str(getattr(message, "role", "") or kind or "user")
    content = getattr(message, "content", message)
    if role == "tool":
        response = content if isinstance(content, str) else _content.to_json(content)
        return {
            "role": "tool",
            "parts": [tool_response_part(getattr(message, "tool_call_id", None), response)],
        }
    parts = _parts(content)
    for call in getattr(message, "tool_calls", None) or ():
        if isinstance(call, dict):
            parts.append(tool_call_part(call.get("id"), call.get("name"), call.get("args")))
    return {"role": role, "parts": parts}


def finish_reason(generation: Any) -> str | None:
    """Why a generation stopped, wherever its integration puts it."""
    info = getattr(generation, "generation_info", None) or {}
    metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
    keys = ("finish_reason", "stop_reason")
    reason = first(info, keys) or first(metadata, keys)
    return str(reason) if reason else None


def output_messages(generations: Sequence[Any]) -> list[dict[str, Any]]:
    """A model run's generations, each with its finish reason: chat generations carry a message,
    completion generations only text."""
    output = []
    for generation in generations:
        chat = getattr(generation, "message", None)
        if chat is not None:
            item = message(chat)
        else:
            item = {"role": "assistant", "parts": [text_part(getattr(generation, "text", ""))]}
        reason = finish_reason(generation)
        if reason:
            item["finish_reason"] = reason
        output.append(item)
    return output
