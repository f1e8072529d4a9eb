"""`tokentrail demo` end to end: a subprocess runs the workload, a real collector stores it, and
the rows hold every waste pattern the demo promises."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import pairwise

from tests.support.collector import free_port, running_collector
from tokentrail.analysis.run import analyze_range
from tokentrail.pricing import PriceBook


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run(
        [sys.executable, "-m", "tokentrail", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_without_a_collector_says_how_to_start_one():
    out = _demo("--endpoint", f"http://127.0.0.1:{free_port()}", "--tasks", "1")
    assert out.returncode == 1
    assert "No collector answers at" in out.stderr and "tokentrail up" in out.stderr


def test_demo_sends_every_waste_pattern(settings, store):
    with running_collector(settings, store, pricer=PriceBook()) as tt:
        out = _demo("--endpoint", tt.http_url, "--tasks", "7", "--latency", "0")
        assert out.returncode == 0, out.stderr
        assert "[7/7]" in out.stdout
        tt.flush()

        def one(sql: str) -> list[tuple]:
            return tt.query(sql)

        def run_of(agent: str) -> str:
            return f"trace_id IN (SELECT trace_id FROM traces FINAL WHERE agent_name = '{agent}')"

        agents = dict(one("SELECT agent_name, count() FROM traces FINAL GROUP BY agent_name"))
        assert agents == {"router": 2} | {
            a: 1 for a in ("support", "billing", "researcher", "drafter", "refunds")
        }
        # retry chain: two rate-limited attempts, then one that works
        attempts = one(
            "SELECT retry_attempt, status_code FROM spans FINAL WHERE step_kind = 'retry' ORDER BY retry_attempt"
        )
        assert attempts == [(1, "ERROR"), (2, "ERROR"), (3, "UNSET")]
        # duplicate: the same model input sent twice in the billing run
        dupes = one(
            f"SELECT count() c FROM spans FINAL WHERE {run_of('billing')} AND billable = 1 "
            "AND status_code != 'ERROR' GROUP BY input_hash HAVING c > 1"
        )
        assert len(dupes) >= 1
        # loop: the researcher's search/read cycle three times with the same arguments
        cycle = one(
            "SELECT tool_name, count(), uniqExact(tool_args_hash) FROM spans FINAL "
            "WHERE step_kind = 'tool' AND tool_name IN ('search_policy', 'read_document') GROUP BY tool_name"
        )
        assert sorted(cycle) == [("read_document", 3, 1), ("search_policy", 3, 1)]
        # growing uncached context: five drafter calls, input growing, nothing read from cache
        drafts = one(
            f"SELECT input_tokens, cache_read_tokens FROM spans FINAL WHERE {run_of('drafter')} "
            "AND billable = 1 ORDER BY start_time"
        )
        assert len(drafts) == 5 and all(b[0] > a[0] for a, b in pairwise(drafts))
        assert sum(cached for _, cached in drafts) == 0
        # the productive runs do hit the cache (same long prompt prefix)
        assert one(f"SELECT sum(cache_read_tokens) FROM spans FINAL WHERE {run_of('support')}")[0][0] > 0
        # a premium model for a one-word answer, which the small model also gives
        routed = one(
            f"SELECT request_model, output_tokens FROM spans FINAL WHERE {run_of('router')} AND billable = 1 "
            "ORDER BY start_time"
        )
        assert [m for m, _ in routed] == ["gpt-4o-mini", "gpt-4.1"] and all(out <= 3 for _, out in routed)
        # the failed task: an error status and a failed outcome for its conversation
        assert one("SELECT status FROM traces FINAL WHERE agent_name = 'refunds'") == [("error",)]
        outcome = one(
            "SELECT attributes['tokentrail.outcome.name'], attributes['tokentrail.outcome.success'] "
            "FROM spans FINAL WHERE agent_name = 'refunds' AND parent_span_id = ''"
        )
        assert outcome == [("refund_issued", "false")]
        # every model call is priced from the catalog
        assert one("SELECT countIf(cost_usd IS NULL), count() FROM spans FINAL WHERE billable = 1")[0][0] == 0

        # and the waste analysis finds each kind of waste where the demo put it
        analyze_range(store.client, "default", 0, 2**62, PriceBook())
        found = dict(
            one(
                "SELECT detector, groupUniqArray(t.agent_name) FROM waste_findings AS f "
                "JOIN traces AS t FINAL ON f.trace_id = t.trace_id GROUP BY detector"
            )
        )
        assert {k: sorted(v) for k, v in found.items()} == {
            "retry": ["billing"],
            "duplicate": ["billing"],
            "loop": ["researcher"],
            "no_outcome": ["refunds"],
            "context_bloat": ["drafter"],
            "cache_miss": ["drafter"],
            "oversized_model": ["router"],
        }
        # with content captured, a bloat finding names what was carried along
        from tokentrail.store.filters import TraceFilter
        from tokentrail.web.pages.findings import findings

        bloated = findings(store.client, TraceFilter("default", "all"), "context_bloat", 100)["findings"]
        assert bloated and all(
            x["stale_item"].startswith("a user message") and "~8," in x["stale_item"] for x in bloated
        )
