"""Mutated and random OTLP bodies from one sender must not hold back anyone else's spans.

Valid agent traces are damaged (bytes flipped, inserted, cut; span times set to 0, 2^63 or
2^64-1) and posted over HTTP, with a valid canary request every 100 inputs. Whatever the
receivers acknowledge must be stored, and every canary must be in ClickHouse moments after the
last input, with nothing set aside. `TOKENTRAIL_FUZZ_INPUTS=100000` runs the long version.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import encoded_batches
from tests.support.collector import running_collector

pytestmark = pytest.mark.slow

_INPUTS = int(os.environ.get("TOKENTRAIL_FUZZ_INPUTS", "3000"))
_CANARY_EVERY = 100
_EDGE_TIMES = [0, 1, 2**63, 2**64 - 1, 10**19, 4_102_444_800 * 10**9]
_PROTOBUF = {"content-type": "application/x-protobuf"}


def _edge_time(rng: random.Random, seed: bytes) -> bytes:
    request = ExportTraceServiceRequest.FromString(seed)
    spans = request.resource_spans[0].scope_spans[0].spans
    span = spans[rng.randrange(len(spans))]
    setattr(span, rng.choice(["start_time_unix_nano", "end_time_unix_nano"]), rng.choice(_EDGE_TIMES))
    return request.SerializeToString()


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    if rng.random() < 0.15:
        return _edge_time(rng, seed)
    body = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(body) + 1)
        op = rng.random()
        if op < 0.6 and at < len(body):
            body[at] = rng.randrange(256)
        elif op < 0.8:
            body[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            del body[at : at + rng.randint(1, 8)]
    return bytes(body)


def _canary(rng: random.Random, seed: bytes) -> tuple[bytes, str]:
    request = ExportTraceServiceRequest.FromString(seed)
    trace_id = rng.randbytes(16)
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.trace_id = trace_id
    return request.SerializeToString(), trace_id.hex()


def test_a_fuzzing_sender_holds_back_no_one(settings, store) -> None:
    rng = random.Random(5)
    seeds = list(encoded_batches(10, 5))
    answers: Counter[int] = Counter()
    canaries: list[str] = []
    with running_collector(settings, store) as tt, httpx.Client(timeout=30) as client:

        def post(body: bytes) -> int:
            return client.post(f"{tt.http_url}/v1/traces", content=body, headers=_PROTOBUF).status_code

        for n in range(_INPUTS):
            if n % _CANARY_EVERY == 0:
                body, trace_id = _canary(rng, seeds[0])
                assert post(body) == 200
                canaries.append(trace_id)
            elif rng.random() < 0.9:
                answers[post(_mutate(rng, rng.choice(seeds)))] += 1
            else:
                answers[post(rng.randbytes(rng.randint(0, 300)))] += 1
        last_input = time.monotonic()

        def stored() -> int:
            sql = "SELECT uniqExact(trace_id) FROM spans FINAL WHERE trace_id IN {ids:Array(String)}"
            return int(tt.query(sql, ids=canaries)[0][0])

        while stored() < len(canaries) and time.monotonic() - last_input < 10:
            time.sleep(0.2)
        waited = time.monotonic() - last_input
        writer = tt.collector.status()["writer"]
        print(
            f"\nreceiver fuzz: {_INPUTS} inputs, answers {dict(sorted(answers.items()))}, "
            f"{stored()}/{len(canaries)} canaries stored {waited:.1f}s after the last input"
        )
        assert stored() == len(canaries)
        assert not [status for status in answers if status >= 500]
        assert answers[200] > 0 and answers[400] > 0  # both paths were exercised
        assert writer["dead_lettered_records"] == 0 and writer["last_error"] == "" and not writer["stalled"]
        # every acknowledged damaged body was stored too: the spool drains to nothing
        tt.flush()
        assert tt.collector.spool.backlog_bytes == 0
