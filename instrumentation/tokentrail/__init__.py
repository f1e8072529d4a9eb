"""Tokentrail: OpenTelemetry-native observability for AI agents.

The base install is the instrumentation SDK; `tokentrail[server]` adds the collector and the web UI.
"""

from __future__ import annotations

# The collector and web packages live in sibling source trees (collector/, web/) during
# development and merge into this package when installed; extend_path joins them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
