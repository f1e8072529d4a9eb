"""What every third-party scenario shares. Runs inside a venv of third-party packages (see
`tests/analysis/thirdparty/requirements-*.txt`), never with Tokentrail's server code: only the
model stand-in is imported from this repository.

A scenario script builds one `Run`, points the third-party instrumentation at `run.provider` (or
lets it build its own provider towards `run.endpoint`), scripts the stand-in's replies with
`run.reply(...)`, one per request it will make, and calls `run.finish()`. Each scripted request
carries a label that the stand-in writes into the response id or error message, and the waste
the request must be charged to (by construction of the case). `finish()` flushes the spans and
writes what the test needs to score the ledger: the labels, their expected detectors, and every
request with the usage it was answered with.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tokentrail.demo.llm_server import LLMServer, Reply

__all__ = ["CACHE_TTL", "Reply", "Run"]

#: the stand-in's prompt-cache lifetime in corpus runs; the analysis is run with the same value
CACHE_TTL = 2.0


class Run:
    def __init__(
        self, emitter: str, packages: tuple[str, ...], *, own_provider: bool = True, reply: str = "Done."
    ) -> None:
        parser = argparse.ArgumentParser()
        parser.add_argument("--endpoint", required=True, help="the collector's OTLP/HTTP base URL")
        parser.add_argument("--out", required=True, type=Path, help="where to write the labels (JSON)")
        args = parser.parse_args()
        self.emitter = emitter
        self.endpoint: str = args.endpoint
        self.out: Path = args.out
        self.packages = packages
        self.server = LLMServer(reply=reply, cache_ttl=CACHE_TTL).__enter__()
        self.base_url = self.server.base_url
        self.expected: list[dict[str, Any]] = []
        self._case = ""
        self._seq = 0
        self.provider: TracerProvider | None = None
        if own_provider:
            self.provider = TracerProvider(resource=Resource.create({"service.name": f"corpus-{emitter}"}))
            exporter = OTLPSpanExporter(endpoint=f"{self.endpoint}/v1/traces")
            self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
            trace.set_tracer_provider(self.provider)

    @contextmanager
    def case(self, name: str) -> Iterator[None]:
        """Requests scripted inside are named `{case}/{name}` in reports."""
        self._case = name
        try:
            yield
        finally:
            self._case = ""

    def reply(
        self, name: str, *waste: str, usage_lost: bool = False, unrecorded: bool = False, **how: Any
    ) -> Reply:
        """A scripted reply for the next request, labelled `name`; `waste`: the detectors that must
        charge this request (none: it is productive), `how`: the `Reply` fields (status, tool,
        truncated, text, usage, retry_after). `usage_lost`: the instrumentation records no usage
        for this request although it was billed, so its dollars cannot be known from the trace.
        `unrecorded`: no span records anything of this request (an attempt a client retried
        without a span of its own), so it cannot be found, nor charged."""
        assert not (unrecorded and waste), "a request no span records cannot be charged"
        self._seq += 1
        label = f"ttl-{self.emitter}-{self._seq}-x"
        self.expected.append(
            {
                "label": label,
                "case": self._case,
                "name": name,
                "detectors": list(waste),
                "usage_lost": usage_lost,
                "unrecorded": unrecorded,
            }
        )
        return Reply(label=label, **how)

    def script(self, *replies: Reply) -> None:
        self.server.script(*replies)

    def finish(self) -> None:
        provider = self.provider or trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
        self.server.__exit__(None, None, None)
        unused = len(self.server._script)
        versions = {}
        for package in self.packages:
            try:
                versions[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                versions[package] = ""
        self.out.write_text(
            json.dumps(
                {
                    "emitter": self.emitter,
                    "versions": versions,
                    "expected": self.expected,
                    "calls": [asdict(c) for c in self.server.calls],
                    "unused_replies": unused,
                },
                indent=1,
            )
        )
        if unused:
            print(f"{self.emitter}: {unused} scripted replies were never requested", file=sys.stderr)
            sys.exit(3)
