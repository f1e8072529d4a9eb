"""Whether message content is captured, and how it is capped and redacted.

Off by default (the GenAI conventions say content SHOULD NOT be captured by default). Turned on
by the standard variable `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` (`true`, or one of
`SPAN_ONLY` / `SPAN_AND_EVENT` under `gen_ai_latest_experimental`), or by `init(capture_content=…)`.
Explicit argument > environment > default.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAPTURE_ENV",
    "MAX_CHARS_ENV",
    "ContentPolicy",
    "capturing",
    "configure",
    "policy",
    "prepare",
    "record",
    "to_json",
]

logger = logging.getLogger("tokentrail")

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""Standard OTel variable: `true`/`SPAN_ONLY`/`SPAN_AND_EVENT` turn content capture on."""

MAX_CHARS_ENV = "TOKENTRAIL_CONTENT_MAX_CHARS"
"""Largest captured attribute value in characters; longer values are cut and marked."""

_ON_VALUES = {"true", "1", "yes", "on", "span_only", "span_and_event"}
DEFAULT_MAX_CHARS = 16_384
TRUNCATION_MARK = "…[truncated {n} chars]"

Redactor = Callable[[str], str]


@dataclass(frozen=True)
class ContentPolicy:
    enabled: bool = False
    max_chars: int = DEFAULT_MAX_CHARS
    redact: Redactor | None = None

    def prepare(self, value: Any) -> str | None:
        """The string to record for `value`, or None when content is not captured.

        Never raises: a failing redactor drops the value rather than leak it or break the host.
        """
        if not self.enabled or value is None:
            return None
        text = value if isinstance(value, str) else _fitting_json(value, self.max_chars)
        if self.redact is not None:
            try:
                text = self.redact(text)
            except Exception:
                logger.warning("tokentrail: content redactor failed; value not recorded", exc_info=True)
                return None
        if len(text) > self.max_chars:
            cut = len(text) - self.max_chars
            text = text[: self.max_chars] + TRUNCATION_MARK.format(n=cut)
        return text


def _strings(value: Any, out: list[int]) -> None:
    if isinstance(value, str):
        out.append(len(value))
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, out)


def _shrink(value: Any, cap: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= cap else value[:cap] + TRUNCATION_MARK.format(n=len(value) - cap)
    if isinstance(value, dict):
        return {k: _shrink(v, cap) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shrink(v, cap) for v in value]
    return value


def _fitting_json(value: Any, max_chars: int) -> str:
    """JSON for `value` within `max_chars` where it can be: the longest strings inside are cut
    (each marked), so messages stay valid JSON that the UI and the analysis can still read."""
    text = to_json(value)
    if len(text) <= max_chars:
        return text
    lengths: list[int] = []
    _strings(value, lengths)
    budget = max_chars - (len(text) - sum(lengths)) - 40 * len(lengths)  # room for the structure and marks
    if budget <= 0:
        return text
    low, high = 0, max(lengths, default=0)
    while low < high:  # the largest per-string cap that fits the budget
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            low = mid
        else:
            high = mid - 1
    return to_json(_shrink(value, low))


def to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _from_env() -> ContentPolicy:
    enabled = os.environ.get(CAPTURE_ENV, "").strip().lower() in _ON_VALUES
    max_chars = DEFAULT_MAX_CHARS
    raw = os.environ.get(MAX_CHARS_ENV, "").strip()
    if raw:
        try:
            max_chars = max(16, int(raw))
        except ValueError:
            logger.warning("tokentrail: %s=%r is not a number; using %d", MAX_CHARS_ENV, raw, max_chars)
    return ContentPolicy(enabled=enabled, max_chars=max_chars)


_policy: ContentPolicy | None = None


def policy() -> ContentPolicy:
    """The policy in force: set by `configure`, else read from the environment once."""
    global _policy
    if _policy is None:
        _policy = _from_env()
    return _policy


def capturing() -> bool:
    """Whether content is captured at all: callers skip building what would not be recorded."""
    return policy().enabled


def prepare(value: Any) -> str | None:
    """`value` as the policy in force records it; None when it is not recorded."""
    return policy().prepare(value)


def record(span: Any, key: str, value: Any) -> None:
    """Set `value` on the span under `key`, as far as the policy in force allows."""
    text = policy().prepare(value)
    if text is not None:
        span.set_attribute(key, text)


def configure(
    *, enabled: bool | None = None, max_chars: int | None = None, redact: Redactor | None = None
) -> ContentPolicy:
    """Override the environment; None leaves that part as the environment says."""
    global _policy
    base = _from_env()
    _policy = ContentPolicy(
        enabled=base.enabled if enabled is None else enabled,
        max_chars=base.max_chars if max_chars is None else max(16, max_chars),
        redact=redact,
    )
    return _policy


def reset() -> None:
    """Forget any override (tests)."""
    global _policy
    _policy = None
