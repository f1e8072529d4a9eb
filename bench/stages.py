"""Where flattening's CPU goes: µs per span of each stage, on `bench.ingest`'s payloads.

Flattening (`tokentrail.collector.flatten.flatten_records`) runs in the collector's workers; here
it runs in this process, on the same payloads, with the same price book and redaction rules, and
each stage is timed with `time.process_time` around the functions that do it:

- decode: attribute lists read from the protobuf messages (`flatten.attributes`);
- normalize: the conventions mapped onto the normalized columns (`flatten.normalize`);
- price: the catalog's cost of each model call (`flatten.call_cost`; in older trees `price_call`);
- redact: the request's strings searched and redacted (`redact.Scan.run`);
- columns: the rows built as Arrow columns (`flatten._record_batch`, a request at a time) and
  written as a stream (`flatten.SpanBatch.arrow`; in older trees, which build the columns there too);
- write: the stream written to a staged file (`flatten.SpanBatch.write_arrow`; older trees write
  what `arrow` returned, counted in rest);
- rest: everything else (span fields, rows, the scan's bookkeeping, timers).

A stage whose function a tree lacks is left out (and counted in rest), so that `bench.ingest
--baseline` can time an older tree too: run as `python -m bench.stages` with that tree first on
PYTHONPATH; prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.payloads import encoded_batches

_FLATTEN = "tokentrail.collector.flatten"
#: stage -> the functions that do it: (module, attribute path), each timed if the tree has it
_STAGES = {
    "decode": [(_FLATTEN, "attributes")],
    "normalize": [(_FLATTEN, "normalize")],
    "price": [(_FLATTEN, "price_call"), (_FLATTEN, "call_cost")],
    "redact": [("tokentrail.collector.redact", "Scan.run")],
    "columns": [(_FLATTEN, "_record_batch"), (_FLATTEN, "SpanBatch.arrow")],
    "write": [(_FLATTEN, "SpanBatch.write_arrow")],
}


def _timed(spent: dict[str, float], stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    clock = time.process_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[stage] += clock() - started

    return timed


def _patch(spent: dict[str, float]) -> list[str]:
    patched = []
    for stage, functions in _STAGES.items():
        for module_name, path in functions:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            if owner is None or not callable(getattr(owner, name, None)):
                continue
            spent[stage] = 0.0
            setattr(owner, name, _timed(spent, stage, getattr(owner, name)))
            patched.append(stage)
    return patched


def stage_us(requests: int, spans: int, seed: int = 7) -> dict[str, float]:
    """CPU µs per span of each stage of flattening `requests` requests of `spans` spans."""
    from tokentrail.collector.flatten import flatten_records
    from tokentrail.collector.redact import Redactor
    from tokentrail.collector.spool import KIND_TRACES
    from tokentrail.pricing import PriceBook
    from tokentrail.server.settings import from_env

    payloads = encoded_batches(requests + 1, spans_per_request=spans, seed=seed)
    pricer = PriceBook()
    redactor = Redactor.from_settings(from_env(dict(os.environ)))
    spent: dict[str, float] = {}
    flatten_records([(KIND_TRACES, "default", payloads[0])], pricer, redactor=redactor)  # warm up
    _patch(spent)
    gc.disable()  # as in the workers
    started = time.process_time()
    with tempfile.TemporaryDirectory(prefix="tokentrail-stages-") as stage_dir:
        for payload in payloads[1:]:  # staged, as the workers do with the embedded database
            flatten_records([(KIND_TRACES, "default", payload)], pricer, Path(stage_dir), redactor).discard()
    total = time.process_time() - started
    gc.enable()
    count = requests * spans
    result = {stage: seconds / count * 1e6 for stage, seconds in spent.items()}
    result["rest"] = (total - sum(spent.values())) / count * 1e6
    result["total"] = total / count * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--spans", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps({k: round(v, 1) for k, v in stage_us(args.requests, args.spans).items()}))


if __name__ == "__main__":
    main()
