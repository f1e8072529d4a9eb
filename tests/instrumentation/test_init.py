from __future__ import annotations

import subprocess
import sys
import textwrap

from opentelemetry.sdk.trace import TracerProvider

from tests.support.collector import running_collector
from tokentrail.instrumentation import _setup
from tokentrail.pricing import PriceBook


def test_init_attaches_to_an_existing_provider_once(monkeypatch):
    provider = TracerProvider()
    before = len(provider._active_span_processor._span_processors)
    assert _setup.init(tracer_provider=provider, endpoint="http://127.0.0.1:9", instrument=False) is provider
    assert _setup.init(tracer_provider=provider, endpoint="http://127.0.0.1:9", instrument=False) is provider
    assert len(provider._active_span_processor._span_processors) == before + 1
    provider.shutdown()


def test_init_is_disabled_by_otel_sdk_disabled(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert _setup.init(instrument=False) is None


def test_an_instrumented_agent_reaches_clickhouse(settings, store):
    script = textwrap.dedent(
        """
        import tokentrail
        tokentrail.init(service_name="refund-bot", instrument=False)
        with tokentrail.agent("refunds", conversation_id="c-77"):
            with tokentrail.llm("gpt-4o-mini", provider="openai") as call:
                call.set_usage(input_tokens=2000, output_tokens=100, cache_read_tokens=1500)
            with tokentrail.tool("issue_refund"):
                pass
        tokentrail.shutdown()
        """
    )
    with running_collector(settings, store, pricer=PriceBook()) as tt:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": tt.http_url, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        tt.flush()
        rows = tt.query(
            "SELECT step_kind, service_name, conversation_id, input_tokens, cache_read_tokens, cost_source"
            " FROM spans FINAL ORDER BY step_kind"
        )
        assert rows == [
            ("agent", "refund-bot", "c-77", 0, 0, ""),
            ("llm", "refund-bot", "c-77", 2000, 1500, "computed"),
            ("tool", "refund-bot", "c-77", 0, 0, ""),
        ]
        summary = tt.query("SELECT agent_name, llm_calls, tool_calls, cost_usd > 0 FROM traces FINAL")
        assert summary == [("refunds", 1, 1, 1)]


def test_init_instruments_installed_libraries_through_entry_points():
    from tokentrail.instrumentation.tenacity import TenacityInstrumentor

    provider = TracerProvider()
    try:
        _setup.init(tracer_provider=provider, endpoint="http://127.0.0.1:9", instrument=["tenacity"])
        assert TenacityInstrumentor().is_instrumented_by_opentelemetry
    finally:
        TenacityInstrumentor().uninstrument()
        provider.shutdown()


def test_opentelemetry_instrument_needs_no_code_change(settings, store):
    """`opentelemetry-instrument python agent.py`: our configurator sets up export, our entry
    points instrument the openai client; the agent imports nothing of Tokentrail."""
    import os

    agent = textwrap.dedent(
        """
        import openai
        from tokentrail.demo.llm_server import LLMServer  # only the stand-in for the provider's API

        with LLMServer(reply="ok") as server:
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="t")
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        """
    )
    with running_collector(settings, store, pricer=PriceBook()) as tt:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": tt.http_url,
            "OTEL_SERVICE_NAME": "plain-agent",
            "PATH": "/usr/bin:/bin",
        }
        command = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
        out = subprocess.run(
            [command, sys.executable, "-c", agent], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        tt.flush()
        rows = tt.query("SELECT name, service_name, scope_name, billable, input_tokens > 0 FROM spans FINAL")
        assert rows == [("chat gpt-4o-mini", "plain-agent", "tokentrail.openai", 1, 1)]
