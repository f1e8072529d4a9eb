"""Tokentrail: OpenTelemetry-native observability for AI agents.

The base install is the instrumentation SDK; `tokentrail[server]` adds the collector and the web UI.

    import tokentrail
    tokentrail.init()                        # OTLP to http://localhost:4318 unless OTEL_* say otherwise
    with tokentrail.agent("support", conversation_id="c-1"):
        with tokentrail.tool("lookup_order", arguments={"id": 42}) as step:
            step.set_result(lookup(42))
    tokentrail.record_outcome("resolved", success=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokentrail.instrumentation._api import agent, llm, plan, record_outcome, retry, retrying, tool
    from tokentrail.instrumentation._setup import flush, init, shutdown

# The collector and web packages live in sibling source trees (collector/, web/) during
# development and merge into this package when installed; extend_path joins them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"

__all__ = ["agent", "flush", "init", "llm", "plan", "record_outcome", "retry", "retrying", "shutdown", "tool"]

_API = {"agent", "llm", "plan", "record_outcome", "retry", "retrying", "tool"}
_SETUP = {"init", "flush", "shutdown"}


def __getattr__(name: str) -> Any:
    # Lazy, so `import tokentrail` stays cheap and server-only installs never load the SDK.
    if name in _API:
        from tokentrail.instrumentation import _api

        return getattr(_api, name)
    if name in _SETUP:
        from tokentrail.instrumentation import _setup

        return getattr(_setup, name)
    raise AttributeError(f"module 'tokentrail' has no attribute {name!r}")
