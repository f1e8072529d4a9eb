"""Background analysis: a trace is analysed once it has gone quiet, and again when it changes."""

from __future__ import annotations

import time

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel

from tests.support.recorder import Recorder, prices, text
from tokentrail.analysis.run import Analyzer
from tokentrail.server.settings import SettingsError, from_env


def test_quiet_traces_are_analysed_once_and_again_after_a_late_span(settings, store):
    rec = Recorder()
    with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a") as root:
        rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
    rec.store(store.client)
    analyzer = Analyzer(store.client, settings.with_(waste_idle_seconds=1.0), prices())
    time.sleep(1.1)
    assert analyzer.run_once() == 1
    assert analyzer.run_once() == 0  # nothing changed since
    ((total, productive, findings),) = store.client.query(
        "SELECT total_usd, productive_usd, findings FROM trace_waste FINAL"
    ).result_rows
    assert total == productive > 0 and findings == 0

    # the same request again, arriving later in the same trace: the trace is due again
    token = otel_context.attach(otel.set_span_in_context(otel.NonRecordingSpan(root.get_span_context())))
    try:
        rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
    finally:
        otel_context.detach(token)
    rec.store(store.client)
    assert analyzer.run_once() == 0  # not quiet yet
    time.sleep(1.1)
    assert analyzer.run_once() == 1
    ((total2, duplicate, findings2),) = store.client.query(
        "SELECT total_usd, duplicate_usd, findings FROM trace_waste FINAL"
    ).result_rows
    assert findings2 == 1 and total2 == pytest.approx(2 * total) and duplicate == pytest.approx(total)


def test_waste_settings_are_checked():
    with pytest.raises(SettingsError, match="TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING"):
        from_env({"TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING": "1.5"})
    with pytest.raises(SettingsError, match="TOKENTRAIL_WASTE_LOOP_MIN_REPEATS"):
        from_env({"TOKENTRAIL_WASTE_LOOP_MIN_REPEATS": "1"})
    assert from_env({"TOKENTRAIL_WASTE_BLOAT_CARRY_TOKENS": "5000"}).waste.bloat_carry_tokens == 5000


def test_analyze_command_shows_progress(store, settings, monkeypatch, capsys):
    from tokentrail.cli import main

    rec = Recorder()
    for _ in range(3):
        with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
            rec.chat("gpt-4o", "openai", 900, 40)
    rec.store(store.client)
    monkeypatch.setenv("TOKENTRAIL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_DATABASE", settings.database)
    assert main(["analyze", "--since", "1d"]) == 0
    out = capsys.readouterr()
    assert "analysed 3 traces" in out.out and "3/3 traces" in out.err
    assert store.client.query("SELECT count() FROM trace_waste FINAL").result_rows == [(3,)]


def test_stored_waste_totals_are_the_latest_ledgers(settings, store):
    from tokentrail.analysis.run import analyze_range
    from tokentrail.store import ledger

    rec = Recorder()
    for _ in range(2):
        with rec.span("invoke_agent a", gen_ai__operation__name="invoke_agent", gen_ai__agent__name="a"):
            rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))
            rec.chat("gpt-4o", "openai", 900, 40, messages=text("hello"))  # the same request again
    rec.store(store.client)
    for _ in range(2):  # analysed twice: the totals count each trace's latest analysis once
        assert analyze_range(store.client, "default", 0, 2**62, prices()) == 2
    totals = ledger.waste_totals(store.client, "default")
    (duplicate,) = ledger.findings_by_detector(store.client, "default")
    ((spend, wasted),) = store.client.query(
        "SELECT sum(total_usd), sum(duplicate_usd) FROM trace_waste FINAL"
    ).result_rows
    assert totals == {"spend": pytest.approx(spend), "wasted": pytest.approx(wasted)} and wasted > 0
    assert duplicate == {"detector": "duplicate", "findings": 2, "usd": pytest.approx(wasted)}
    assert ledger.waste_totals(store.client, "other") == {"spend": 0.0, "wasted": 0.0}
