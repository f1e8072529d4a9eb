"""The collector's own health counters, exposed as Prometheus text on /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Stats"]

_HELP = {
    "tokentrail_spans_received_total": "Spans received in OTLP requests (accepted or rejected).",
    "tokentrail_spans_rejected_total": "Spans rejected for invalid ids or undecodable requests.",
    "tokentrail_spans_spooled_total": "Spans written durably to the spool and acknowledged.",
    "tokentrail_spans_stored_total": "Spans inserted into ClickHouse.",
    "tokentrail_logs_received_total": "Log records received.",
    "tokentrail_logs_rejected_total": "Log records rejected.",
    "tokentrail_logs_spooled_total": "Log records written durably to the spool and acknowledged.",
    "tokentrail_logs_stored_total": "Log records inserted into ClickHouse.",
    "tokentrail_requests_refused_total": "Requests answered 503/UNAVAILABLE: the spool was full or could not write.",
    "tokentrail_requests_invalid_total": "Requests answered 4xx/INVALID_ARGUMENT.",
    "tokentrail_write_errors_total": "Failed writes to ClickHouse (retried, or the record set aside).",
    "tokentrail_records_dead_lettered_total": "Spool records that flattening or ClickHouse refused on their own, "
    "kept in spool/dead.",
}


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(_HELP, 0)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self._counters[name] += value

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (read when asked); its name ends in `_total`."""
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name}")
        self._gauges[name] = (help_text, read)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            values: dict[str, float] = dict(self._counters)
        for name, (_, read) in self._gauges.items():
            try:
                values[name] = read()
            except Exception:
                values[name] = float("nan")
        return values

    def prometheus(self) -> str:
        lines = []
        for name, value in self.snapshot().items():
            kind = "counter" if name.endswith("_total") else "gauge"
            help_text = _HELP.get(name) or self._gauges[name][0]
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
