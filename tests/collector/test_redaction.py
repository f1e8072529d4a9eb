"""Redaction at ingest: secrets planted everywhere a span, a log record and a metric point can carry
them, sent with the OpenTelemetry SDK's exporters to a running collector; then every String and
Map column of every table is searched for them."""

from __future__ import annotations

import base64
import json
import random
import string
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter as CounterInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.collector import collector_env, free_port, running_collector, scrape
from tokentrail.collector.flatten import SPAN_COLUMNS, SpanBatch
from tokentrail.collector.redact import Redactor, Scan, luhn
from tokentrail.pricing import PriceBook, price_call
from tokentrail.server.settings import SettingsError, from_env

_KEYS = {"key-alpha": "alpha", "key-beta": "beta"}


def _chars(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """n random characters, the last a digit (a real key has digits; a slug may not)."""
    return "".join(rng.choice(alphabet) for _ in range(n - 1)) + rng.choice(string.digits)


def _check_digit(body: str) -> str:
    """The Luhn check digit that completes `body` into a valid card number."""
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@dataclass
class Planted:
    """Secrets, each sent once, and the rule that must count it, by project."""

    rng: random.Random
    secrets: list[str] = field(default_factory=list)
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __call__(self, project: str, rule: str, secret: str) -> str:
        self.secrets.append(secret)
        self.expected[(project, rule)] += 1
        return secret

    def openai(self, project: str = "alpha") -> str:
        return self(project, "api_key", f"sk-proj-{_chars(self.rng, 48)}")

    def anthropic(self) -> str:
        return self("alpha", "api_key", f"sk-ant-api03-{_chars(self.rng, 90, string.ascii_letters + '_-')}")

    def aws(self) -> str:
        return self("alpha", "api_key", "AKIA" + _chars(self.rng, 16, string.ascii_uppercase + string.digits))

    def github(self) -> str:
        return self("alpha", "api_key", f"ghp_{_chars(self.rng, 36)}")

    def jwt(self) -> str:
        token = ".".join(
            (_b64({"alg": "HS256", "typ": "JWT"}), _b64({"sub": _chars(self.rng, 12)}), _chars(self.rng, 43))
        )
        return self("alpha", "jwt", token)

    def token(self, rule: str = "bearer") -> str:
        return self("alpha", rule, _chars(self.rng, 32))

    def password(self) -> str:
        return self("alpha", "credential", _chars(self.rng, 14))

    def email(self) -> str:
        return self("alpha", "email", f"{_chars(self.rng, 8, string.ascii_lowercase)}@example.com")

    def card(self) -> str:
        body = "4" + "".join(self.rng.choice(string.digits) for _ in range(14))
        number = body + _check_digit(body)
        return self("alpha", "card", " ".join(number[i : i + 4] for i in range(0, 16, 4)))

    def private_key(self) -> str:
        lines = [_chars(self.rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(3)]
        block = "\n".join(
            ["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"]
        )
        self("alpha", "private_key", block)
        self.secrets += lines  # no line of the key may be left either
        return block


def _luhn_invalid(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    return body + str((int(_check_digit(body)) + 1) % 10)


def _tracer(tt: Any, key: str, resource: dict[str, str]) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create(resource))
    exporter = OTLPSpanExporter(
        endpoint=f"{tt.http_url}/v1/traces", headers={"authorization": f"Bearer {key}"}
    )
    # one export of all spans (the resource, and its secret, is sent once)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=600_000))
    return provider


#: the model calls sent: (provider, model, input tokens, output tokens), by span name
_CALLS = {
    "chat gpt-4o-mini": ("openai", "gpt-4o-mini", 1200, 80),
    "chat claude-3-5-haiku-20241022": ("anthropic", "claude-3-5-haiku-20241022", 900, 40),
    "openinference llm": ("openai", "gpt-4o", 700, 30),
    "openllmetry chat": ("openai", "gpt-4o-mini", 500, 20),
}


def _send_spans(tt: Any, plant: Planted, luhn_invalid: str) -> None:
    db_password = plant.password()
    tracer_provider = _tracer(
        tt,
        "key-alpha",
        {"service.name": "support-bot", "db.url": f"postgres://app:{db_password}@db.internal:5432/app"},
    )
    tracer = tracer_provider.get_tracer("redaction-test")
    usage = {
        name: {"gen_ai.usage.input_tokens": c[2], "gen_ai.usage.output_tokens": c[3]}
        for name, c in _CALLS.items()
    }

    # the current conventions: messages, system instructions as JSON attributes
    name = "chat gpt-4o-mini"
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                **usage[name],
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": f"my key is\n{plant.openai()}"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": f"write to\n{plant.email()}"}],
                        }
                    ]
                ),
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": f"AWS access key {plant.aws()}"}]
                ),
                "app.note": f"deploy token {plant.jwt()}",
                "http.request.header.authorization": (f"Bearer {plant.token('denied_key')}",),
                "app.internal.session": plant("alpha", "denied_key", _chars(plant.rng, 20)),
                "order.number": luhn_invalid,
                "user.id": plant.email(),  # also copied into the user_id column: counted once
                "app.tags": ("ok", f"key {plant.openai()}"),  # an array: each of its strings
            }
        )
    # v1.26: the prompt and the completion as span events
    name = "chat claude-3-5-haiku-20241022"
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku-20241022", **usage[name]}
        )
        span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": f"use {plant.anthropic()} for this"})
        span.add_event(
            "gen_ai.content.completion", {"gen_ai.completion": f"Authorization: Bearer {plant.token()}"}
        )
    # OpenInference's and OpenLLMetry's flattened messages
    name = "openinference llm"
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "openinference.span.kind": "LLM",
                "llm.provider": "openai",
                "llm.model_name": "gpt-4o",
                "llm.token_count.prompt": usage[name]["gen_ai.usage.input_tokens"],
                "llm.token_count.completion": usage[name]["gen_ai.usage.output_tokens"],
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": f"the repo token is {plant.github()}",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "noted",
            }
        )
    name = "openllmetry chat"
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "llm.request.type": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                **usage[name],
                "gen_ai.prompt.0.role": "user",
                "gen_ai.prompt.0.content": f"connect with password={plant.password()} please",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": f"sent to {plant.email()}",
            }
        )
    # a tool call that failed: arguments, result, status message, an exception event
    with tracer.start_as_current_span("execute_tool charge_card") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "charge_card",
                "gen_ai.tool.call.arguments": json.dumps(
                    {"password": plant.password(), "card": plant.card()}
                ),
                "gen_ai.tool.call.result": json.dumps({"token": plant.github()}),
            }
        )
        span.add_event(
            "exception", {"exception.type": "KeyError", "exception.stacktrace": plant.private_key()}
        )
        span.set_status(Status(StatusCode.ERROR, f"upstream refused {plant.jwt()}"))
    tracer_provider.shutdown()

    beta = _tracer(tt, "key-beta", {"service.name": "beta-bot"})
    with beta.get_tracer("redaction-test").start_as_current_span("invoke_agent beta") as span:
        span.set_attribute("app.note", plant.openai("beta"))
    beta.shutdown()


def _send_logs(tt: Any, plant: Planted) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
    exporter = OTLPLogExporter(
        endpoint=f"{tt.http_url}/v1/logs", headers={"authorization": "Bearer key-alpha"}
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("claude-code").emit(
        body=f"Authorization: Bearer {plant.token()}",
        attributes={
            "event.name": "user_prompt",
            "session.id": "session-1",
            "prompt.id": "prompt-1",
            "prompt": f"deploy with {plant.openai()}",
            "ticket": f"see {plant('alpha', 'ticket', 'TCK-' + _chars(plant.rng, 6, string.digits))}",
        },
    )
    provider.shutdown()


def _send_metrics(tt: Any, plant: Planted) -> None:
    exporter = OTLPMetricExporter(
        endpoint=f"{tt.http_url}/v1/metrics",
        headers={"authorization": "Bearer key-alpha"},
        preferred_temporality={CounterInstrument: AggregationTemporality.DELTA},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "claude-code"})
    )
    provider.get_meter("claude-code").create_counter("claude_code.cost.usage").add(
        0.25, {"user.email": plant.email(), "model": "claude-sonnet-4-5", "key.hint": plant.openai()}
    )
    provider.shutdown()  # one export


def _text_columns(tt: Any, database: str) -> dict[str, list[str]]:
    """Every column of every table that can hold text: String, FixedString, Map, Array…"""
    rows = tt.query(
        "SELECT table, name FROM system.columns WHERE database = {d:String} "
        "AND (type LIKE '%String%' OR type LIKE '%Map(%') ORDER BY table, position",
        d=database,
    )
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


def _stored_text(tt: Any, database: str) -> dict[str, str]:
    """All text each table holds, as one string per table."""
    stored = {}
    for table, columns in _text_columns(tt, database).items():
        selected = ", ".join(f"toString(`{c}`)" for c in columns)
        stored[table] = "\n".join("\t".join(row) for row in tt.query(f"SELECT {selected} FROM `{table}`"))
    return stored


def _redactions(base_url: str) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for sample, value in scrape(base_url, api_key="key-alpha").items():
        if sample.startswith("tokentrail_redactions_total{"):
            labels = dict(part.split("=", 1) for part in sample[sample.index("{") + 1 : -1].split(","))
            found[(labels["project"].strip('"'), labels["rule"].strip('"'))] = int(value)
    return found


@pytest.mark.parametrize("workers", [0, 1])  # 1: a worker process flattens, with the rules it was sent
def test_no_secret_reaches_clickhouse(settings, store, workers: int):
    configured = settings.with_(
        writer_workers=workers,
        api_keys=_KEYS,
        redact=("secrets", "emails", "cards"),
        redact_patterns=(("ticket", r"TCK-\d{6}"),),
        redact_keys=("APP.INTERNAL.*",),  # any case
    )
    plant = Planted(random.Random(workers))
    luhn_invalid = _luhn_invalid(plant.rng)
    pricer = PriceBook()
    with running_collector(configured, store, pricer=pricer) as tt:
        _send_spans(tt, plant, luhn_invalid)
        _send_logs(tt, plant)
        _send_metrics(tt, plant)
        tt.flush()
        stored = _stored_text(tt, settings.database)
        counted = _redactions(tt.http_url)
        spans = {
            row[0]: row[1:]
            for row in tt.query(
                "SELECT name, provider, request_model, input_tokens, output_tokens, cost_usd, input_messages, "
                "output_messages, system_instructions, tool_arguments, tool_result, status_message, "
                "attributes, resource_attributes, events.attributes, user_id FROM spans FINAL "
                "WHERE project = 'alpha'"
            )
        }
        log = tt.query("SELECT body, attributes['ticket'] FROM logs FINAL")
        prompt = tt.query("SELECT attributes['prompt'] FROM agent_events FINAL WHERE event = 'user_prompt'")
        point = tt.query("SELECT attributes FROM metric_points FINAL")
        status = httpx.get(f"{tt.http_url}/api/status", headers={"authorization": "Bearer key-alpha"}).json()

    assert {"spans", "logs", "agent_events", "metric_points", "traces"} <= set(stored)
    everything = "\n".join(stored.values())
    for secret in plant.secrets:
        for table, text in stored.items():
            assert secret not in text, f"{secret!r} is stored in {table}"
    card = next(s for s in plant.secrets if s.startswith("4") and " " in s)
    assert card.replace(" ", "") not in everything
    assert luhn_invalid in everything  # a digit run that is no card number is kept

    # what was replaced, where, and what the normalizer made of it
    chat = spans["chat gpt-4o-mini"]
    assert json.loads(chat[5])[0]["parts"][0]["content"] == "my key is\n[REDACTED:api_key]"
    assert json.loads(chat[6])[0]["parts"][0]["content"] == "write to\n[REDACTED:email]"
    assert json.loads(chat[7])[0]["content"] == "AWS access key [REDACTED:api_key]"
    attributes, resource = chat[11], chat[12]
    assert attributes["app.note"] == "deploy token [REDACTED:jwt]"
    assert attributes["http.request.header.authorization"] == "[REDACTED:denied_key]"
    assert attributes["app.internal.session"] == "[REDACTED:denied_key]"
    assert attributes["order.number"] == luhn_invalid
    assert attributes["user.id"] == chat[14] == "[REDACTED:email]"
    assert json.loads(attributes["app.tags"]) == ["ok", "key [REDACTED:api_key]"]
    assert resource["db.url"] == "postgres://app:[REDACTED:credential]@db.internal:5432/app"
    v126 = spans["chat claude-3-5-haiku-20241022"]
    assert json.loads(v126[5])[0]["parts"][0]["content"] == "use [REDACTED:api_key] for this"
    assert json.loads(v126[6])[0]["parts"][0]["content"] == "Authorization: Bearer [REDACTED:bearer]"
    assert "[REDACTED:api_key]" in spans["openinference llm"][5]
    assert "password=[REDACTED:credential] please" in spans["openllmetry chat"][5]
    assert "sent to [REDACTED:email]" in spans["openllmetry chat"][6]
    tool = spans["execute_tool charge_card"]
    assert json.loads(tool[8]) == {"password": "[REDACTED:credential]", "card": "[REDACTED:card]"}
    assert json.loads(tool[9]) == {"token": "[REDACTED:api_key]"}
    assert tool[10] == "upstream refused [REDACTED:jwt]"
    assert tool[13][0]["exception.stacktrace"] == "[REDACTED:private_key]"
    assert log == [("Authorization: Bearer [REDACTED:bearer]", "see [REDACTED:ticket]")]
    assert prompt == [("deploy with [REDACTED:api_key]",)]
    assert point[0][0]["user.email"] == "[REDACTED:email]"
    assert point[0][0]["key.hint"] == "[REDACTED:api_key]"

    # token counts, models and costs as sent
    for name, (provider, model, input_tokens, output_tokens) in _CALLS.items():
        got = spans[name]
        assert got[:4] == (provider, model, input_tokens, output_tokens), name
        priced = price_call(
            pricer, provider, (model,), billable=True, input_tokens=input_tokens, output_tokens=output_tokens
        )
        assert priced.cost and got[4] == pytest.approx(priced.cost), name

    # counted by project and rule, on /metrics and /api/status
    assert counted == plant.expected
    shown = {(r["project"], r["rule"]): r["count"] for r in status["redaction"]["redacted"]}
    assert shown == plant.expected
    assert status["stats"]["tokentrail_redactions_total"] == sum(plant.expected.values())
    assert status["redaction"]["rule_sets"] == ["secrets", "emails", "cards"]


def test_by_default_keys_and_cards_go_and_emails_stay(settings, store):
    """The defaults: `secrets` and `cards`. A coding agent's `user.email` names the developer, and
    is kept; numbers are never changed; a key that only names a credential is no credential."""
    rng = random.Random(7)
    plant = Planted(rng)
    key, card = plant.openai("default"), plant.card()
    plant.expected[("default", "card")] = plant.expected.pop(("alpha", "card"))
    with running_collector(settings, store) as tt:
        provider = TracerProvider(resource=Resource.create({"service.name": "claude-code"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{tt.http_url}/v1/traces")))
        with provider.get_tracer("t").start_as_current_span("claude_code.llm_request") as span:
            span.set_attributes(
                {
                    "user.email": "ada@example.com",
                    "auth.env_openai_api_key_present": True,
                    "app.order_id": 4111111111111111,  # a number is never a card
                    "prompt": f"{key} and {card}",
                }
            )
        provider.shutdown()
        tt.flush()
        rows = tt.query("SELECT attributes, user_id FROM spans FINAL")
        counted = _redactions(tt.http_url)
        out = subprocess.run(
            [sys.executable, "-m", "tokentrail", "status", "--url", f"{tt.http_url}/api/status"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    [(attributes, user_id)] = rows
    assert attributes["prompt"] == "[REDACTED:api_key] and [REDACTED:card]"
    assert attributes["user.email"] == user_id == "ada@example.com"
    assert attributes["auth.env_openai_api_key_present"] == "true"
    assert attributes["app.order_id"] == "4111111111111111"
    assert counted == plant.expected
    assert "redaction: secrets, cards" in out.stdout
    assert "redacted:  default: api_key 1, card 1" in out.stdout


def test_an_invalid_pattern_stops_the_collector_at_start(tmp_path):
    port = free_port()
    env = collector_env(str(tmp_path), port, TOKENTRAIL_REDACT_PATTERNS='{"ticket": "TCK-[0-9"}')
    out = subprocess.run(
        [sys.executable, "-m", "tokentrail", "collector"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert (
        "TOKENTRAIL_REDACT_PATTERNS: the pattern of 'ticket', 'TCK-[0-9', is not a valid regular expression"
        in out.stderr
    )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOKENTRAIL_REDACT": "secrets,passwords"}, "TOKENTRAIL_REDACT: unknown rule set 'passwords'"),
        ({"TOKENTRAIL_REDACT_PATTERNS": "TCK-[0-9]{6}"}, "TOKENTRAIL_REDACT_PATTERNS is not JSON"),
        ({"TOKENTRAIL_REDACT_PATTERNS": '{"Ticket": "TCK"}'}, "the name 'Ticket' must be lower-case"),
        ({"TOKENTRAIL_REDACT_PATTERNS": '["x*"]'}, "matches the empty string"),
        ({"TOKENTRAIL_REDACT_PATTERNS": '{"a": 5}'}, "the pattern of 'a' must be a non-empty string"),
    ],
)
def test_bad_redaction_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        from_env({"TOKENTRAIL_DATA_DIR": str(tmp_path), **env})


def test_redaction_settings(tmp_path):
    base = {"TOKENTRAIL_DATA_DIR": str(tmp_path)}
    assert from_env(base).redact == ("secrets", "cards")
    assert from_env({**base, "TOKENTRAIL_REDACT": "none"}).redact == ()
    assert from_env({**base, "TOKENTRAIL_REDACT": " Emails, secrets "}).redact == ("secrets", "emails")
    patterns = '{"ticket": "TCK-\\\\d{6}", "employee": "EMP[0-9]{5}"}'
    assert from_env({**base, "TOKENTRAIL_REDACT_PATTERNS": patterns}).redact_patterns == (
        ("ticket", r"TCK-\d{6}"),
        ("employee", "EMP[0-9]{5}"),
    )
    assert from_env({**base, "TOKENTRAIL_REDACT_PATTERNS": '["EMP[0-9]{5}"]'}).redact_patterns == (
        ("custom", "EMP[0-9]{5}"),
    )
    keys = from_env({**base, "TOKENTRAIL_REDACT_KEYS": "X-Session, app.internal.*,"}).redact_keys
    assert keys == ("x-session", "app.internal.*")


#: (text, the secrets in it, by rule): each must be replaced, and nothing else
_EXAMPLES = [
    (
        "openai sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done",
        {"api_key": ["sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"]},
    ),
    ("aws AKIAIOSFODNN7EXAMPLE,", {"api_key": ["AKIAIOSFODNN7EXAMPLE"]}),
    (
        "google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
        {"api_key": ["AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"]},
    ),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", {"api_key": ["sk_live_4eC39HqLyjWDarjtT1zdp7dc"]}),
    ("slack xoxb-1234-5678-abcdefgh", {"api_key": ["xoxb-1234-5678-abcdefgh"]}),
    ("hf hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", {"api_key": ["hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"]}),
    (
        '"line one\\nsk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"',
        {"api_key": ["sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"]},
    ),
    ("curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZDEyMw=='", {"bearer": ["dXNlcjpwYXNzd29yZDEyMw=="]}),
    ("mysql://root:s3cret!@10.0.0.1/db", {"credential": ["s3cret!"]}),
    ('{"client_secret": "abc-DEF-123"}', {"credential": ["abc-DEF-123"]}),
    ("export DB_PASSWORD=correcthorse", {"credential": ["correcthorse"]}),
    ('{"n": 5555555555554444}', {"card": ["5555555555554444"]}),
    ("amex 3782 822463 10005.", {"card": ["3782 822463 10005"]}),
    ("visa 4012-8888-8888-1881 then 2024", {"card": ["4012-8888-8888-1881"]}),
    ("mail ops+alerts@mail.example.co.uk.", {"email": ["ops+alerts@mail.example.co.uk"]}),
    ('"\\u00e9bob@example.org"', {"email": ["bob@example.org"]}),
    ("a@x.1mail.com", {"email": ["a@x.1mail.com"]}),
    (
        '{"content": "Authorization:\\tBearer Zx9Yw8Vu7Ts6Rq5Po4Nm and password:\\tcorrecthorse"}',
        {"bearer": ["Zx9Yw8Vu7Ts6Rq5Po4Nm"], "credential": ["correcthorse"]},
    ),
    # nothing to redact
    ("task-force-alpha-bravo-charlie-delta-echo", {}),
    ("ask-the-customer-about-their-order-please", {}),
    ("Basic authentication-is-not-supported-here", {}),
    ("model gpt-4o-mini-2024-07-18 and claude-sonnet-4-5-20250929", {}),
    ("trace 4bf92f3577b34da6a3ce929d0e0e4736 at 1764000000000000000", {}),
    ("score 0.4111111111111111 and years 2023 2024 2025 2026", {}),
    ("order 4111111111111112 (the check digit is wrong)", {}),
    ("if password == other: password = None", {}),
    ("see https://example.com:8443/path?q=1", {}),
]


@pytest.mark.parametrize(("text", "secrets"), _EXAMPLES)
def test_rules(text: str, secrets: dict[str, list[str]]):
    redactor = Redactor(("secrets", "emails", "cards"))
    expected = text
    for rule, found in secrets.items():
        for secret in found:
            mark = f"[REDACTED:{rule}]"
            quoted = secret.isdigit() and f": {secret}" in text  # a bare JSON number becomes a string
            expected = expected.replace(secret, f'"{mark}"' if quoted else mark)
    counts: Counter[str] = Counter()
    assert redactor.redact(text, counts) == expected
    assert counts == Counter({rule: len(found) for rule, found in secrets.items()})
    if text.startswith(("{", '"')):
        json.loads(redactor.redact(text, Counter()))  # JSON text stays JSON
    # the RE2 prefilter flags every string a rule redacts
    scan = Scan(redactor)
    cells = [text]
    scan.strings(cells)
    assert scan.run() == counts and cells == [expected]


def test_luhn():
    assert luhn("4111111111111111") and luhn("79927398713")
    assert not luhn("4111111111111112") and not luhn("79927398710")


def test_a_string_pyarrow_cannot_hold_is_still_redacted():
    text = "broken \ud800 then sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    values: dict[str, Any] = {"note": text, "n": 5}
    texts = {"note": text, "n": "5"}
    scan = Scan(Redactor())
    scan.pair(values, texts)
    assert scan.run() == Counter({"api_key": 1})
    assert values["note"] == texts["note"] == "broken \ud800 then [REDACTED:api_key]"


def test_strings_inside_arrays_and_maps_are_redacted():
    """An OTLP array or kvlist: its strings are redacted one by one (the normalizer reads them),
    and its stored text (JSON, where a tab is `\\t`) is made again from them."""
    values: dict[str, Any] = {
        "tags": ["ok", "password\t= hunter22", 7],
        "headers": {"x-note": "Bearer abcdefgh12345678", "n": 1},
    }
    texts = {key: json.dumps(value) for key, value in values.items()}
    scan = Scan(Redactor())
    scan.pair(values, texts)
    assert scan.run() == Counter({"credential": 1, "bearer": 1})
    assert values["tags"] == ["ok", "password\t= [REDACTED:credential]", 7]
    assert values["headers"] == {"x-note": "Bearer [REDACTED:bearer]", "n": 1}
    assert json.loads(texts["tags"]) == values["tags"]
    assert json.loads(texts["headers"]) == values["headers"]


def test_columns_made_from_redacted_attributes_are_redacted_and_not_counted_again():
    """The normalizer copies a resource's `session.id` into conversation_id and rebuilds
    OpenLLMetry's flattened prompt into input_messages: both copies are redacted as their source
    was, and what is counted is the source."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in (("service.name", "bot"), ("session.id", "ops@example.com")):
        kv = resource.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    span = resource.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "openllmetry chat"
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_100_000_000
    key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    for name, value in (
        ("llm.request.type", "chat"),
        ("gen_ai.request.model", "gpt-4o-mini"),
        ("gen_ai.prompt.0.role", "user"),
        ("gen_ai.prompt.0.content", f"use {key}"),
    ):
        kv = span.attributes.add()
        kv.key, kv.value.string_value = name, value
    batch = SpanBatch(redactor=Redactor(("secrets", "emails")))
    batch.add("p", request)
    [row] = pa.ipc.open_stream(batch.arrow()).read_all().to_pylist()
    maps = ("attributes", "resource_attributes")
    column: dict[str, Any] = {name: dict(value) if name in maps else value for name, value in row.items()}
    assert list(column) == list(SPAN_COLUMNS)
    assert column["resource_attributes"]["session.id"] == column["conversation_id"] == "[REDACTED:email]"
    assert column["attributes"]["gen_ai.prompt.0.content"] == "use [REDACTED:api_key]"
    assert json.loads(column["input_messages"])[0]["parts"][0]["content"] == "use [REDACTED:api_key]"
    assert batch.redactions == Counter({("p", "email"): 1, ("p", "api_key"): 1})


def test_an_extra_pattern_with_a_secret_group_replaces_only_that_group():
    redactor = Redactor((), (("pin", "PIN: (?P<secret>[0-9]{4,6})"),))
    counts: Counter[str] = Counter()
    assert redactor.redact("card PIN: 4821, PIN: none", counts) == "card PIN: [REDACTED:pin], PIN: none"
    assert counts == Counter({"pin": 1})


@pytest.mark.parametrize(
    "text",
    [
        '{"card": 4111111111111111, "n": [5555555555554444]}',  # numbers: replaced by strings
        '{"text": "card: 4111111111111111, exp 12/25"}',  # inside a string: no quotes added
        '[{"role": "user", "parts": [{"type": "text", "content": "Visa: 4111 1111 1111 1111."}]}]',
    ],
)
def test_json_stays_json(text: str):
    redacted = Redactor().redact(text, Counter())
    assert "[REDACTED:card]" in redacted and "4111" not in redacted
    json.loads(redacted)
