"""Rebuild prompt and completion content into the OTel GenAI message shape.

Target (CONVENTIONS.md §1.5): a JSON list of `{"role": …, "parts": [{"type": "text", "content": …},
{"type": "tool_call", "id", "name", "arguments"}, {"type": "tool_call_response", "id", "response"}]}`.
Sources: OTel JSON strings or structured values as sent, OpenInference's flattened
`llm.input_messages.N.message.*`, OpenLLMetry 0.4's `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`,
and v1.26-era single strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["as_json", "flattened", "from_text", "openinference", "openllmetry"]


def as_json(value: Any) -> str:
    """Text for a message attribute: strings are kept as sent, structures are encoded."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def from_text(text: Any, role: str) -> str:
    if not isinstance(text, str) or not text:
        return ""
    return as_json([{"role": role, "parts": [{"type": "text", "content": text}]}])


def flattened(attrs: Mapping[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """Group `prefix.N.rest` keys into {N: {rest: value}}, N as an int (10 sorts after 9)."""
    groups: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if index.isdigit() and rest:
            groups.setdefault(int(index), {})[rest] = value
    return dict(sorted(groups.items()))


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _tool_calls(fields: Mapping[str, Any], prefix: str, id_key: str, name_key: str, args_key: str) -> list[dict[str, Any]]:
    calls = flattened(fields, prefix)
    return [
        {"type": "tool_call", "id": c.get(id_key, ""), "name": c.get(name_key, ""), "arguments": _arguments(c.get(args_key))}
        for c in calls.values()
    ]


def _message(role: str, text: Any, tool_call_id: Any, calls: list[dict[str, Any]], name: Any = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if tool_call_id and role == "tool":
        parts.append({"type": "tool_call_response", "id": tool_call_id, "response": text if text is not None else ""})
    elif isinstance(text, str) and text:
        parts.append({"type": "text", "content": text})
    parts.extend(calls)
    message: dict[str, Any] = {"role": role or "user", "parts": parts}
    if name:
        message["name"] = name
    return message


def openinference(attrs: Mapping[str, Any], prefix: str) -> tuple[str, str]:
    """(system instructions, messages) from `llm.input_messages.N.message.*` / `llm.output_messages…`."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for fields in flattened(attrs, prefix).values():
        role = str(fields.get("message.role", ""))
        text = fields.get("message.content")
        if text is None:  # multimodal: message.contents.J.message_content.{type,text}
            texts = [
                c.get("message_content.text")
                for c in flattened(fields, "message.contents.").values()
                if c.get("message_content.type", "text") == "text"
            ]
            text = "\n".join(t for t in texts if isinstance(t, str)) or None
        calls = _tool_calls(fields, "message.tool_calls.", "tool_call.id", "tool_call.function.name",
                            "tool_call.function.arguments")  # fmt: skip
        if role == "system" and isinstance(text, str) and prefix.startswith("llm.input"):
            system.append(text)
            continue
        messages.append(_message(role, text, fields.get("message.tool_call_id"), calls, fields.get("message.name")))
    system_json = as_json([{"type": "text", "content": s} for s in system]) if system else ""
    return system_json, as_json(messages) if messages else ""


def openllmetry(attrs: Mapping[str, Any], prefix: str) -> tuple[str, str, list[str]]:
    """(system, messages, finish reasons) from OpenLLMetry 0.4 `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    finish: list[str] = []
    for fields in flattened(attrs, prefix).values():
        role = str(fields.get("role", "assistant" if "completion" in prefix else "user"))
        text = fields.get("content")
        if role == "system" and isinstance(text, str) and "prompt" in prefix:
            system.append(text)
            continue
        calls = _tool_calls(fields, "tool_calls.", "id", "name", "arguments")
        messages.append(_message(role, text, fields.get("tool_call_id"), calls))
        if isinstance(fields.get("finish_reason"), str):
            finish.append(fields["finish_reason"])
    system_json = as_json([{"type": "text", "content": s} for s in system]) if system else ""
    return system_json, as_json(messages) if messages else "", finish
