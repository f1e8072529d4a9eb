"""Captured message content → what the span detail shows: messages in the OpenTelemetry shape as
[{role, parts}] for the chat view, long text clipped (the JSON twin returns everything), and
anything unexpected as raw JSON rather than an error. Content is untrusted; templates escape it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_TEXT", "clip", "json_or_text", "messages", "parts"]

#: longest text shown inline in a span's detail; the JSON API returns everything
MAX_TEXT = 20_000


def clip(text: str) -> dict[str, Any]:
    return {"text": text[:MAX_TEXT], "more": max(0, len(text) - MAX_TEXT)}


def json_or_text(raw: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parts(raw: Any) -> list[dict[str, Any]]:
    """Message parts in the OTel shape → display parts; anything unexpected shows as raw JSON."""
    shown: list[dict[str, Any]] = []
    if isinstance(raw, str):
        raw = [{"type": "text", "content": raw}]
    if not isinstance(raw, list):
        raw = [raw]
    for part in raw:
        if not isinstance(part, dict):
            shown.append({"type": "text", **clip(str(part))})
            continue
        kind = str(part.get("type", "text"))
        if kind == "text" or kind == "reasoning":
            content = part.get("content")
            shown.append({"type": kind, **clip(content if isinstance(content, str) else json.dumps(content))})
        elif kind == "tool_call":
            args = part.get("arguments")
            args_text = args if isinstance(args, str) else json.dumps(args, indent=2, ensure_ascii=False)
            shown.append(
                {
                    "type": kind,
                    "name": str(part.get("name", "")),
                    "id": str(part.get("id", "")),
                    **clip(args_text),
                }
            )
        elif kind == "tool_call_response":
            resp = part.get("response", part.get("result"))
            resp_text = resp if isinstance(resp, str) else json.dumps(resp, indent=2, ensure_ascii=False)
            shown.append({"type": kind, "id": str(part.get("id", "")), **clip(resp_text)})
        else:
            shown.append({"type": kind, **clip(json.dumps(part, indent=2, ensure_ascii=False))})
    return shown


def messages(raw: str) -> list[dict[str, Any]] | None:
    """A messages column (JSON in the OTel shape) → [{role, parts}] for the chat view."""
    value = json_or_text(raw)
    if value is None:
        return None
    if isinstance(value, str):
        return [{"role": "unknown", "parts": parts(value)}]
    if not isinstance(value, list):
        value = [value]
    shown = []
    for message in value:
        if isinstance(message, dict):
            role = str(message.get("role", "unknown"))[:40]
            shown.append({"role": role, "parts": parts(message.get("parts", message.get("content", "")))})
        else:
            shown.append({"role": "unknown", "parts": parts(message)})
    return shown
