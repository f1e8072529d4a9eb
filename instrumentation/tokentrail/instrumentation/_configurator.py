"""`opentelemetry-instrument python agent.py` with nothing else installed: the OTel auto-
instrumentation loads this configurator (entry point `opentelemetry_configurator: tokentrail`),
which sets up the tracer provider and OTLP exporter exactly as `tokentrail.init()` does, from the
standard `OTEL_*` variables. The instrumentors themselves are loaded by `opentelemetry-instrument`
from their entry points, so this does not instrument anything twice.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk._configuration import _BaseConfigurator

__all__ = ["TokentrailConfigurator"]


class TokentrailConfigurator(_BaseConfigurator):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        from tokentrail.instrumentation._setup import init

        init(instrument=False)
