"""The reconciler's jobs, each on its own and through the one entry point the writer, repricing and
the analysis rely on: what it derives is read back from ClickHouse."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.otlp import TRACE, add_span
from tokentrail.collector.writer import load
from tokentrail.store.reconcile import file_outcomes, reconcile, summarize, unbill_duplicates

TRACE_ID = TRACE.hex()
_CHAT = {
    "gen_ai__operation__name": "chat",
    "gen_ai__provider__name": "anthropic",
    "gen_ai__usage__input_tokens": 900,
    "gen_ai__usage__output_tokens": 100,
}


def _request() -> bytes:
    """An agent run: a framework span around the client's own span of one request, the same
    request recorded twice by two siblings (one with the conversation), a call that names only
    the model it asked for, and an outcome recorded on the root."""
    request = ExportTraceServiceRequest()
    add_span(
        request,
        "00000000000000e1",
        "",
        "invoke_agent support",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="support",
        tokentrail__outcome__name="resolved",
        tokentrail__outcome__success="true",
    )
    add_span(request, "00000000000000e2", "00000000000000e1", "ChatAnthropic", **_CHAT)
    add_span(
        request,
        "00000000000000e3",
        "00000000000000e2",
        "chat claude-sonnet-4-5",
        gen_ai__request__model="claude-sonnet-4-5",
        gen_ai__response__model="claude-sonnet-4-5-20250929",
        gen_ai__response__id="msg_1",
        **_CHAT,
    )
    twin = {"gen_ai__request__model": "claude-haiku-4-5", "gen_ai__response__id": "msg_2", **_CHAT}
    add_span(request, "00000000000000e4", "00000000000000e1", "anthropic.chat", **twin)
    add_span(
        request,
        "00000000000000e5",
        "00000000000000e1",
        "anthropic.chat",
        gen_ai__input__messages='[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
        **twin,
    )
    return request.SerializeToString()


def _forget_derived(client) -> None:
    """Back to the spans as the writer inserted them: everything billable, no summary, no outcome."""
    client.command(
        "INSERT INTO spans SELECT * REPLACE (toUInt8(step_kind = 'llm') AS billable, now64(3) AS ingested_at) "
        "FROM spans FINAL"
    )
    client.command("TRUNCATE TABLE traces")
    client.command("TRUNCATE TABLE outcomes")


def _billable(client) -> dict[str, int]:
    rows = client.query("SELECT span_id, billable FROM spans FINAL WHERE step_kind = 'llm'").named_results()
    return {r["span_id"][-2:]: r["billable"] for r in rows}


def _summary(client) -> dict[str, Any]:
    (row,) = client.query(
        "SELECT * EXCEPT (updated_at) FROM traces FINAL WHERE project = 'default'"
    ).named_results()
    return dict(row)


def test_each_job_on_its_own(store):
    client = store.client
    load(client, "default", [_request()])
    _forget_derived(client)

    # the wrapper and the twin that recorded less are unbilled; the leaf and the other twin stay
    assert unbill_duplicates(client, "default", [TRACE_ID]) == 2
    assert _billable(client) == {"e2": 0, "e3": 1, "e4": 0, "e5": 1}

    summarize(client, "default", [TRACE_ID])
    summary = _summary(client)
    assert (summary["llm_calls"], summary["input_tokens"], summary["agent_name"]) == (2, 1800, "support")
    # the model a span is attributed to: the served one, else the one asked for (spans.model)
    assert sorted(summary["models"]) == ["claude-haiku-4-5", "claude-sonnet-4-5-20250929"]
    billed_models = client.query(
        "SELECT DISTINCT model FROM spans FINAL WHERE billable = 1 ORDER BY model"
    ).result_columns[0]
    assert sorted(summary["models"]) == billed_models

    assert client.query("SELECT count() FROM outcomes").result_rows == [(0,)]
    file_outcomes(client, "default", [TRACE_ID])
    outcomes = list(
        client.query("SELECT target_kind, target_id, name, success FROM outcomes FINAL").named_results()
    )
    assert outcomes == [{"target_kind": "trace", "target_id": TRACE_ID, "name": "resolved", "success": 1}]


def test_reconcile_runs_every_job_and_again_changes_nothing(store):
    client = store.client
    load(client, "default", [_request()])
    as_written = (_billable(client), _summary(client))
    _forget_derived(client)

    assert reconcile(client, [("default", TRACE_ID)]) == 1
    assert (_billable(client), _summary(client)) == as_written
    assert reconcile(client, [("default", TRACE_ID)]) == 1  # a replayed batch: nothing counts twice
    assert (_billable(client), _summary(client)) == as_written
    assert client.query("SELECT count() FROM outcomes FINAL").result_rows == [(1,)]


def test_only_the_newest_version_of_a_span_counts(store):
    """A span re-sent changed, its older version still in a part of its own beside the newer: the
    reconciler picks the trace's rows before FINAL merges them, yet what it derives comes from the
    newest version only. The older root recorded an outcome; the newer one does not."""
    client = store.client
    client.command("SYSTEM STOP MERGES spans")  # keep both versions apart, as before a merge
    load(client, "default", [_request()])
    resent = ExportTraceServiceRequest()
    add_span(
        resent,
        "00000000000000e1",
        "",
        "invoke_agent support",
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name="support",
    )
    load(client, "default", [resent.SerializeToString()])
    assert client.query("SELECT count() FROM spans WHERE span_id = '00000000000000e1'").result_rows == [(2,)]
    client.command("TRUNCATE TABLE outcomes")
    client.command("TRUNCATE TABLE traces")

    assert reconcile(client, [("default", TRACE_ID)]) == 1
    assert client.query("SELECT count() FROM outcomes").result_rows == [(0,)]
    summary = _summary(client)
    # five spans, each once; the two model calls the first load left billed
    assert (summary["span_count"], summary["llm_calls"], summary["input_tokens"]) == (5, 2, 1800)
