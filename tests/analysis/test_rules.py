"""The ledger's rules one by one, on traces stored and analysed as the server does it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from tests.support.corpus import agent, call, tool
from tests.support.recorder import Recorder, prices
from tokentrail.analysis import run
from tokentrail.analysis.ledger import Thresholds
from tokentrail.analysis.run import analyze_range


def _findings(store: Any) -> list[dict[str, Any]]:
    rows = store.client.query(
        "SELECT s.name, f.detector, f.rule, f.wasted_usd, f.wasted_tokens, f.time_lost_ns, f.evidence, f.reason "
        "FROM waste_findings AS f JOIN spans AS s FINAL ON f.trace_id = s.trace_id AND f.span_id = s.span_id "
        "WHERE (f.trace_id, f.analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL) "
        "ORDER BY s.start_time"
    ).result_rows
    keys = ("name", "detector", "rule", "usd", "tokens", "time_lost_ns", "evidence", "reason")
    return [dict(zip(keys, (*r[:6], json.loads(r[6]), r[7]), strict=True)) for r in rows]


def test_http_attempts_the_client_retried_cost_time_not_money(store):
    rec = Recorder()
    with agent(rec, "support"):
        with rec.span(
            "chat gpt-4o",
            900,
            SpanKind.CLIENT,
            gen_ai__operation__name="chat",
            gen_ai__provider__name="openai",
            gen_ai__request__model="gpt-4o",
            gen_ai__usage__input_tokens=500,
            gen_ai__usage__output_tokens=50,
        ):
            for status in (429, 503, 200):
                with rec.span(
                    "POST",
                    100,
                    SpanKind.CLIENT,
                    error="" if status == 200 else str(status),
                    http__request__method="POST",
                    http__response__status_code=status,
                ):
                    pass
                rec.tick(250)  # the client's backoff
        # the last attempt: the call failed, nothing retried it inside the call
        with (
            rec.span(
                "chat gpt-4o",
                900,
                SpanKind.CLIENT,
                error="APIConnectionError",
                gen_ai__operation__name="chat",
                gen_ai__provider__name="openai",
                gen_ai__request__model="gpt-4o",
            ),
            rec.span("POST", 100, SpanKind.CLIENT, error="ConnectError", http__request__method="POST"),
        ):
            pass
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    found = [f for f in _findings(store) if f["rule"] == "retry.http_attempt"]
    assert [(f["evidence"]["status"], f["usd"]) for f in found] == [("HTTP 429", 0.0), ("HTTP 503", 0.0)]
    # from the start of the failed attempt to the start of the next: the attempt and the wait after it
    assert all(350 <= f["time_lost_ns"] / 1e6 <= 353 for f in found)
    assert "attempt 1 of 3 failed (HTTP 429)" in found[0]["reason"]


def test_a_loop_keeps_repeating_a_duplicate_tool_call_happens_once(store):
    rec = Recorder()
    with agent(rec, "twice"):
        for i in range(2):
            call(rec, f"a{i}", "gpt-4o-mini", 300 + i, 20, content=f"a{i}")
            tool(rec, "lookup", '{"id": 7}')
        call(rec, "a-end", "gpt-4o-mini", 400, 20)
    with agent(rec, "thrice"):
        for i in range(3):
            call(rec, f"b{i}", "gpt-4o-mini", 300 + i, 20, content=f"b{i}")
            tool(rec, "lookup", '{"id": 7}')
        call(rec, "b-end", "gpt-4o-mini", 400, 20)
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    charged = {f["name"].split("[")[1].rstrip("]"): f["rule"] for f in _findings(store)}
    assert charged == {"a1": "duplicate.tool_call", "b1": "loop.cycle", "b2": "loop.cycle"}


def test_a_workflow_root_that_always_ends_ok_does_not_hide_a_failed_agent(store):
    """The OpenAI Agents SDK bridges end the trace's root span OK whatever happened; the agent that
    held the task at the end says how it went."""
    rec = Recorder()
    with rec.span("Front desk", 5, gen_ai__operation__name="invoke_agent"):  # a workflow: no agent of its own
        with rec.span(
            "invoke_agent triage", 5, gen_ai__operation__name="invoke_agent", gen_ai__agent__name="triage"
        ):
            call(rec, "t1", "gpt-4o-mini", 300, 20)
        with rec.span(
            "invoke_agent refunds",
            5,
            error="RuntimeError",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="refunds",
        ):
            call(rec, "r1", "gpt-4o-mini", 400, 20)
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    assert {f["name"].split("[")[1]: f["detector"] for f in _findings(store)} == {
        "t1]": "no_outcome",
        "r1]": "no_outcome",
    }


def _conversation_turn(rec: Recorder, agent_name: str, label: str, inp: int, cached: int) -> None:
    with rec.span(
        f"invoke_agent {agent_name}",
        5,
        gen_ai__operation__name="invoke_agent",
        gen_ai__agent__name=agent_name,
        gen_ai__conversation__id="conv-9",
    ):
        call(rec, label, "gpt-4o", inp, 100, cached=cached)


def test_a_conversations_next_task_misses_the_cache_its_last_one_left(store):
    rec = Recorder()
    _conversation_turn(rec, "chat", "turn1", 3000, 0)
    rec.tick(60_000)  # a minute later: within the cache's lifetime, but nothing was read from it
    _conversation_turn(rec, "chat", "turn2", 3500, 0)
    rec.tick(600_000)  # ten minutes later: past it
    _conversation_turn(rec, "chat", "turn3", 4000, 3072)
    _conversation_turn(rec, "billing", "other-agent", 4500, 0)  # another agent's task: not a resumed chat
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    misses = {
        f["name"].split("[")[1].rstrip("]"): f for f in _findings(store) if f["detector"] == "cache_miss"
    }
    assert set(misses) == {"turn2"}  # turn3 read its prefix from the cache
    assert misses["turn2"]["rule"] == "cache_miss.prefix_changed" and misses["turn2"]["tokens"] == 3100
    assert "the conversation's previous task" in misses["turn2"]["reason"]


#: (traces a chunk, chunks a read, chunks whose conversations are read together)
_CUTS = [(1000, 5, 50), (1, 1, 50), (1, 3, 50), (2, 2, 50), (1, 2, 4), (1, 3, 2)]


def _cut(monkeypatch: pytest.MonkeyPatch, chunk: int, per_read: int, per_run: int) -> None:
    monkeypatch.setattr(run, "_CHUNK", chunk)
    monkeypatch.setattr(run, "_CHUNKS_PER_READ", per_read)
    monkeypatch.setattr(run, "_CHUNKS_PER_WRITE", per_read)
    monkeypatch.setattr(run, "_CHUNKS_PER_RUN", per_run)


@pytest.mark.parametrize(("chunk", "per_read", "per_run"), _CUTS)
def test_a_conversations_earlier_traces_are_found_however_the_run_is_cut(
    store, monkeypatch, chunk, per_read, per_run
):
    """A run of several chunks reads its conversations once for all of them (or for parts of the
    run), and its spans several chunks at a time: each trace still finds its conversation's
    previous trace, whichever chunk, read and part it is in, as a run of one chunk finds it."""
    _cut(monkeypatch, chunk, per_read, per_run)
    rec = Recorder()
    inputs = [3000, 3500, 4000, 4600, 5300]
    for n, inp in enumerate(inputs):
        _conversation_turn(rec, "chat", f"turn{n}", inp, 0)
        _conversation_turn(
            rec, "billing", f"other{n}", inp // 2, 0
        )  # another agent: a conversation of its own
        rec.tick(60_000)  # a minute apart: within the cache's lifetime
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices(), workers=0)
    misses = {
        f["name"].split("[")[1].rstrip("]"): f["tokens"]
        for f in _findings(store)
        if f["detector"] == "cache_miss"
    }
    # each task after the first carried over its agent's previous task (its input + 100 output tokens)
    expected = {f"turn{n}": min(inp, inputs[n - 1] + 100) for n, inp in enumerate(inputs) if n}
    expected |= {f"other{n}": min(inp // 2, inputs[n - 1] // 2 + 100) for n, inp in enumerate(inputs) if n}
    assert misses == expected


@pytest.mark.parametrize(("chunk", "per_read", "per_run"), _CUTS)
def test_a_read_an_earlier_task_of_the_conversation_made_is_found_however_the_run_is_cut(
    store, monkeypatch, chunk, per_read, per_run
):
    """The reads of a conversation's earlier tasks are still in the context of its next one: each
    task that reads a file again that the previous task read (and nothing changed since) is charged
    for it, whichever chunk and read the previous task is in; a task after an edit is not."""
    _cut(monkeypatch, chunk, per_read, per_run)
    rec = Recorder()
    edits = {3}  # the task that edits the file after reading it
    for n in range(6):
        with rec.span(
            "invoke_agent coder",
            5,
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name="coder",
            gen_ai__conversation__id="conv-7",
        ):
            call(rec, f"task{n}", "gpt-4o", 2000 + 100 * n, 50, finish="tool_calls")
            tool(rec, "Read", '{"file_path": "app.py"}')
            if n in edits:
                tool(rec, "Edit", '{"file_path": "app.py"}')
        rec.tick(60_000)
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices(), workers=0)
    rereads = {f["name"] for f in _findings(store) if f["rule"] == "duplicate.reread"}
    # every task after the first read again what the one before it read, unless that one edited it
    assert rereads == {f"chat gpt-4o [task{n}]" for n in range(1, 6) if n - 1 not in edits}


def test_a_cheaper_model_is_suggested_only_on_evidence_from_this_project(store, monkeypatch):
    """Evidence is the same kind of step done well by the cheaper model; where in the run it was
    seen does not matter (traces are judged in chunks, here of one trace each)."""
    monkeypatch.setattr(run, "_CHUNK", 1)
    rec = Recorder()
    with agent(rec, "router"):
        call(rec, "premium", "gpt-4.1", 2000, 2)
    with agent(rec, "greeter"):
        call(rec, "premium-alone", "gpt-4.1", 2000, 2)  # no cheaper model was seen greeting
    with agent(rec, "router"):
        call(rec, "cheap", "gpt-4o-mini", 2000, 2)
    with (
        agent(rec, "embedder"),
        rec.span(
            "embeddings text-embedding-3-small",
            5,
            SpanKind.CLIENT,
            gen_ai__operation__name="embeddings",
            gen_ai__provider__name="openai",
            gen_ai__request__model="text-embedding-3-small",
            gen_ai__usage__input_tokens=2000,
        ),
    ):
        pass
    rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices(), workers=0)
    (found,) = [f for f in _findings(store) if f["detector"] == "oversized_model"]
    assert found["name"].endswith("[premium]") and found["evidence"]["suggested_model"].startswith(
        "gpt-4o-mini"
    )
    assert found["evidence"]["step"] == "agent:router" and found["evidence"]["evidence_traces"] == 1
    cost = prices().cost("openai", "gpt-4.1", input_tokens=2000, output_tokens=2)
    alt = prices().cost("openai", "gpt-4o-mini", input_tokens=2000, output_tokens=2)
    assert cost is not None and alt is not None
    assert found["usd"] == pytest.approx(cost - alt)


def test_settings_name_every_threshold():
    from tokentrail.server.settings import from_env

    t = from_env(
        {
            "TOKENTRAIL_WASTE_LOOP_MIN_REPEATS": "4",
            "TOKENTRAIL_WASTE_BLOAT_MIN_TOKENS": "500",
            "TOKENTRAIL_WASTE_BLOAT_CARRY_TOKENS": "8000",
        }
    ).waste
    assert (t.loop_min_repeats, t.bloat_min_tokens, t.bloat_carry_tokens) == (4, 500, 8000)
    assert Thresholds().loop_min_repeats == 3


def test_a_cheaper_model_is_evidence_only_in_the_same_repository(store):
    """Coding work is compared within its repository: a small model answering the agent's short
    steps in acme/api says nothing about the premium model's short steps in acme/web."""
    for repository, model in (("acme/api", "gpt-4o-mini"), ("acme/api", "gpt-4.1"), ("acme/web", "gpt-4.1")):
        rec = Recorder(service="coder", resource={"repository": repository})
        with agent(rec, "coder", outcome=True):
            call(rec, f"{repository}:{model}", model, 2000, 2)
        rec.store(store.client)
    analyze_range(store.client, "default", 0, 2**62, prices())
    oversized = [f for f in _findings(store) if f["detector"] == "oversized_model"]
    assert [f["name"] for f in oversized] == ["chat gpt-4.1 [acme/api:gpt-4.1]"]
    [finding] = oversized
    assert finding["evidence"]["step"] == "agent:coder@acme/api"
    assert "in acme/api" in finding["reason"]
    saving = _cost_of("gpt-4.1", 2000, 2) - _cost_of("gpt-4o-mini", 2000, 2)
    assert abs(finding["usd"] - saving) < 1e-12


def _cost_of(model: str, inp: int, out: int) -> float:
    cost = prices().cost("openai", model, input_tokens=inp, output_tokens=out)
    assert cost is not None
    return cost
