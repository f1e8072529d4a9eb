"""Rebuild prompt and completion content into the OTel GenAI message shape.

Target, the OTel GenAI message shape: a JSON list of `{"role": …, "parts": [{"type": "text", "content": …},
{"type": "tool_call", "id", "name", "arguments"}, {"type": "tool_call_response", "id", "response"}]}`.
Sources: OTel JSON strings or structured values as sent, OpenInference's flattened
`llm.input_messages.N.message.*`, OpenLLMetry 0.4's `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`,
and v1.26-era single strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "as_json",
    "flattened",
    "from_text",
    "leading_system",
    "openinference",
    "openllmetry",
    "tool_calls_and_finish",
]


#: one encoder for every call (`json.dumps` with options builds one a call)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def as_json(value: Any) -> str:
    """Text for a message attribute: strings are kept as sent, structures are encoded."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return _encode(value)


def from_text(text: Any, role: str) -> str:
    """One message of `role` from a plain string; a string that is JSON-encoded chat messages
    (OpenAI or Anthropic request shape, as applications often record them) becomes those messages."""
    if not isinstance(text, str) or not text:
        return ""
    if text[:1] in "[{":
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        items = [decoded] if isinstance(decoded, dict) else decoded
        if isinstance(items, list) and items and all(isinstance(m, dict) and "role" in m for m in items):
            return as_json([m if "parts" in m else _provider_message(m) for m in items])
    return as_json([{"role": role, "parts": [{"type": "text", "content": text}]}])


def _provider_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI or Anthropic chat message as an OTel message."""
    role = str(message.get("role") or "user")
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    blocks = content if isinstance(content, list) else [content] if content not in (None, "") else []
    for block in blocks:
        if isinstance(block, str):
            parts.append(
                {"type": "tool_call_response", "id": message["tool_call_id"], "response": block}
                if role == "tool" and message.get("tool_call_id")
                else {"type": "text", "content": block}
            )
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "tool_use":
                parts.append(
                    {
                        "type": "tool_call",
                        "id": block.get("id", ""),
                        "name": block.get("name", ""),
                        "arguments": block.get("input"),
                    }
                )
            elif kind == "tool_result":
                parts.append(
                    {
                        "type": "tool_call_response",
                        "id": block.get("tool_use_id", ""),
                        "response": block.get("content", ""),
                    }
                )
            elif isinstance(block.get("text"), str):
                parts.append({"type": "text", "content": block["text"]})
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id", ""),
                    "name": function.get("name", ""),
                    "arguments": _arguments(function.get("arguments")),
                }
            )
    return {"role": role, "parts": parts}


def leading_system(messages: str) -> str:
    """The text of the system messages that open a conversation (OTel message JSON), for emitters
    that send system instructions as messages rather than as their own attribute."""
    if '"system"' not in messages[:200]:
        return ""
    try:
        decoded = json.loads(messages)
    except ValueError:
        return ""
    texts = []
    for message in decoded if isinstance(decoded, list) else []:
        if not isinstance(message, dict) or message.get("role") != "system":
            break
        texts += [str(p.get("content", "")) for p in message.get("parts") or [] if isinstance(p, dict)]
    return "\n".join(texts)


def tool_calls_and_finish(messages: str) -> tuple[list[tuple[str, str]], list[str]]:
    """From OTel output message JSON: (tool name, arguments as JSON text) of every tool call, and the
    messages' own finish reasons (for emitters that record them there only)."""
    try:
        decoded = json.loads(messages)
    except ValueError:
        return [], []
    calls, finish = [], []
    for message in decoded if isinstance(decoded, list) else []:
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("finish_reason"), str):
            finish.append(message["finish_reason"])
        for part in message.get("parts") or []:
            if isinstance(part, dict) and part.get("type") == "tool_call":
                args = part.get("arguments")
                calls.append((str(part.get("name", "")), args if isinstance(args, str) else as_json(args)))
    return calls, finish


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


def _tool_calls(
    fields: Mapping[str, Any], prefix: str, id_key: str, name_key: str, args_key: str
) -> list[dict[str, Any]]:
    calls = flattened(fields, prefix)
    return [
        {
            "type": "tool_call",
            "id": c.get(id_key, ""),
            "name": c.get(name_key, ""),
            "arguments": _arguments(c.get(args_key)),
        }
        for c in calls.values()
    ]


def _message(
    role: str, text: Any, tool_call_id: Any, calls: list[dict[str, Any]], name: Any = None
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if tool_call_id and role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": tool_call_id, "response": text if text is not None else ""}
        )
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
        calls = _tool_calls(
            fields,
            "message.tool_calls.",
            "tool_call.id",
            "tool_call.function.name",
            "tool_call.function.arguments",
        )
        if role == "system" and isinstance(text, str) and prefix.startswith("llm.input"):
            system.append(text)
            continue
        messages.append(
            _message(role, text, fields.get("message.tool_call_id"), calls, fields.get("message.name"))
        )
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
