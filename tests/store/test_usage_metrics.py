"""Coding agents' metrics, sent through a running collector, read back as usage per developer, team,
repository, model and coding agent, and set beside the cost of traces.

Expected figures come from what was sent: tokens added up in OpenTelemetry's sense by hand here,
and costs from the price catalog itself (`genai_prices.calc_price`) or as the agent reported them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate

import httpx
import pytest
from genai_prices import Usage, calc_price

from tests.support.coding_agents import emit_metrics, ground_truth, realistic_session
from tests.support.collector import Running, running_collector
from tests.support.meters import Temporality, Transport, sdk_meters
from tokentrail.pricing import PriceBook
from tokentrail.store.usage_metrics import (
    COMMIT_METRIC,
    UsageRow,
    daily_usage,
    increments,
    reconcile_with_traces,
)

_PRICER = PriceBook()
_DAY = datetime(2025, 3, 4, tzinfo=UTC)  # a Tuesday, at midnight


def _catalog(model: str, provider: str, **usage: int) -> float:
    return float(calc_price(Usage(**usage), model, provider_id=provider).total_price)


#: one measurement: "add" (to a counter) or "record" (into a histogram), the metric, the amount and
#: the attributes
Sent = tuple[str, str, float, dict[str, str]]


@dataclass
class Agent:
    """One coding agent's process: its resource, and what it measures between two exports."""

    resource: dict[str, str]
    exports: list[list[Sent]] = field(default_factory=list)


def _claude(email: str) -> Agent:
    resource = {"service.name": "claude-code", "team": "payments", "repository": "acme/api"}
    model = {"model": "claude-sonnet-4-5", "user__email": email, "session__id": "s-1"}
    first: list[Sent] = [
        ("add", "claude_code.cost.usage", 0.42, model),
        ("add", "claude_code.token.usage", 1000, {**model, "type": "input"}),
        ("add", "claude_code.token.usage", 200, {**model, "type": "output"}),
        ("add", "claude_code.token.usage", 5000, {**model, "type": "cacheRead"}),
        ("add", "claude_code.token.usage", 300, {**model, "type": "cacheCreation"}),
        ("add", "claude_code.commit.count", 2, {"user__email": email}),
        ("add", "claude_code.pull_request.count", 1, {"user__email": email}),
    ]
    second: list[Sent] = [
        ("add", "claude_code.cost.usage", 0.08, model),
        ("add", "claude_code.token.usage", 100, {**model, "type": "input"}),
        ("add", "claude_code.commit.count", 1, {"user__email": email}),
    ]
    return Agent(resource, [first, second])


def _codex(email: str, model: str) -> Agent:
    # Codex names no user on its metrics: the developer comes from the resource here
    resource = {
        "service.name": "codex_cli_rs",
        "user.email": email,
        "team": "web",
        "vcs.repository.name": "acme/web",
    }
    turn: list[Sent] = [
        ("record", "codex.turn.token_usage", value, {"token_type": kind, "model": model})
        for kind, value in (
            ("total", 2300),
            ("input", 2000),
            ("cached_input", 1500),
            ("output", 300),
            ("reasoning_output", 100),
        )
    ]
    return Agent(resource, [turn, turn])


def _gemini(email: str) -> Agent:
    resource = {"service.name": "gemini-cli", "team": "web"}
    who = {"user__email": email}
    tokens: list[Sent] = [
        ("add", "gemini_cli.token.usage", value, {**who, "type": kind, "model": "gemini-2.5-flash"})
        for kind, value in (
            ("input", 4000),
            ("cache", 1000),
            ("output", 500),
            ("thought", 200),
            ("tool", 100),
        )
    ]
    # the spec's metric, for the same tokens: not to be counted twice
    spec: list[Sent] = [
        (
            "record",
            "gen_ai.client.token.usage",
            value,
            {
                "gen_ai.token.type": kind,
                "gen_ai.response.model": "gemini-2.5-flash",
                "gen_ai.provider.name": "gcp.gen_ai",
            },
        )
        for kind, value in (("input", 4000), ("output", 500))
    ]
    return Agent(resource, [tokens + spec])


def _app() -> Agent:
    """An application (not a coding agent) sending the spec's token metric."""
    attributes = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.provider.name": "openai"}
    return Agent(
        {"service.name": "support-bot"},
        [
            [
                ("record", "gen_ai.client.token.usage", 1000, {**attributes, "gen_ai.token.type": "input"}),
                ("record", "gen_ai.client.token.usage", 100, {**attributes, "gen_ai.token.type": "output"}),
            ]
        ],
    )


def _send(tt: Running, agent: Agent, transport: Transport, temporality: Temporality) -> None:
    meters = sdk_meters(tt, transport, temporality, agent.resource)
    for export in agent.exports:
        for kind, metric, amount, attributes in export:
            attrs = {key.replace(".", "__"): value for key, value in attributes.items()}
            if kind == "add":
                meters.add(metric, amount, **attrs)
            else:
                meters.record(metric, amount, **attrs)
        meters.export()
    meters.close()


def _total(agent: Agent, metric: str, **match: str) -> float:
    """What `agent` sent of `metric`, over the points whose attributes include `match`."""
    return sum(
        amount
        for export in agent.exports
        for _, name, amount, attributes in export
        if name == metric and all(attributes.get(k) == v for k, v in match.items())
    )


_COUNTED = [f.name for f in fields(UsageRow) if f.name not in ("day", "key", "cost_usd")]


def _per_key(found: list[UsageRow]) -> dict[str, UsageRow]:
    """Rows by key, the days of the window added up (a test may run across midnight); a cost is
    unknown when it is unknown on every day."""
    grouped: dict[str, list[UsageRow]] = defaultdict(list)
    for row in found:
        grouped[row.key].append(row)
    summed = {}
    for key, days in grouped.items():
        costs = [r.cost_usd for r in days if r.cost_usd is not None]
        totals = {name: sum(getattr(r, name) for r in days) for name in _COUNTED}
        summed[key] = replace(days[0], day=date.min, cost_usd=sum(costs) if costs else None, **totals)
    return summed


@pytest.mark.parametrize(("transport", "temporality"), [("http", "delta"), ("grpc", "cumulative")])
def test_usage_per_developer_from_the_sent_figures_and_the_catalog(
    settings, store, transport: Transport, temporality: Temporality
):
    claude, codex, unknown = (
        _claude("ada@example.com"),
        _codex("bob@example.com", "gpt-5"),
        _codex("eve@example.com", "no-such-model"),
    )
    gemini, app = _gemini("carol@example.com"), _app()
    now = datetime.now(UTC)
    with running_collector(settings, store) as tt:
        for agent in (claude, codex, unknown, gemini, app):
            _send(tt, agent, transport, temporality)
        tt.flush()
        window = (now - timedelta(days=1), now + timedelta(days=1))
        by_developer = daily_usage(
            store.client, settings.default_project, *window, "developer", pricer=_PRICER
        )
        by_agent = _per_key(
            daily_usage(store.client, settings.default_project, *window, "coding_agent", pricer=_PRICER)
        )
        by_team = _per_key(
            daily_usage(store.client, settings.default_project, *window, "team", pricer=_PRICER)
        )
        by_repository = _per_key(
            daily_usage(store.client, settings.default_project, *window, "repository", pricer=_PRICER)
        )
        by_model = _per_key(
            daily_usage(store.client, settings.default_project, *window, "model", pricer=_PRICER)
        )
        elsewhere = daily_usage(store.client, "another-project", *window, "developer", pricer=_PRICER)
    assert {row.day for row in by_developer} <= {(now - timedelta(days=d)).date() for d in (-1, 0, 1)}
    rows = _per_key(by_developer)
    assert set(rows) == {"ada@example.com", "bob@example.com", "eve@example.com", "carol@example.com", ""}

    ada = rows["ada@example.com"]
    cc = "claude_code.token.usage"
    cache_read, cache_write = _total(claude, cc, type="cacheRead"), _total(claude, cc, type="cacheCreation")
    # as reported, not priced again
    assert ada.cost_usd == pytest.approx(_total(claude, "claude_code.cost.usage"))
    assert ada.reported_cost_usd == pytest.approx(ada.cost_usd)
    assert ada.computed_cost_usd == 0
    assert ada.input_tokens == _total(claude, cc, type="input") + cache_read + cache_write
    assert (ada.output_tokens, ada.cache_read_tokens, ada.cache_write_tokens) == (
        _total(claude, cc, type="output"),
        cache_read,
        cache_write,
    )
    assert (ada.commits, ada.pull_requests) == (3, 1)

    bob = rows["bob@example.com"]
    cx = "codex.turn.token_usage"
    bob_tokens = {
        "input_tokens": round(_total(codex, cx, token_type="input")),
        "cache_read_tokens": round(_total(codex, cx, token_type="cached_input")),
        "output_tokens": round(_total(codex, cx, token_type="output")),
    }
    assert bob.computed_cost_usd == pytest.approx(_catalog("gpt-5", "openai", **bob_tokens))
    assert bob.cost_usd == pytest.approx(bob.computed_cost_usd)
    assert bob.reported_cost_usd == 0
    assert (bob.input_tokens, bob.cache_read_tokens, bob.output_tokens) == tuple(bob_tokens.values())
    assert bob.reasoning_tokens == _total(codex, cx, token_type="reasoning_output")

    eve = rows["eve@example.com"]  # a model the catalog does not know: unknown, not $0
    assert (eve.cost_usd, eve.unpriced_tokens) == (None, bob.input_tokens + bob.output_tokens)

    carol = rows["carol@example.com"]
    gm = "gemini_cli.token.usage"
    thought = _total(gemini, gm, type="thought")
    carol_tokens = {
        "input_tokens": round(_total(gemini, gm, type="input") + _total(gemini, gm, type="tool")),
        "cache_read_tokens": round(_total(gemini, gm, type="cache")),
        "output_tokens": round(_total(gemini, gm, type="output") + thought),
    }
    assert (carol.input_tokens, carol.cache_read_tokens, carol.output_tokens) == tuple(carol_tokens.values())
    assert carol.reasoning_tokens == thought
    assert carol.cost_usd == pytest.approx(_catalog("gemini-2.5-flash", "google", **carol_tokens))

    nobody = rows[""]  # the application's spec metric: no developer, no coding agent
    app_tokens = {"input_tokens": 1000, "output_tokens": 100}
    assert (nobody.input_tokens, nobody.output_tokens) == tuple(app_tokens.values())
    assert nobody.cost_usd == pytest.approx(_catalog("gpt-4o-mini", "openai", **app_tokens))

    assert set(by_agent) == {"claude_code", "codex", "gemini_cli", ""}
    assert by_agent["codex"].input_tokens == bob.input_tokens + eve.input_tokens
    assert by_agent[""].cost_usd == pytest.approx(nobody.cost_usd)
    assert {key: row.commits for key, row in by_team.items()} == {"payments": 3, "web": 0, "": 0}
    assert set(by_repository) == {"acme/api", "acme/web", ""}
    assert by_model["gpt-5"].cost_usd == pytest.approx(bob.cost_usd)
    # every grouping counts the same whole
    costs = [
        sum(r.cost_usd or 0 for r in grouped.values())
        for grouped in (rows, by_agent, by_team, by_repository, by_model)
    ]
    assert costs == [pytest.approx(costs[0])] * 5
    assert elsewhere == []


def test_a_cumulative_counter_that_restarts_counts_from_zero_again(settings, store):
    now = datetime.now(UTC)
    resource = {"service.name": "claude-code"}
    runs = [[5, 3], [2, 4]]  # two processes one after the other: the second starts from 0
    with running_collector(settings, store) as tt:
        for adds in runs:
            meters = sdk_meters(tt, "http", "cumulative", resource)
            for amount in adds:
                meters.add(COMMIT_METRIC, amount, user__email="ada@example.com")
                meters.export()
            meters.close()  # its last export repeats the total
        tt.flush()
        window = (now - timedelta(days=1), now + timedelta(days=1))
        points = increments(store.client, settings.default_project, *window, [COMMIT_METRIC])
        usage = daily_usage(store.client, settings.default_project, *window, "developer", pricer=_PRICER)
    # one series (the same metric, resource and attributes), restarted: a second start time
    assert len({p["series"] for p in points}) == 1
    assert len({p["start_time"] for p in points}) == len(runs)
    assert [p["value"] for p in points] == [float(v) for adds in runs for v in [*accumulate(adds), sum(adds)]]
    assert [p["increment"] for p in points] == [float(v) for adds in runs for v in [*adds, 0]]
    assert sum(row.commits for row in usage) == sum(map(sum, runs))


def _ns(day: int, hour: int = 12) -> str:
    """A time `day` days after _DAY, at `hour` o'clock, as OTLP/JSON writes it."""
    return str(int((_DAY + timedelta(days=day, hours=hour)).timestamp()) * 10**9)


def _metric(
    name: str, temporality: int, *points: tuple[str, str, float, dict[str, str]]
) -> dict[str, object]:
    return {
        "name": name,
        "sum": {
            "aggregationTemporality": temporality,
            "isMonotonic": True,
            "dataPoints": [
                {
                    "startTimeUnixNano": start,
                    "timeUnixNano": time,
                    "asDouble": value,
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
                }
                for start, time, value, attributes in points
            ],
        },
    }


def _post(tt: Running, resource: dict[str, str], *metrics: dict[str, object], key: str = "") -> None:
    body = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]
                },
                "scopeMetrics": [{"metrics": list(metrics)}],
            }
        ]
    }
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(f"{tt.http_url}/v1/metrics", json=body, headers=headers)
    assert r.status_code == 200 and "partialSuccess" not in r.json(), r.text


def test_days_weeks_and_a_series_that_began_before_the_window(settings, store):
    ada = {"user.email": "ada@example.com", "model": "claude-sonnet-4-5"}
    started = _ns(-10)
    # a cumulative cost since ten days before: 100 before the window, then 30 and 10 more
    cumulative = [
        (started, _ns(-1), 100.0, ada),
        (started, _ns(0), 130.0, ada),
        (started, _ns(6), 140.0, ada),
    ]
    # a value that falls without a new start time: the process restarted, and counts from 0
    restarted = [
        (started, _ns(1, 9), 5.0, ada),
        (started, _ns(1, 10), 7.0, ada),
        (started, _ns(1, 11), 2.0, ada),
    ]
    bob = {"user.email": "bob@example.com"}
    delta = [(_ns(d, h - 1), _ns(d, h), 1.0, bob) for d, h in ((0, 10), (0, 12), (1, 12), (7, 12))]
    with running_collector(settings, store) as tt:
        _post(
            tt,
            {"service.name": "claude-code"},
            _metric("claude_code.cost.usage", 2, *cumulative),
            _metric("claude_code.commit.count", 2, *restarted),
            _metric("claude_code.commit.count", 1, *delta),
        )
        tt.flush()
        window = (_DAY, _DAY + timedelta(days=7))
        daily = daily_usage(store.client, settings.default_project, *window, "developer", pricer=_PRICER)
        weekly = daily_usage(
            store.client, settings.default_project, *window, "developer", "week", pricer=_PRICER
        )
    day = _DAY.date()
    assert [(r.day, r.key, r.cost_usd, r.commits) for r in daily] == [
        (day, "ada@example.com", 30.0, 0),
        (day, "bob@example.com", 0.0, 2),
        (day + timedelta(days=1), "ada@example.com", 0.0, 5 + 2 + 2),
        (day + timedelta(days=1), "bob@example.com", 0.0, 1),
        (day + timedelta(days=6), "ada@example.com", 10.0, 0),
    ]
    monday = day - timedelta(days=day.weekday())
    assert [(r.day, r.key, r.cost_usd, r.commits) for r in weekly] == [
        (monday, "ada@example.com", 30.0, 9),
        (monday, "bob@example.com", 0.0, 3),
        (monday + timedelta(days=7), "ada@example.com", 10.0, 0),
    ]
    with pytest.raises(ValueError, match="by must be one of developer, team"):
        daily_usage(store.client, settings.default_project, *window, "user")


def _insert_traces(store, rows: list[tuple[str, datetime, str, float, str]]) -> None:
    store.client.insert(
        "traces",
        [[project, uuid.uuid4().hex, start, user, cost, agent] for project, start, user, cost, agent in rows],
        column_names=["project", "trace_id", "start_time", "user_id", "cost_usd", "coding_agent"],
        settings={"async_insert": 0},
    )


def test_cost_from_metrics_beside_cost_from_traces(settings, store):
    keyed = settings.with_(api_keys={"k-main": "main", "k-other": "other"})
    ada, bob = {"user.email": "ada@example.com"}, {"user.email": "bob@example.com"}
    noon = _DAY + timedelta(hours=12)
    with running_collector(keyed, store) as tt:
        _post(
            tt,
            {"service.name": "claude-code"},
            _metric(
                "claude_code.cost.usage", 1, (_ns(0, 9), _ns(0), 0.5, ada), (_ns(1, 9), _ns(1), 0.25, bob)
            ),
            key="k-main",
        )
        _post(
            tt,
            {"service.name": "claude-code"},
            _metric("claude_code.cost.usage", 1, (_ns(0, 9), _ns(0), 9.0, ada)),
            key="k-other",
        )
        tt.flush()
        _insert_traces(
            store,
            [
                ("main", noon, "ada@example.com", 0.3, "claude_code"),
                ("main", noon + timedelta(hours=1), "ada@example.com", 0.1, "claude_code"),
                ("main", noon, "ada@example.com", 7.0, ""),  # not a coding agent's trace
                ("main", noon, "dave@example.com", 0.2, "codex"),
                ("other", noon, "ada@example.com", 5.0, "claude_code"),
                (
                    "main",
                    noon - timedelta(days=2),
                    "ada@example.com",
                    3.0,
                    "claude_code",
                ),  # before the window
            ],
        )
        found = reconcile_with_traces(store.client, "main", _DAY, _DAY + timedelta(days=7), pricer=_PRICER)
    day = _DAY.date()
    assert [(r.day, r.developer, r.metrics_cost_usd, r.traces_cost_usd) for r in found] == [
        (day, "ada@example.com", 0.5, pytest.approx(0.4)),
        (day, "dave@example.com", None, 0.2),
        (day + timedelta(days=1), "bob@example.com", 0.25, None),
    ]
    assert [r.difference_usd for r in found] == pytest.approx([0.5 - 0.4, -0.2, 0.25])
    assert [r.relative_difference for r in found] == pytest.approx([(0.5 - 0.4) / 0.5, 1.0, 1.0])


_CATALOG_PROVIDERS = {"claude_code": "anthropic", "codex": "openai", "gemini_cli": "google"}


@pytest.mark.parametrize("tool", ["claude_code", "codex", "gemini_cli"])
def test_an_emulated_session_adds_up_to_its_ground_truth(settings, store, tool):
    """A realistic session of each tool, its metrics sent as the tool sends them: the tokens and
    cost read back are the session's ground truth (the cost Claude Code reported; the others'
    calls priced one by one from the catalog)."""
    session = realistic_session(tool, seed=7, start=_DAY + timedelta(hours=9))
    truth = ground_truth(session).totals
    calls = [c for t in ground_truth(session).traces for c in t.calls if c.succeeded]
    with running_collector(settings, store) as tt:
        assert emit_metrics(session, tt.http_url, "http") > 0
        tt.flush()
        found = daily_usage(
            store.client,
            settings.default_project,
            _DAY,
            _DAY + timedelta(days=2),
            "coding_agent",
            pricer=_PRICER,
        )
    assert [(r.key, r.day) for r in found] == [(tool, _DAY.date())]
    (row,) = found
    assert (
        row.input_tokens,
        row.output_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.reasoning_tokens,
    ) == (
        truth.input_tokens,
        truth.output_tokens,
        truth.cache_read_tokens,
        truth.cache_write_tokens,
        truth.reasoning_tokens,
    )
    if truth.cost_usd is not None:
        expected = truth.cost_usd
    else:
        expected = sum(
            _catalog(
                c.model,
                _CATALOG_PROVIDERS[tool],
                input_tokens=c.input_tokens,
                cache_read_tokens=c.cache_read_tokens,
                cache_write_tokens=c.cache_write_tokens,
                output_tokens=c.output_tokens,
            )
            for c in calls
        )
    assert row.cost_usd == pytest.approx(expected)
    assert row.unpriced_tokens == 0
