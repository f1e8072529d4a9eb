"""The text form of an attribute value, as the attribute Map columns store it (and as the OTel
ClickHouse exporter does): flattening writes it, redaction writes it again for a list or a map
whose strings it changed."""

from __future__ import annotations

import base64
import json
from json.encoder import encode_basestring
from typing import Any

__all__ = ["compact_json", "json_default", "text"]


def json_default(value: Any) -> Any:
    """What JSON holds for a value it has no form for: bytes in base64, anything else as text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


#: compact JSON, non-ASCII kept (one encoder: `json.dumps` with options builds one a call)
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode


def text(value: Any) -> str:
    """The string form stored in attribute maps: strings as they are, numbers and booleans as
    written, bytes in base64, lists and maps as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None:
        return ""
    if type(value) is list:
        try:  # a list of strings (finish reasons, tags), written as `compact_json` would, without its encoder
            return "[" + ",".join(map(encode_basestring, value)) + "]"
        except TypeError:  # an item that is not a string
            pass
    return compact_json(value)
