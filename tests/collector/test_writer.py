"""The writer against the real engine: billable leaves, summaries, outages and refused records."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.otlp import TRACE, add_span
from tokentrail.collector.spool import KIND_TRACES, Spool
from tokentrail.collector.stats import Stats
from tokentrail.collector.writer import Writer, WriterConfig
from tokentrail.collector.writer.pool import FlattenPool


def _framework_wrapping_client_call() -> bytes:
    """A LangChain-style chat span whose child is the client library's chat span; both report usage."""
    request = ExportTraceServiceRequest()
    add_span(
        request,
        "00000000000000a1",
        "",
        "invoke_agent planner",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="planner",
    )
    usage = {"gen_ai__usage__input_tokens": 900, "gen_ai__usage__output_tokens": 100}
    add_span(
        request,
        "00000000000000a2",
        "00000000000000a1",
        "chat gpt-4o",
        gen_ai__operation__name="chat",
        gen_ai__request__model="gpt-4o",
        **usage,
    )
    add_span(
        request,
        "00000000000000a3",
        "00000000000000a2",
        "chat gpt-4o",
        gen_ai__operation__name="chat",
        gen_ai__request__model="gpt-4o",
        gen_ai__provider__name="openai",
        **usage,
    )
    return request.SerializeToString()


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def test_only_the_leaf_model_call_is_billed(store, spool):
    writer = Writer(store.new_client(), spool, Stats())
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    writer.flush()
    rows = store.client.query("SELECT span_id, billable FROM spans FINAL ORDER BY span_id").result_rows
    assert rows == [("00000000000000a1", 0), ("00000000000000a2", 0), ("00000000000000a3", 1)]
    summary = store.client.query(
        "SELECT llm_calls, input_tokens, output_tokens, agent_name, root_name FROM traces FINAL"
    ).result_rows
    assert summary == [(1, 900, 100, "planner", "invoke_agent planner")]


def test_one_request_recorded_twice_is_billed_once(store, spool):
    """The anthropic client traces its own calls beside OpenLLMetry's span of the same request
    (siblings, same response id): one of them is billed, the one that recorded the conversation.
    A parent whose child answered another request (a rejected attempt) keeps its own bill."""
    writer = Writer(store.new_client(), spool, Stats())
    request = ExportTraceServiceRequest()
    usage = {
        "gen_ai__operation__name": "chat",
        "gen_ai__provider__name": "anthropic",
        "gen_ai__request__model": "claude-sonnet-4-5",
        "gen_ai__usage__input_tokens": 900,
        "gen_ai__usage__output_tokens": 100,
    }
    add_span(
        request,
        "00000000000000c1",
        "",
        "invoke_agent support",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="support",
    )
    add_span(
        request,
        "00000000000000c2",
        "00000000000000c1",
        "anthropic.messages.create",
        gen_ai__response__id="msg_1",
        **usage,
    )
    add_span(
        request,
        "00000000000000c3",
        "00000000000000c1",
        "anthropic.chat",
        gen_ai__response__id="msg_1",
        gen_ai__input__messages='[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
        **usage,
    )
    add_span(
        request,
        "00000000000000c4",
        "00000000000000c1",
        "chat claude-sonnet-4-5",
        gen_ai__response__id="msg_3",
        **usage,
    )
    add_span(
        request,
        "00000000000000c5",
        "00000000000000c4",
        "anthropic.messages.create",
        gen_ai__response__id="msg_2",
        **usage,
    )
    spool.append(KIND_TRACES, "default", request.SerializeToString())
    writer.flush()
    rows = store.client.query(
        "SELECT span_id, billable FROM spans FINAL WHERE step_kind = 'llm' ORDER BY span_id"
    ).result_rows
    assert rows == [
        ("00000000000000c2", 0),
        ("00000000000000c3", 1),
        ("00000000000000c4", 1),
        ("00000000000000c5", 1),
    ]
    assert store.client.query("SELECT llm_calls, input_tokens FROM traces FINAL").result_rows == [(3, 2700)]


def test_late_spans_update_the_summary(store, spool):
    writer = Writer(store.new_client(), spool, Stats())
    request = ExportTraceServiceRequest()
    add_span(
        request,
        "00000000000000b2",
        "00000000000000b1",
        "chat gpt-4o",
        gen_ai__operation__name="chat",
        gen_ai__request__model="gpt-4o",
        gen_ai__usage__input_tokens=10,
        gen_ai__usage__output_tokens=1,
    )
    spool.append(KIND_TRACES, "default", request.SerializeToString())
    writer.flush()
    assert store.client.query("SELECT root_name, span_count FROM traces FINAL").result_rows == [
        ("chat gpt-4o", 1)
    ]
    root = ExportTraceServiceRequest()
    add_span(root, "00000000000000b1", "", "invoke_agent late", gen_ai__operation__name="invoke_agent")
    spool.append(KIND_TRACES, "default", root.SerializeToString())
    writer.flush()
    assert store.client.query("SELECT root_name, span_count, input_tokens FROM traces FINAL").result_rows == [
        ("invoke_agent late", 2, 10)
    ]


class _Down:
    """A ClickHouse that is not there: every call fails like a refused connection."""

    def insert(self, *a: Any, **k: Any) -> None:
        raise ConnectionRefusedError("connection refused")

    raw_insert = insert
    command = insert


def test_outage_keeps_everything_in_the_spool_until_clickhouse_returns(store, spool):
    stats = Stats()
    writer = Writer(_Down(), spool, stats)
    writer.backoff_base = 0.001
    writer.stall_seconds = 0.2
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    for _ in range(8):
        assert writer.drain_once() == 0
    assert spool.backlog_bytes > 0
    assert stats.snapshot()["tokentrail_write_errors_total"] == 8
    assert "connection refused" in writer.last_error
    assert not (spool.directory / "dead").exists()  # an outage sets nothing aside
    time.sleep(0.3)
    assert writer.stalled and writer.failing
    metrics = stats.prometheus()
    assert "tokentrail_writer_stalled 1" in metrics
    assert (stats.snapshot()["tokentrail_writer_last_error_timestamp_seconds"] or 0) > time.time() - 60

    writer.client = store.new_client()  # ClickHouse is back
    writer.flush()
    assert spool.backlog_bytes == 0
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(3,)]
    assert not writer.stalled and not writer.failing
    assert "tokentrail_writer_stalled 0" in stats.prometheus()


class _OutOfSpace:
    """The real client, but inserts fail the way a ClickHouse with a full disk answers them."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def raw_insert(self, *a: Any, **k: Any) -> None:
        raise RuntimeError(
            "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_clickhouse_that_answers_but_has_no_space_sets_nothing_aside(store, spool):
    writer = Writer(_OutOfSpace(store.new_client()), spool, Stats())
    writer.backoff_base = 0.001
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    spool.append(KIND_TRACES, "default", _every_field())
    for _ in range(8):
        assert writer.drain_once() == 0
    assert "NOT_ENOUGH_SPACE" in writer.last_error
    assert not (spool.directory / "dead").exists(), "not the records' fault: they wait"
    writer.client = store.new_client()
    writer.flush()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(4,)]


def _poison() -> bytes:
    """A valid OTLP request with a span that starts at 2^64-1 ns, beside a healthy one."""
    request = ExportTraceServiceRequest()
    add_span(request, "00000000000000d1", "", "fine")
    add_span(request, "00000000000000d2", "", "poison")
    request.resource_spans[0].scope_spans[0].spans[1].start_time_unix_nano = 2**64 - 1
    return request.SerializeToString()


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-staged"])
def test_a_poison_record_holds_no_other_record_back(store, spool, tmp_path, workers):
    stats = Stats()
    writer = Writer(
        store.new_client(),
        spool,
        stats,
        WriterConfig(workers=workers, stage_dir=tmp_path / "staging", reads_files=store.embedded),
    )
    poison = _poison()
    try:
        for n in range(6):
            request = ExportTraceServiceRequest()
            add_span(request, f"00000000000000{n:02x}", "", f"step {n}")
            spool.append(KIND_TRACES, "default", request.SerializeToString())
            if n == 2:
                spool.append(KIND_TRACES, "default", poison)
        started = time.monotonic()
        writer.flush()
        took = time.monotonic() - started
    finally:
        writer.stop()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(6,)]
    assert took < 8, "the others are not held back by retries"
    dead = sorted((spool.directory / "dead").iterdir())
    assert [p.suffix for p in dead] == [".pb", ".txt"]
    assert dead[0].read_bytes() == poison, "kept as it was sent, also when read by a worker"
    assert "OverflowError" in dead[1].read_text()
    assert stats.snapshot()["tokentrail_records_dead_lettered_total"] == 1
    assert "OverflowError" in writer.last_error and "dead" in writer.last_error
    assert spool.backlog_bytes == 0


def test_a_record_damaged_on_disk_is_quarantined_and_the_others_stored(store, spool, tmp_path):
    stats = Stats()
    writer = Writer(
        store.new_client(),
        spool,
        stats,
        WriterConfig(workers=1, stage_dir=tmp_path / "staging", reads_files=store.embedded),
    )
    try:
        for n in range(3):
            request = ExportTraceServiceRequest()
            add_span(request, f"00000000000000{n:02x}", "", f"step {n}")
            spool.append(KIND_TRACES, "default", request.SerializeToString())
        damaged = list(spool.read(payloads=False))[1].stored
        assert damaged is not None
        with open(damaged.path, "r+b") as f:  # a bit flipped on disk after the record was acknowledged
            at = damaged.offset + damaged.length - 2
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x10]))
        writer.flush()
    finally:
        writer.stop()
    assert store.client.query("SELECT name FROM spans FINAL ORDER BY name").result_rows == [
        ("step 0",),
        ("step 2",),
    ]
    assert stats.snapshot()["tokentrail_spool_quarantined_records_total"] == 1
    assert len(list((spool.directory / "quarantine").glob("*.bad"))) == 1
    assert spool.backlog_bytes == 0


def test_a_record_clickhouse_refuses_is_set_aside_visibly(store, spool):
    client = store.new_client()
    real_raw_insert = client.raw_insert

    def refuse_poison(table: str, columns: Any, data: bytes, **kw: Any) -> Any:
        if b"poison" in data:
            raise ValueError("Cannot parse input: poison")
        return real_raw_insert(table, columns, data, **kw)

    client.raw_insert = refuse_poison
    stats = Stats()
    writer = Writer(client, spool, stats)
    writer.backoff_base = 0.001
    poison = ExportTraceServiceRequest()
    add_span(poison, "00000000000000c1", "", "poison", gen_ai__operation__name="chat")
    spool.append(KIND_TRACES, "default", poison.SerializeToString())
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    for _ in range(20):
        writer.drain_once()
    writer.flush()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(3,)]
    dead = sorted(p.suffix for p in (spool.directory / "dead").iterdir())
    assert dead == [".pb", ".txt"]
    assert stats.snapshot()["tokentrail_records_dead_lettered_total"] == 1


def test_load_writes_and_summarizes_and_prices_unlisted_snapshots_as_requested(store):
    from tokentrail.collector.writer import load
    from tokentrail.pricing import PriceBook

    request = ExportTraceServiceRequest()
    usage = {
        "gen_ai__usage__input_tokens": 1000,
        "gen_ai__usage__output_tokens": 200,
        "gen_ai__provider__name": "openai",
        "gen_ai__operation__name": "chat",
        "gen_ai__request__model": "gpt-4o-mini",
    }
    add_span(
        request,
        "00000000000000c1",
        "",
        "chat gpt-4o-mini",
        gen_ai__response__model="gpt-4o-mini-2099-01-01",
        **usage,
    )
    add_span(
        request, "00000000000000c2", "", "chat gpt-4o-mini", gen_ai__response__model="gpt-4o-mini", **usage
    )
    prices = PriceBook()
    assert prices.cost("openai", "gpt-4o-mini-2099-01-01", input_tokens=1000, output_tokens=200) is None
    assert load(store.client, "default", [request.SerializeToString()], prices) == 2
    costs = store.client.query("SELECT cost_usd, cost_source FROM spans FINAL ORDER BY span_id").result_rows
    expected = prices.cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=200)
    assert expected is not None
    assert costs == [(expected, "computed"), (expected, "computed")]
    assert store.client.query("SELECT cost_usd, unpriced_calls FROM traces FINAL").result_rows == [
        (2 * expected, 0)
    ]


def test_embedding_calls_are_billed_on_their_input(store):
    from tokentrail.collector.writer import load
    from tokentrail.pricing import PriceBook

    request = ExportTraceServiceRequest()
    add_span(
        request,
        "00000000000000e1",
        "",
        "embeddings text-embedding-3-small",
        gen_ai__operation__name="embeddings",
        gen_ai__provider__name="openai",
        gen_ai__request__model="text-embedding-3-small",
        gen_ai__usage__input_tokens=100_000,
    )
    prices = PriceBook()
    load(store.client, "default", [request.SerializeToString()], prices)
    expected = prices.cost("openai", "text-embedding-3-small", input_tokens=100_000, output_tokens=0)
    assert expected is not None and expected > 0
    rows = store.client.query("SELECT step_kind, billable, cost_usd FROM spans FINAL").result_rows
    assert rows == [("embedding", 1, expected)]
    assert store.client.query("SELECT llm_calls, cost_usd FROM traces FINAL").result_rows == [(1, expected)]


def _every_field() -> bytes:
    """One span using every OTLP field the spans table keeps, with nanosecond-exact times."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "checkout"
    scope = rs.scope_spans.add()
    scope.scope.name, scope.scope.version = "acme.agent", "1.2.3"
    span = scope.spans.add()
    span.trace_id, span.span_id, span.parent_span_id = (
        TRACE,
        bytes.fromhex("00000000000000f2"),
        bytes.fromhex("00000000000000f1"),
    )
    span.trace_state, span.name, span.kind = "vendor=1", "tool lookup", Span.SpanKind.SPAN_KIND_CLIENT
    span.start_time_unix_nano = 1_700_000_000_123_456_789
    span.end_time_unix_nano = 1_700_000_001_987_654_321
    span.status.code, span.status.message = Status.StatusCode.STATUS_CODE_ERROR, "boom <b>"
    for key, setter in (
        ("s", lambda v: setattr(v, "string_value", "text ✓")),
        ("i", lambda v: setattr(v, "int_value", -7)),
        ("d", lambda v: setattr(v, "double_value", 0.25)),
        ("b", lambda v: setattr(v, "bool_value", True)),
        ("raw", lambda v: setattr(v, "bytes_value", b"\x00\xff")),
    ):
        kv = span.attributes.add()
        kv.key = key
        setter(kv.value)
    kv = span.attributes.add()
    kv.key = "list"
    kv.value.array_value.values.add().string_value = "a"
    kv.value.array_value.values.add().int_value = 2
    for n, offset in ((1, 5), (2, 999_999_999)):
        event = span.events.add()
        event.time_unix_nano, event.name = span.start_time_unix_nano + offset, f"step {n}"
        attr = event.attributes.add()
        attr.key, attr.value.int_value = "n", n
    link = span.links.add()
    link.trace_id, link.span_id, link.trace_state = (
        bytes.fromhex("11" * 16),
        bytes.fromhex("22" * 8),
        "other=2",
    )
    attr = link.attributes.add()
    attr.key, attr.value.string_value = "why", "retry of"
    return request.SerializeToString()


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-staged"])
def test_every_otel_field_survives_the_trip(store, spool, tmp_path, workers):
    writer = Writer(
        store.new_client(),
        spool,
        Stats(),
        WriterConfig(workers=workers, stage_dir=tmp_path / "staging", reads_files=store.embedded),
    )
    try:
        spool.append(KIND_TRACES, "default", _every_field())
        writer.flush()
    finally:
        writer.stop()
    row = store.client.query(
        "SELECT trace_id, span_id, parent_span_id, trace_state, name, span_kind, toUnixTimestamp64Nano(start_time),"
        " toUnixTimestamp64Nano(end_time), duration_ns, service_name, scope_name, scope_version, status_code,"
        " status_message, attributes, arrayMap(t -> toUnixTimestamp64Nano(t), events.time), events.name,"
        " events.attributes, links.trace_id, links.span_id, links.trace_state, links.attributes, step_kind,"
        " cost_usd, error_type FROM spans FINAL"
    ).result_rows
    assert row == [
        (
            TRACE.hex(),
            "00000000000000f2",
            "00000000000000f1",
            "vendor=1",
            "tool lookup",
            "CLIENT",
            1_700_000_000_123_456_789,
            1_700_000_001_987_654_321,
            1_864_197_532,
            "checkout",
            "acme.agent",
            "1.2.3",
            "ERROR",
            "boom <b>",
            {"s": "text ✓", "i": "-7", "d": "0.25", "b": "true", "raw": "AP8=", "list": '["a",2]'},
            [1_700_000_000_123_456_794, 1_700_000_001_123_456_788],
            ["step 1", "step 2"],
            [{"n": "1"}, {"n": "2"}],
            ["11" * 16],
            ["22" * 8],
            ["other=2"],
            [{"why": "retry of"}],
            "other",
            None,
            "_OTHER",
        )
    ]


class _CountingClient:
    """The real client, counting the span inserts it is asked for: the statements of those that
    read staged files, and the pieces of each insert sent to the database (their sizes)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.span_inserts: list[str] = []
        self.streamed: list[list[int]] = []

    def command(self, sql: str, **kw: Any) -> Any:
        if sql.startswith("INSERT INTO spans ("):
            self.span_inserts.append(sql)
        return self.client.command(sql, **kw)

    def raw_insert(self, table: str, columns: Any, data: Any, **kw: Any) -> Any:
        if table == "spans":
            pieces = [data] if isinstance(data, bytes) else list(data)
            self.streamed.append([len(piece) for piece in pieces])
            data = iter(pieces)
        return self.client.raw_insert(table, columns, data, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_chunks_flattened_apart_are_inserted_together(store, spool, tmp_path):
    stage = tmp_path / "staging"
    stage.mkdir()
    (stage / "left-by-a-crash.arrow").write_bytes(b"half a batch")
    client = _CountingClient(store.new_client())
    stats = Stats()
    # one span per chunk, four chunks per insert: eight requests take two inserts
    config = WriterConfig(
        workers=1, chunk_spans=1, batch_spans=4, stage_dir=stage, reads_files=store.embedded
    )
    writer = Writer(client, spool, stats, config)
    assert not list(stage.iterdir()), "a previous run's staged chunks are cleared (the spool replays them)"
    for n in range(8):
        request = ExportTraceServiceRequest()
        add_span(request, f"00000000000000{n:02x}", "", f"step {n}")
        spool.append(KIND_TRACES, "default", request.SerializeToString())
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while (
            stats.snapshot().get("tokentrail_spans_stored_total") or 0
        ) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(8,)]
    if store.embedded:  # the database reads the four staged files of each insert itself
        assert len(client.span_inserts) == 2 and not client.streamed
        assert all("FROM INFILE" in sql and sql.count(".arrow") == 4 for sql in client.span_inserts)
    else:  # they are sent to it, one stream each, a record batch at a time (never whole)
        assert len(client.streamed) == 2 and not client.span_inserts
        assert all(len(pieces) >= 4 for pieces in client.streamed)
    assert not list(stage.iterdir()), "staged chunks are removed once inserted"
    assert spool.backlog_bytes == 0


def test_a_staging_path_clickhouse_would_read_as_a_pattern_still_works(store, spool, tmp_path):
    stage = tmp_path / "it's {odd} *"
    writer = Writer(
        store.new_client(),
        spool,
        Stats(),
        WriterConfig(workers=1, chunk_spans=1, batch_spans=4, stage_dir=stage),
    )
    try:
        spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
        writer.flush()
    finally:
        writer.stop()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(3,)]
    assert not list(stage.iterdir())


def test_a_flattening_worker_loads_neither_pandas_nor_the_database_client(spool, tmp_path):
    request = ExportTraceServiceRequest()
    add_span(request, "0000000000000001", "", "step")
    spool.append(KIND_TRACES, "default", request.SerializeToString())
    pool = FlattenPool(1, tmp_path / "staging", None)
    try:
        rows = pool.submit(list(spool.read(spool.checkpoint, payloads=False))).rows.result()
        assert rows.span_count == 1 and rows.span_file is not None and rows.span_file.exists()
        executor = pool._executor
        assert executor is not None
        loaded = executor.submit(eval, "sorted(__import__('sys').modules)").result()
    finally:
        pool.shutdown()
    assert "pyarrow" in loaded, "the worker flattened in it"
    assert not {"pandas", "clickhouse_connect", "chdb", "tokentrail.collector.writer"} & set(loaded)
