"""The third-party corpus: real third-party instrumentations, run against the model stand-in, their
spans sent over OTLP to a real collector, each model request labelled with the waste it must be
charged to (by construction of its case).

Each emitter is a script in `emit/`, run by the Python of the environment that holds its
packages (`make corpus-envs` builds `.venv-emitters` and `.venv-openlit` from the pinned
requirement files here), so no two instrumentations patch the same client in one process. A
request's label is written by the stand-in into the response id or error message; here it is
found again in whatever the instrumentation recorded, whatever it named things.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.scoring import DOLLAR_DETECTORS
from tokentrail.pricing import PriceBook

__all__ = [
    "EMITTERS",
    "REPO",
    "Emitted",
    "expected_charges",
    "found_charges",
    "ingest_key",
    "missing_envs",
    "run_emitters",
    "span_labels",
]

REPO = Path(__file__).resolve().parents[3]

#: emitter script (emit/<name>.py) -> the environment whose packages it runs with
EMITTERS: dict[str, str] = {
    "legacy_otel": "emitters",
    "openinference": "emitters",
    "openllmetry": "emitters",
    "openlit": "openlit",
    "otel_contrib": "emitters",
    "anthropic_native": "emitters",
    "pydantic_ai": "emitters",
    "openai_agents": "emitters",
    "langchain": "emitters",
}

_LABEL = re.compile(r"ttl-([a-z0-9_]+)-(\d+)-x")
_PROVIDER = {"chat": "openai", "responses": "openai", "embeddings": "openai", "messages": "anthropic"}


def env_python(env: str) -> Path:
    return REPO / f".venv-{env}" / "bin" / "python"


def missing_envs(names: Iterable[str] = EMITTERS) -> list[str]:
    return sorted({EMITTERS[n] for n in names if not env_python(EMITTERS[n]).exists()})


@dataclass
class Emitted:
    """What one emitter script ran: its labels, expected detectors and answered requests."""

    emitter: str
    versions: dict[str, str]
    expected: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    seconds: float = 0.0
    stderr: str = field(default="", repr=False)


def ingest_key(emitter: str) -> str:
    return f"corpus-key-{emitter}"


def _run_one(name: str, endpoint: str, workdir: Path) -> Emitted:
    out = workdir / f"{name}.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TOKENTRAIL_", "OPENAI_", "ANTHROPIC_"))
    }
    # each emitter is an application of its own: its own project, through its own ingest key
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'instrumentation'}",
        OPENAI_API_KEY="sk-test",
        ANTHROPIC_API_KEY="sk-ant-test",
        OTEL_SERVICE_NAME=f"corpus-{name}",
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{ingest_key(name)}",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(env_python(EMITTERS[name])),
            "-m",
            f"tests.analysis.thirdparty.emit.{name}",
            "--endpoint",
            endpoint,
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"emitter {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    data = json.loads(out.read_text())
    return Emitted(
        name, data["versions"], data["expected"], data["calls"], time.monotonic() - started, proc.stderr
    )


def run_emitters(
    endpoint: str, workdir: Path, names: Iterable[str] = EMITTERS, parallel: int = 2
) -> list[Emitted]:
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda n: _run_one(n, endpoint, workdir), names))


def _cost(prices: PriceBook, call: dict[str, Any]) -> float:
    if call["status"] != 200:
        return 0.0  # an error answer is not billed
    cost = prices.cost(
        _PROVIDER.get(call["api"], ""),
        call["model"],
        input_tokens=call["input_tokens"],
        output_tokens=call["output_tokens"],
        cache_read_tokens=call["cache_read_tokens"],
        cache_write_tokens=call["cache_write_tokens"],
    )
    assert cost is not None, f"the catalog does not price {call['model']}"
    return cost


def expected_charges(emitted: list[Emitted], prices: PriceBook) -> dict[tuple[Any, str], float | None]:
    """(label, detector) -> the wasted USD a case implies: a call's whole cost for the detectors
    that take it whole, None (not worked out) for the others."""
    charges: dict[tuple[Any, str], float | None] = {}
    for run in emitted:
        calls = {c["label"]: c for c in run.calls if c["label"]}
        for item in run.expected:
            for detector in item["detectors"]:
                usd = _cost(prices, calls[item["label"]]) if detector in DOLLAR_DETECTORS else None
                if usd is not None and item.get("usage_lost"):
                    usd = 0.0  # billed, but no span says by how much
                charges[(_name(run.emitter, item), detector)] = usd
    return charges


def _name(emitter: str, item: dict[str, Any]) -> str:
    return f"{emitter}:{item['case']}/{item['name']}"


def span_labels(client: Any) -> dict[tuple[str, str], str]:
    """(trace id, span id) -> the label of the request the span recorded: the newest label found in
    its attributes, events or status (a call's input may quote earlier responses' ids; its own
    response, or its own error, is the newest). A model span that recorded nothing of its answer
    (a bridge that drops the response of a failed call) takes the label of its HTTP attempt."""
    rows = client.query(
        "SELECT trace_id, span_id, parent_span_id, step_subkind, attributes, status_message, events.attributes, "
        "input_messages, output_messages FROM spans FINAL"
    ).result_rows
    found: dict[tuple[str, str], str] = {}
    from_attempts: dict[tuple[str, str], tuple[int, str]] = {}
    for trace_id, span_id, parent, subkind, attrs, status, events, inp, out in rows:
        text = " ".join([*attrs.values(), status, *(v for e in events for v in e.values()), inp, out])
        labels = {(int(m[2]), m[0]) for m in _LABEL.finditer(text)}
        if labels:
            found[(trace_id, span_id)] = max(labels)[1]
            if subkind == "http":
                from_attempts[(trace_id, parent)] = max(
                    from_attempts.get((trace_id, parent), (0, "")), max(labels)
                )
    for key, (_, label) in from_attempts.items():
        found.setdefault(key, label)
    return found


def found_charges(client: Any, emitted: list[Emitted]) -> dict[tuple[Any, str], float | None]:
    """(label, detector) -> wasted USD, from each trace's latest analysis. A finding on a span
    without a label is keyed by the span itself (always a false positive)."""
    names = {item["label"]: _name(run.emitter, item) for run in emitted for item in run.expected}
    labels = span_labels(client)
    rows = client.query(
        "SELECT trace_id, span_id, detector, wasted_usd FROM waste_findings "
        "WHERE (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL)"
    ).result_rows
    found: dict[tuple[Any, str], float | None] = {}
    for trace_id, span_id, detector, usd in rows:
        label = labels.get((trace_id, span_id), "")
        key = names.get(label) or f"unlabelled span {span_id} of trace {trace_id}"
        found[(key, detector)] = (found.get((key, detector)) or 0.0) + (usd or 0.0)
    return found
