"""The `tokentrail` command as a user runs it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from tests.support.collector import running_collector


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    return subprocess.run(
        [sys.executable, "-m", "tokentrail", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_applies_once_then_reports_up_to_date(tmp_path):
    first = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "applied 0001_spans" in first.stdout
    second = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path))
    assert second.returncode == 0
    assert "is up to date (0 applied now)" in second.stdout


def test_migrate_says_what_the_retention_changed(tmp_path):
    from tokentrail.store.retention import TELEMETRY

    first = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path), TOKENTRAIL_RETENTION_DAYS="14")
    assert first.returncode == 0, first.stderr
    for table in TELEMETRY:
        assert f"retention of {table}: 14 days (was forever)" in first.stdout
    second = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path), TOKENTRAIL_RETENTION_DAYS="14")
    assert second.returncode == 0
    assert "retention" not in second.stdout


def test_bad_setting_stops_with_a_message_naming_it(tmp_path):
    out = _run("migrate", TOKENTRAIL_DATA_DIR=str(tmp_path), TOKENTRAIL_CLICKHOUSE_URL="mysql://x")
    assert out.returncode != 0
    assert "TOKENTRAIL_CLICKHOUSE_URL" in out.stderr


def test_status_reads_the_running_collector(settings, store):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    with running_collector(settings, store) as tt:
        provider = TracerProvider()
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{tt.http_url}/v1/traces"))
        )
        for name in ("plan", "chat gpt-4o", "execute_tool lookup"):
            provider.get_tracer("t").start_span(name).end()
        provider.shutdown()
        tt.flush()
        url = f"{tt.http_url}/api/status"
        out = _run("status", "--url", url)
        stats = json.loads(_run("status", "--url", url, "--json").stdout)["stats"]
    assert out.returncode == 0, out.stderr
    assert "collector: running" in out.stdout
    assert "\x1b" not in out.stdout  # not a terminal: plain text
    lines = [line.split() for line in out.stdout.splitlines()]
    steps = next(line for line in lines if line[:1] == ["received"])
    assert steps == ["received", "spooled", "stored", "rejected"]
    shown = {line[0]: line[1:] for line in lines if line[:1] in (["spans"], ["logs"], ["metrics"])}
    assert shown["spans"][0] == "3" and shown["spans"][2] == "3"  # received and stored
    for noun in ("spans", "logs", "metrics"):
        assert shown[noun] == [f"{int(stats[f'tokentrail_{noun}_{step}_total']):,}" for step in steps]
    down = _run("status", "--url", "http://127.0.0.1:9/api/status")
    assert down.returncode == 1
    assert "not reachable" in down.stdout


def test_up_serves_otlp_over_http_and_grpc(tmp_path):
    import signal
    import time

    import httpx
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from tests.support.collector import collector_env, free_port, start_collector_process

    port = free_port()
    env = collector_env(str(tmp_path), port, TOKENTRAIL_UI_PORT=str(free_port()))
    proc = start_collector_process(env, port, command="up")
    try:
        for exporter in (
            HttpExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces"),
            GrpcExporter(endpoint=f"127.0.0.1:{env['TOKENTRAIL_OTLP_GRPC_PORT']}", insecure=True),
        ):
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            with provider.get_tracer("t").start_as_current_span(
                "chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}
            ):
                pass
            provider.shutdown()
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline and stored < 2:
            stored = httpx.get(f"http://127.0.0.1:{port}/api/status").json()["stats"][
                "tokentrail_spans_stored_total"
            ]
            time.sleep(0.2)
        assert stored == 2
        status = _run("status", TOKENTRAIL_OTLP_HTTP_PORT=str(port))
        assert "collector: running" in status.stdout
        # the same process serves the web UI, which lists the two traces once summarized
        ui = f"http://127.0.0.1:{env['TOKENTRAIL_UI_PORT']}"
        deadline = time.monotonic() + 30
        listed: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(listed) < 2:
            listed = httpx.get(f"{ui}/traces.json").json()["traces"]
            time.sleep(0.2)
        assert [t["root_name"] for t in listed] == ["chat gpt-4o", "chat gpt-4o"]
        assert "Tokentrail" in httpx.get(f"{ui}/").text
        # having migrated, stored and served, the process has not loaded pandas (chDB installs
        # it; nothing here uses it: 38 MiB)
        assert "/pandas/" not in (Path("/proc") / str(proc.pid) / "maps").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert (tmp_path / "chdb").is_dir()


def test_projects_and_keys_from_the_command_line(tmp_path):
    import signal
    import time
    from datetime import datetime, timedelta

    import httpx
    from google.rpc.status_pb2 import Status

    from tests.support.collector import (
        chat_request,
        collector_env,
        free_port,
        start_collector_process,
        stored_span_counts,
    )

    data = {"TOKENTRAIL_DATA_DIR": str(tmp_path)}
    assert "no projects yet" in _run("projects", "list", **data).stdout
    assert _run("projects", "create", "team-a", **data).returncode == 0
    again = _run("projects", "create", "team-a", **data)
    assert again.returncode == 1 and "project 'team-a' exists already" in again.stderr
    bad = _run("projects", "create", "team a", **data)
    assert bad.returncode == 1 and "must be 1 to 64 letters, digits, - or _" in bad.stderr
    unknown = _run("keys", "create", "--project", "team-b", "--scope", "ingest", **data)
    assert unknown.returncode == 1
    assert "no project 'team-b': create it first with `tokentrail projects create team-b`" in unknown.stderr
    scope = _run("keys", "create", "--project", "team-a", "--scope", "write", **data)
    assert scope.returncode == 2 and "invalid choice: 'write'" in scope.stderr

    created = {}
    for name, key_scope, *more in (
        ("ci", "ingest", "--expires", "90d"),
        ("old", "ingest"),
        ("reader", "read"),
    ):
        out = _run(
            "keys", "create", "--project", "team-a", "--scope", key_scope, "--name", name, *more, **data
        )
        assert out.returncode == 0, out.stderr
        [key] = out.stdout.split()  # the key, and nothing else, on stdout
        assert "it is not shown again" in out.stderr
        created[name] = key
    key_ids = {name: key.split("_")[1] for name, key in created.items()}
    revoked = _run("keys", "revoke", key_ids["old"], **data)
    assert (
        revoked.returncode == 0 and f"revoked ingest key {key_ids['old']} of project team-a" in revoked.stdout
    )
    nokey = _run("keys", "revoke", "0123456789abcdef", **data)
    assert nokey.returncode == 1 and "no key 0123456789abcdef" in nokey.stderr

    listed = _run("keys", "list", "--project", "team-a", **data)
    assert listed.returncode == 0, listed.stderr
    assert not [key for key in created.values() if key.split("_", 2)[2] in listed.stdout]
    rows = {
        line.split()[3]: line.split()
        for line in listed.stdout.splitlines()
        if line.split()[:1] in ([key_ids["ci"]], [key_ids["old"]], [key_ids["reader"]])
    }
    assert {name: (row[0], row[2]) for name, row in rows.items()} == {
        "ci": (key_ids["ci"], "ingest"),
        "old": (key_ids["old"], "ingest"),
        "reader": (key_ids["reader"], "read"),
    }
    made = datetime.fromisoformat(" ".join(rows["ci"][4:6]))
    assert datetime.fromisoformat(" ".join(rows["ci"][7:9])) - made == timedelta(days=90)
    assert rows["ci"][10] == "active" and rows["reader"][7:9] == ["-", "active"]
    assert rows["old"][7:9] == ["-", "revoked"]
    projects = _run("projects", "list", **data).stdout.split()
    assert projects[projects.index("team-a") + 4] == "2"  # name, created (3 words), active keys

    # the keys made here open (or not) a collector started on the same data afterwards
    port = free_port()
    env = collector_env(str(tmp_path), port)
    proc = start_collector_process(env, port)
    rng = random.Random(7)
    sent = {}
    try:
        # the running collector holds the embedded database: the commands reach it through it
        held = _run("keys", "list", **data)
        assert held.returncode == 0 and key_ids["ci"] in held.stdout, held.stderr
        for name, key, status, said in (
            ("ci", created["ci"], 200, ""),
            ("old", created["old"], 401, f"API key {key_ids['old']} was revoked at "),
            (
                "reader",
                created["reader"],
                403,
                f"API key {key_ids['reader']} of project 'team-a' may only read",
            ),
            ("none", "", 401, "missing API key"),
        ):
            body, ids = chat_request(rng, 2, "cli-keys")
            headers = {"content-type": "application/x-protobuf"}
            if key:
                headers["authorization"] = f"Bearer {key}"
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body, headers=headers)
            assert answer.status_code == status, (name, answer.text)
            assert Status.FromString(answer.content).message.startswith(said), name
            sent[name] = ids

        def answer_to(key: str) -> tuple[int, str, list[str]]:
            body, ids = chat_request(rng, 2, "cli-keys")
            headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {key}"}
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body, headers=headers)
            return answer.status_code, Status.FromString(answer.content).message, ids

        accepted: list[str] = []

        def first_answer(key: str, status: int) -> tuple[int, str, list[str]]:
            """Send until the answer is `status` (keys are re-read every 2 s), for 20 s at most;
            what is accepted meanwhile is kept in `accepted`."""
            deadline = time.monotonic() + 20
            while True:
                got = answer_to(key)
                if got[0] == 200:
                    accepted.extend(got[2])
                if got[0] == status or time.monotonic() > deadline:
                    return got
                time.sleep(0.2)

        # a key made and one revoked while the collector runs, without a restart
        late = _run("keys", "create", "--project", "team-a", "--scope", "ingest", "--name", "late", **data)
        assert late.returncode == 0, late.stderr
        status, _, _ = first_answer(late.stdout.strip(), 200)
        assert status == 200
        gone = _run("keys", "revoke", key_ids["ci"], **data)
        assert gone.returncode == 0, gone.stderr
        status, said, refused = first_answer(created["ci"], 401)
        assert (status, said.startswith(f"API key {key_ids['ci']} was revoked at ")) == (401, True)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert not (tmp_path / ".chdb.endpoint").exists()  # the server's endpoint ended with it
    stored = stored_span_counts(env)
    assert stored == dict.fromkeys(sent["ci"] + accepted, 1)
    assert not set(refused) & set(stored)
