"""The one ingest path both receivers call: decode, drop bad items, spool durably, count; and the
OTLP answer both send back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tokentrail.collector.decode import Decoded, Encoding, Signal, decode
from tokentrail.collector.spool import (
    KIND_LOGS,
    KIND_METRICS,
    KIND_TRACES,
    RecordTooLarge,
    Spool,
    SpoolUnavailable,
)
from tokentrail.collector.stats import Stats
from tokentrail.server.settings import Settings
from tokentrail.store.keys import KeyRefused, KeyRing

__all__ = ["Forbidden", "Ingestor", "Unauthorized", "export_response"]

#: each signal's spool kind, and the noun its counters count (`tokentrail_{noun}_received_total`...)
_SPOOLED = {
    "traces": (KIND_TRACES, "spans"),
    "logs": (KIND_LOGS, "logs"),
    "metrics": (KIND_METRICS, "metrics"),
}


class Unauthorized(PermissionError):
    """Authentication is on and the request carries no valid API key (401, UNAUTHENTICATED)."""


class Forbidden(PermissionError):
    """The request's key is valid but may not send data: a read key (403, PERMISSION_DENIED)."""


@dataclass
class Ingestor:
    settings: Settings
    spool: Spool
    stats: Stats
    #: called after each durable append (wakes the writer)
    on_spooled: Callable[[], None] = field(default=lambda: None)
    #: the API keys; by default the settings' (TOKENTRAIL_API_KEYS) only
    keys: KeyRing | None = None

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = KeyRing(self.settings, None)

    def project_for(self, api_key: str | None) -> str:
        """The project an ingest key sends to; with no key anywhere, the default project.

        Raises Unauthorized (missing, unknown, revoked or expired key), Forbidden (a key without
        the ingest scope) or KeysUnavailable (the keys could not be read yet: retry). May read
        the keys from ClickHouse: call it off the event loop."""
        assert self.keys is not None
        if not self.keys.keys_exist():
            return self.settings.default_project
        try:
            grant = self.keys.check(api_key)
        except KeyRefused as exc:
            raise Unauthorized(str(exc)) from None
        if not grant.allows("ingest"):
            raise Forbidden(
                f"API key {grant.key_id} of project {grant.project!r} may only read, not send data: "
                f"send with an ingest key (`tokentrail keys create --project {grant.project} --scope ingest`)"
            )
        return grant.project

    def ingest(self, signal: Signal, body: bytes, encoding: Encoding, project: str) -> Decoded:
        """Raises BadRequest (nothing stored), RecordTooLarge (nothing stored, never will be) or
        SpoolFull (nothing stored, retry later)."""
        kind, noun = _SPOOLED[signal]
        try:
            decoded = decode(signal, body, encoding, self.settings.max_json_depth)
        except ValueError:
            self.stats.add("tokentrail_requests_invalid_total")
            raise
        self.stats.add(f"tokentrail_{noun}_received_total", decoded.accepted + decoded.rejected)
        self.stats.add(f"tokentrail_{noun}_rejected_total", decoded.rejected)
        if decoded.accepted:
            try:
                self.spool.append(kind, project, decoded.payload)
            except RecordTooLarge:
                self.stats.add("tokentrail_requests_invalid_total")
                raise
            except OSError as exc:
                # Whatever the disk said, nothing was acknowledged: a retryable answer, not a 500
                # (which OTLP exporters drop).
                self.stats.add("tokentrail_requests_refused_total")
                raise SpoolUnavailable(f"the spool cannot write now ({exc}); retry later") from exc
            except Exception:
                self.stats.add("tokentrail_requests_refused_total")
                raise
            self.stats.add(f"tokentrail_{noun}_spooled_total", decoded.accepted)
            self.on_spooled()
        return decoded


def export_response(
    signal: Signal, decoded: Decoded
) -> ExportTraceServiceResponse | ExportLogsServiceResponse | ExportMetricsServiceResponse:
    """The OTLP answer to an export: `partial_success` says how many items were rejected, and why."""
    if signal == "traces":
        spans = ExportTraceServiceResponse()
        if decoded.rejected:
            spans.partial_success.rejected_spans = decoded.rejected
            spans.partial_success.error_message = f"{decoded.rejected} spans rejected: {decoded.reason}"
        return spans
    if signal == "metrics":
        metrics = ExportMetricsServiceResponse()
        if decoded.rejected:
            metrics.partial_success.rejected_data_points = decoded.rejected
            metrics.partial_success.error_message = (
                f"{decoded.rejected} data points rejected: {decoded.reason}"
            )
        return metrics
    logs = ExportLogsServiceResponse()
    if decoded.rejected:
        logs.partial_success.rejected_log_records = decoded.rejected
        logs.partial_success.error_message = f"{decoded.rejected} log records rejected: {decoded.reason}"
    return logs
