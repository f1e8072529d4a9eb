"""Outcomes: on the trace, over HTTP, late, early, several at once; and what the ledger makes of them."""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from tests.support.collector import running_collector
from tests.support.recorder import Recorder, prices
from tokentrail.analysis.run import Analyzer
from tokentrail.store.outcomes import traces_with_outcome

_OUTCOME = traces_with_outcome("t.trace_id, t.agent_name", "project = {project:String}")


def _send(tt: Any, rec: Recorder) -> None:
    body = encode_spans(rec.finished()).SerializeToString()
    reply = httpx.post(
        f"{tt.http_url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
    )
    assert reply.status_code == 200


def _run(rec: Recorder, agent: str, **ids: Any) -> str:
    attrs: dict[str, Any] = {"gen_ai__operation__name": "invoke_agent", "gen_ai__agent__name": agent}
    attrs.update({k: v for k, v in ids.items() if k != "outcome"})
    if "outcome" in ids:
        attrs.update(tokentrail__outcome__name="done", tokentrail__outcome__success=ids["outcome"])
    with rec.span(f"invoke_agent {agent}", **attrs) as root:
        rec.chat("gpt-4o", "openai", 1000, 50)
    return format(root.get_span_context().trace_id, "032x")


def _outcomes(tt: Any) -> dict[str, tuple[str, int]]:
    rows = tt.query(
        _OUTCOME.replace("SELECT t.trace_id, t.agent_name,", "SELECT t.agent_name,"), project="default"
    )
    return {agent: (outcome, n) for agent, outcome, n in rows}


def _post(tt: Any, **body: Any) -> httpx.Response:
    return httpx.post(f"{tt.http_url}/api/outcomes", json=body)


def test_outcomes_attach_on_the_trace_late_early_and_by_task_or_conversation(settings, store):
    with running_collector(settings, store) as tt:
        rec = Recorder()
        _run(rec, "inline", outcome=True)
        late = _run(rec, "late")
        _run(rec, "by-task", tokentrail__task__id="T-17")
        _run(rec, "chat-1", gen_ai__conversation__id="conv-9")
        _run(rec, "chat-2", gen_ai__conversation__id="conv-9")
        _run(rec, "nothing")
        with rec.span(
            "invoke_agent by-event", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="by-event"
        ) as s:
            s.add_event(
                "tokentrail.outcome",
                {"tokentrail.outcome.name": "reviewed", "tokentrail.outcome.success": False},
            )
        _send(tt, rec)
        tt.flush()
        assert _outcomes(tt)["inline"] == ("success", 1) and _outcomes(tt)["late"] == ("", 0)

        # hours later, over HTTP; and one for a trace that has not arrived yet
        early_rec = Recorder()
        early = _run(early_rec, "early")
        for body in (
            {"trace_id": late, "name": "ticket_resolved", "success": False},
            {"trace_id": early, "name": "ticket_resolved", "success": True},
            {"task_id": "T-17", "name": "pr_merged", "success": True},
            {"task_id": "T-17", "name": "csat", "value": 4},
            {"conversation_id": "conv-9", "name": "resolved", "success": True},
        ):
            reply = _post(tt, **body)
            assert reply.status_code == 202, reply.text
            assert len(reply.json()["outcome_id"]) == 16
        tt.flush()
        assert tt.query("SELECT count() FROM outcomes FINAL WHERE target_id = {t:String}", t=early) == [(1,)]
        _send(tt, early_rec)  # the trace arrives after its outcome
        tt.flush()
        got = _outcomes(tt)
        assert got["late"] == ("failure", 1) and got["early"] == ("success", 1)
        assert got["by-task"] == ("success", 2)  # pr_merged true + csat (a value, no verdict)
        assert got["chat-1"] == got["chat-2"] == ("success", 1)
        assert got["nothing"] == ("", 0)
        assert got["by-event"] == ("failure", 1)  # an outcome sent as a span event

        # a reopened ticket: the latest outcome of a name decides
        time.sleep(0.01)
        assert _post(tt, trace_id=late, name="ticket_resolved", success=True).status_code == 202
        tt.flush()
        assert _outcomes(tt)["late"] == ("success", 1)
        assert _post(tt, task_id="T-17", name="reverted", success=False).status_code == 202
        tt.flush()
        assert _outcomes(tt)["by-task"] == ("failure", 3)  # any failed verdict fails the task


def test_a_late_failure_moves_the_spend_to_no_outcome(settings, store):
    with running_collector(settings, store, pricer=prices()) as tt:
        rec = Recorder()
        trace_id = _run(rec, "worker")
        _send(tt, rec)
        tt.flush()
        analyzer = Analyzer(store.client, settings.with_(waste_idle_seconds=0.5), prices())
        time.sleep(0.6)
        assert analyzer.run_once() == 1
        first = tt.query("SELECT total_usd, productive_usd, no_outcome_usd FROM trace_waste FINAL")
        assert first[0][0] == first[0][1] > 0 and first[0][2] == 0
        assert _post(tt, trace_id=trace_id, name="task", success=False).status_code == 202
        tt.flush()  # the summarizer files the outcome and marks the trace changed
        time.sleep(0.6)
        assert analyzer.run_once() >= 1
        ((total, productive, no_outcome, outcome),) = tt.query(
            "SELECT total_usd, productive_usd, no_outcome_usd, outcome FROM trace_waste FINAL "
            "WHERE trace_id = {t:String}",
            t=trace_id,
        )
        assert (productive, outcome) == (0, "failure") and no_outcome == pytest.approx(total)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "success": True}, "exactly one of trace_id, task_id, conversation_id or session_id"),
        ({"task_id": "a", "trace_id": "b" * 32, "name": "x", "success": True}, "exactly one"),
        ({"trace_id": "xyz", "name": "x", "success": True}, "32 hexadecimal"),
        ({"task_id": "a", "success": True}, "name is required"),
        ({"task_id": "a", "name": "x", "success": "yes"}, "success must be true, false"),
        ({"task_id": "a", "name": "x"}, "give success, value, or both"),
        ({"task_id": "a", "name": "x", "success": True, "colour": 1}, "unknown field(s): colour"),
        ([1, 2], "send a JSON object"),
    ],
)
def test_bad_outcomes_are_refused_with_the_reason(settings, store, body, message):
    with running_collector(settings, store) as tt:
        reply = (
            _post(tt, **body)
            if isinstance(body, dict)
            else httpx.post(f"{tt.http_url}/api/outcomes", json=body)
        )
        assert reply.status_code == 400 and message in reply.json()["error"]
        not_json = httpx.post(
            f"{tt.http_url}/api/outcomes", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400 and "body is not valid JSON" in not_json.json()["error"]


def test_outcomes_are_json_only_so_web_pages_cannot_post_them_cross_site(settings, store):
    body = b'{"task_id": "T-1", "name": "merged", "success": true}'
    with running_collector(settings, store) as tt:
        # what an HTML form or a no-preflight fetch() on any web page can send
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
            headers = {"content-type": content_type} if content_type else {}
            reply = httpx.post(f"{tt.http_url}/api/outcomes", content=body, headers=headers)
            assert reply.status_code == 415, content_type
            assert reply.json()["error"].endswith("send application/json")
        ok = httpx.post(
            f"{tt.http_url}/api/outcomes",
            content=body,
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert ok.status_code == 202
        tt.flush()
        assert tt.query("SELECT target_id FROM outcomes FINAL") == [("T-1",)]


def _raw_post(port: int, headers: bytes, body: bytes) -> bytes:
    """Send headers and the start of a body, never the rest; the answer the server gives anyway."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/outcomes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + headers
            + b"\r\n"
            + body
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        while length and len(body) < int(length[1]):
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body


def test_an_outcome_over_64_kib_is_refused_without_reading_the_rest(settings, store):
    with running_collector(settings, store) as tt:
        port = int(tt.http_url.rsplit(":", 1)[1])
        # announced: refused before a byte of the 400 MiB is read
        answer = _raw_post(port, b"Content-Length: 419430400\r\n", b"{")
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"an outcome of 419430400 bytes is over the limit of 65536 bytes" in answer
        # not announced (chunked): refused once 64 KiB have arrived, while the sender is still sending
        chunk = b" " * 70_000
        answer = _raw_post(port, b"Transfer-Encoding: chunked\r\n", b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"an outcome is over the limit of 65536 bytes" in answer
        assert (
            httpx.post(
                f"{tt.http_url}/api/outcomes", json={"task_id": "a", "name": "x", "success": True}
            ).status_code
            == 202
        )


def test_outcomes_need_the_api_key_when_keys_are_set(settings, store):
    with running_collector(settings.with_(api_keys={"k1": "team-a"}), store) as tt:
        assert _post(tt, task_id="a", name="x", success=True).status_code == 401
        ok = httpx.post(
            f"{tt.http_url}/api/outcomes",
            json={"task_id": "a", "name": "x", "success": True},
            headers={"authorization": "Bearer k1"},
        )
        assert ok.status_code == 202 and ok.json()["project"] == "team-a"
        tt.flush()
        assert tt.query("SELECT project, target_kind, target_id FROM outcomes FINAL") == [
            ("team-a", "task", "a")
        ]


def test_a_standalone_outcome_is_not_listed_as_a_task(settings, store):
    with running_collector(settings, store) as tt:
        assert _post(tt, task_id="T-1", name="merged", success=True).status_code == 202
        tt.flush()
        assert tt.query("SELECT count() FROM traces FINAL") == [(0,)]
        assert tt.query("SELECT target_id FROM outcomes FINAL") == [("T-1",)]
