"""`tokentrail.init()`: tracing to a Tokentrail collector in one line.

Reads the standard OTel variables (explicit argument > environment > default). When the
application already has an SDK TracerProvider, our exporter is attached to it rather than
replacing it. Lenient: a bad setting is logged and defaulted; nothing here raises into the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from tokentrail.instrumentation import _content
from tokentrail.instrumentation._safe import logger

__all__ = ["flush", "init", "shutdown"]

DEFAULT_ENDPOINT = "http://localhost:4318"
_ENTRY_POINT_GROUP = "opentelemetry_instrumentor"

_attached: dict[int, set[str]] = {}  # provider id -> endpoints we export to
_provider: TracerProvider | None = None


def _headers(raw: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            from urllib.parse import unquote

            headers[key.strip()] = unquote(value.strip())
    return headers


def _exporter(endpoint: str, protocol: str, headers: Mapping[str, str]) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        target = endpoint.split("://", 1)[-1]
        return GrpcExporter(endpoint=target, insecure=endpoint.startswith("http://"), headers=dict(headers))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    url = endpoint if endpoint.endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=url, headers=dict(headers))


def _instrument(which: bool | Iterable[str]) -> list[str]:
    """Instrument our instrumentors whose library is installed; returns the names instrumented."""
    from importlib.metadata import entry_points

    disabled = {
        s.strip() for s in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",") if s.strip()
    }
    wanted = None
    if not isinstance(which, bool):
        wanted = {w if w.startswith("tokentrail_") else f"tokentrail_{w}" for w in which}
    done = []
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if (
            not ep.name.startswith("tokentrail_")
            or ep.name in disabled
            or (wanted is not None and ep.name not in wanted)
        ):
            continue
        try:
            instrumentor = ep.load()()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue
            if instrumentor._check_dependency_conflicts() is not None:  # library missing or too old
                continue
            instrumentor.instrument()
            done.append(ep.name)
        except Exception:
            logger.debug("tokentrail: instrumentor %s not loaded", ep.name, exc_info=True)
    return done


def init(
    *,
    endpoint: str | None = None,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    protocol: str | None = None,
    capture_content: bool | None = None,
    redact: _content.Redactor | None = None,
    instrument: bool | Iterable[str] = True,
    tracer_provider: TracerProvider | None = None,
) -> TracerProvider | None:
    """Send spans to Tokentrail. Returns the TracerProvider in use (None when OTEL_SDK_DISABLED)."""
    global _provider
    try:
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        _content.configure(enabled=capture_content, redact=redact)
        env = os.environ
        endpoint = (
            endpoint
            or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or DEFAULT_ENDPOINT
        )
        protocol = (protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
        if protocol not in ("grpc", "http/protobuf"):
            logger.warning(
                "tokentrail: OTEL_EXPORTER_OTLP_PROTOCOL=%r is not supported; using http/protobuf", protocol
            )
            protocol = "http/protobuf"
        all_headers = {**_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS")), **(headers or {})}

        provider = tracer_provider
        if provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current  # the application's own: attach, do not replace
            else:
                attrs: dict[str, Any] = {}
                if service_name:
                    attrs["service.name"] = service_name
                provider = TracerProvider(resource=Resource.create(attrs))
                trace.set_tracer_provider(provider)
        targets = _attached.setdefault(id(provider), set())
        if endpoint not in targets:
            provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint, protocol, all_headers)))
            targets.add(endpoint)
        _provider = provider
        if instrument:
            _instrument(instrument)
        return provider
    except Exception:
        logger.warning("tokentrail: init failed; the application runs untraced", exc_info=True)
        return None


def flush(timeout_millis: int = 30_000) -> bool:
    return bool(_provider.force_flush(timeout_millis)) if _provider is not None else True


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()
