from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import encoded_batches, export_request, iter_spans


def test_traces_are_well_formed():
    request = export_request(1000, random.Random(3))
    spans = list(iter_spans(request))
    assert len(spans) == 1000
    ids = {(s.trace_id, s.span_id) for s in spans}
    assert len(ids) == 1000
    for span in spans:
        assert len(span.trace_id) == 16 and len(span.span_id) == 8
        if span.parent_span_id:
            assert (span.trace_id, span.parent_span_id) in ids
        assert span.end_time_unix_nano >= span.start_time_unix_nano


def test_deterministic_and_about_two_kilobytes_a_span():
    first, second = encoded_batches(2, 500, seed=11), encoded_batches(2, 500, seed=11)
    assert first == second != encoded_batches(2, 500, seed=12)
    per_span = sum(map(len, first)) / 1000
    assert 1500 < per_span < 2600
    assert len(list(iter_spans(ExportTraceServiceRequest.FromString(first[0])))) == 500
