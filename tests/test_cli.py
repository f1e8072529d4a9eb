"""The `tokentrail` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.collector.harness import running_collector


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    return subprocess.run(
        [sys.executable, "-m", "tokentrail", *args], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_migrate_applies_once_then_reports_up_to_date(tmp_path):
    first = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "applied 0001_spans" in first.stdout
    second = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path))
    assert second.returncode == 0
    assert "is up to date (0 applied now)" in second.stdout


def test_bad_setting_stops_with_a_message_naming_it(tmp_path):
    out = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path), TOKENTRAIL_CLICKHOUSE_URL="mysql://x")
    assert out.returncode != 0
    assert "TOKENTRAIL_CLICKHOUSE_URL" in out.stderr


def test_status_reads_the_running_collector(settings, store):
    with running_collector(settings, store) as tt:
        out = _run("status", "--url", f"{tt.http_url}/api/status")
        assert out.returncode == 0, out.stderr
        assert "collector: running" in out.stdout
        assert "spans  received" in out.stdout
    down = _run("status", "--url", "http://127.0.0.1:9/api/status")
    assert down.returncode == 1
    assert "not reachable" in down.stdout
