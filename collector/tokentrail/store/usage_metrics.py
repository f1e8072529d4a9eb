"""What coding agents report in their OTLP metrics: cost, tokens, commits and pull requests per day
or week, per developer, team, repository, model or coding agent; and how far that cost is from
the cost of the same developers' coding-agent traces.

Read from `metric_points`, one project at a time. Counters and histograms are read as increments
(`increments`, the one place that SQL is written): a delta point counts as sent; a cumulative
point counts what it adds to the previous point of its series with the same start time, and the
first point of a (series, start time) counts from 0, so a restarted process (a new start time)
starts again from 0. A cumulative value that falls without a new start time (a monotonic sum
lower than the point before it, a histogram whose count falls) is read as a restart too.

The metrics read (`TOKEN_METRICS`, `COST_METRIC`, `COMMIT_METRIC`, `PULL_REQUEST_METRIC`):

- `claude_code.cost.usage` (USD, attribute `model`): cost as reported; it wins over a price
  computed from the same session's tokens, which are still counted.
- token metrics: `claude_code.token.usage` (`type`: input, output, cacheRead, cacheCreation;
  Anthropic's input excludes cache reads and writes), `codex.turn.token_usage` (`token_type`:
  input, cached_input, cache_write_input, output, reasoning_output, and total, not counted;
  OpenAI's input includes the cached tokens, its output the reasoning), `gemini_cli.token.usage`
  (`type`: input, output, thought, cache, tool; Gemini's input includes the cached tokens, its
  output leaves out the thoughts and the tool prompts are input of their own) and the spec's
  `gen_ai.client.token.usage` (`gen_ai.token.type`: input, output). They are counted in one
  sense, OpenTelemetry's: input includes cache reads and writes, output includes reasoning. The
  model is the point's `model` attribute (`gen_ai.response.model`, else `gen_ai.request.model`,
  for the spec's metric). Tokens without a reported cost are priced with `tokentrail.pricing`,
  at the catalog's base rates (a metric sums many calls of sizes it does not tell, so a price
  that rises with the size of one call cannot be applied); a model the catalog does not know has
  an unknown cost, never $0. A service that sends a coding agent's own token metric has its
  `gen_ai.*` points left out (Gemini CLI sends both: they count the same tokens).
- `claude_code.commit.count` and `claude_code.pull_request.count`.

Attributes are read from the point, else from its resource (each name in turn, before the next
name): developer = `user.email`, else `user.account_uuid`, else `user.account_id`, else
`user.id`; team = `team`; repository = `repository`, else `vcs.repository.name`; the coding
agent is the metric's prefix (claude_code, codex, gemini_cli; '' for `gen_ai.*`). Days are UTC; a
week starts on Monday. Times given (`start`, `end`) are datetimes; a naive one is UTC.

`daily_usage(client, project, start, end, by, period="day")` (`by`: one of `GROUPS`; `period`:
"day" or "week") returns `UsageRow`s, in date order then costliest first:

- `day` (date): the day, or the Monday of the week; `key` (str): the value of `by` ('' when
  the points do not say);
- `cost_usd` (float | None): reported plus computed cost, None when the row has tokens and none
  of them could be priced; `reported_cost_usd`, `computed_cost_usd` (float): its two parts;
  `unpriced_tokens` (int): input and output tokens of models the catalog does not know, whose
  cost is not in `cost_usd`;
- `input_tokens` (including cache reads and writes), `output_tokens` (including reasoning),
  `cache_read_tokens`, `cache_write_tokens`, `reasoning_tokens`, `commits`, `pull_requests`
  (int).

`reconcile_with_traces(client, project, start, end)` returns `Reconciliation`s, one per
developer and day that either side has, by day then developer:

- `day` (date), `developer` (str: a trace's `user_id` on the traces' side);
- `metrics_cost_usd` (float | None): the coding agents' cost from metrics, as in `daily_usage`;
  None when no metric point of a coding agent has that developer on that day, or when none of
  its tokens could be priced;
- `traces_cost_usd` (float | None): the cost of coding-agent traces (`traces.coding_agent` not
  empty) that started that day; None when there are none;
- `difference_usd` (float): metrics minus traces (a missing side counts as 0);
- `relative_difference` (float | None): the difference's size as a share of the larger side
  (0 to 1); None when both are 0;
- `unpriced_tokens` (int): as in `daily_usage`, on the metrics' side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from tokentrail.pricing import PriceBook
from tokentrail.providers import otel_name
from tokentrail.store._rows import Client, Row, rows

__all__ = [
    "COMMIT_METRIC",
    "COST_METRIC",
    "GROUPS",
    "PULL_REQUEST_METRIC",
    "TOKEN_METRICS",
    "Reconciliation",
    "TokenMetric",
    "Usage",
    "UsageRow",
    "daily_usage",
    "increments",
    "read_usage",
    "reconcile_with_traces",
]

Period = Literal["day", "week"]
GROUPS = ("developer", "team", "repository", "model", "coding_agent")
#: each coding agent (its metrics' prefix) and the provider its models are priced under
CODING_AGENTS = {"claude_code": "anthropic", "codex": "openai", "gemini_cli": "gcp.gen_ai"}

COST_METRIC = "claude_code.cost.usage"
COMMIT_METRIC = "claude_code.commit.count"
PULL_REQUEST_METRIC = "claude_code.pull_request.count"

#: the token counts a row keeps, in OpenTelemetry's sense
_COUNTS = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass(frozen=True)
class TokenMetric:
    """A token metric: the point attribute that names the token type, and which counts each type
    adds to."""

    type_attribute: str
    types: dict[str, tuple[str, ...]]


TOKEN_METRICS = {
    "claude_code.token.usage": TokenMetric(
        "type",
        {
            "input": ("input",),
            "output": ("output",),
            "cacheRead": ("input", "cache_read"),
            "cacheCreation": ("input", "cache_write"),
        },
    ),
    "codex.turn.token_usage": TokenMetric(
        "token_type",
        {
            "input": ("input",),
            "cached_input": ("cache_read",),
            "cache_write_input": ("cache_write",),
            "output": ("output",),
            "reasoning_output": ("reasoning",),
        },
    ),
    "gemini_cli.token.usage": TokenMetric(
        "type",
        {
            "input": ("input",),
            "cache": ("cache_read",),
            "output": ("output",),
            "thought": ("output", "reasoning"),
            "tool": ("input",),
        },
    ),
    "gen_ai.client.token.usage": TokenMetric(
        "gen_ai.token.type", {"input": ("input",), "output": ("output",)}
    ),
}
_METRICS = [COST_METRIC, COMMIT_METRIC, PULL_REQUEST_METRIC, *TOKEN_METRICS]
_AGENT_TOKEN_METRICS = [name for name in TOKEN_METRICS if name.split(".")[0] in CODING_AGENTS]


def _attribute(*keys: str) -> str:
    """The first of `keys` that the point has, else the first its resource has, else ''."""
    found = [
        f"nullIf({where}['{key}'], '')" for key in keys for where in ("attributes", "resource_attributes")
    ]
    return f"coalesce({', '.join(found)}, '')"


# The increments of counters and histograms in [start_ns, end_ns): each point's `increment` (a
# histogram's: of its sum). Cumulative points are read from before `start_ns` too: the first one in
# the window counts from the one before it.
_INCREMENTS = """
SELECT metric, series, start_time, time, value, attributes, resource_attributes, service_name,
    if(temporality = 'delta' OR n = 1 OR if(kind = 'sum', monotonic = 1 AND value < previous,
                                            count < previous_count),
       value, value - previous) AS increment
FROM (
    SELECT metric, kind, temporality, monotonic, series, start_time, time, value, count, attributes,
        resource_attributes, service_name,
        row_number() OVER w AS n, lagInFrame(value) OVER w AS previous,
        lagInFrame(count) OVER w AS previous_count
    FROM metric_points FINAL
    WHERE project = {project:String} AND metric IN (SELECT arrayJoin({metrics:Array(String)}))
        AND kind IN ('sum', 'histogram', 'exponential_histogram', 'summary')
        AND time < fromUnixTimestamp64Nano({end_ns:Int64})
        AND (temporality = 'cumulative' OR time >= fromUnixTimestamp64Nano({start_ns:Int64}))
    WINDOW w AS (PARTITION BY series, start_time ORDER BY time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
WHERE time >= fromUnixTimestamp64Nano({start_ns:Int64})
"""

# Increments summed per day and per everything a row of `daily_usage` may be keyed or priced by.
# (GLOBAL IN: on a cluster, points are sharded by series, and a service's by no one key.)
_USAGE = f"""
SELECT toDate(time, 'UTC') AS day, metric,
    {_attribute("user.email", "user.account_uuid", "user.account_id", "user.id")} AS developer,
    {_attribute("team")} AS team,
    {_attribute("repository", "vcs.repository.name")} AS repository,
    {_attribute("session.id")} AS session,
    if(startsWith(metric, 'gen_ai.'), {_attribute("gen_ai.response.model", "gen_ai.request.model")},
       {_attribute("model")}) AS model,
    if(startsWith(metric, 'gen_ai.'), {_attribute("gen_ai.provider.name", "gen_ai.system")}, '') AS provider,
    multiIf({" ".join(f"metric = '{name}', attributes['{spec.type_attribute}']," for name, spec in TOKEN_METRICS.items())}
            '') AS token_type,
    sum(increment) AS amount
FROM ({_INCREMENTS})
WHERE NOT (startsWith(metric, 'gen_ai.') AND service_name GLOBAL IN (
    SELECT DISTINCT service_name FROM metric_points
    WHERE project = {{project:String}} AND metric IN (SELECT arrayJoin({{agent_token_metrics:Array(String)}}))
        AND time >= fromUnixTimestamp64Nano({{start_ns:Int64}}) AND time < fromUnixTimestamp64Nano({{end_ns:Int64}})))
GROUP BY day, metric, developer, team, repository, session, model, provider, token_type
"""

_TRACES = """
SELECT toDate(start_time, 'UTC') AS day, user_id AS developer, sum(cost_usd) AS cost_usd
FROM traces FINAL
WHERE project = {project:String} AND coding_agent != ''
    AND start_time >= fromUnixTimestamp64Nano({start_ns:Int64}) AND start_time < fromUnixTimestamp64Nano({end_ns:Int64})
GROUP BY day, developer
"""


@dataclass(frozen=True)
class UsageRow:
    """One day (or week) of one group: see the module's docstring for each field."""

    day: date
    key: str
    cost_usd: float | None
    reported_cost_usd: float
    computed_cost_usd: float
    unpriced_tokens: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    commits: int
    pull_requests: int


@dataclass(frozen=True)
class Reconciliation:
    """One developer on one day, cost from metrics beside cost from traces: see the module's
    docstring for each field."""

    day: date
    developer: str
    metrics_cost_usd: float | None
    traces_cost_usd: float | None
    difference_usd: float
    relative_difference: float | None
    unpriced_tokens: int


@dataclass(frozen=True)
class _Grain:
    """What a day's usage is priced at and grouped by."""

    day: date
    developer: str
    team: str
    repository: str
    coding_agent: str
    provider: str
    model: str
    session: str


@dataclass
class _Sums:
    """Increments added up: tokens by count, cost, commits and pull requests."""

    tokens: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0.0))
    reported: float = 0.0
    computed: float = 0.0
    unpriced: float = 0.0
    commits: float = 0.0
    pull_requests: float = 0.0

    def add(self, other: _Sums) -> None:
        for count in _COUNTS:
            self.tokens[count] += other.tokens[count]
        self.reported += other.reported
        self.computed += other.computed
        self.unpriced += other.unpriced
        self.commits += other.commits
        self.pull_requests += other.pull_requests

    @property
    def priced(self) -> bool:
        """Some of the cost is known, or there was nothing to price."""
        return self.reported > 0 or self.computed > 0 or not self.unpriced


def _ns(moment: datetime) -> int:
    """Unix nanoseconds; a naive time is UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _window(project: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {"project": project, "start_ns": _ns(start), "end_ns": _ns(end)}


def increments(
    client: Client, project: str, start: datetime, end: datetime, metrics: Sequence[str]
) -> list[Row]:
    """Every point of `metrics` in [start, end) with its increment, by series and time: metric,
    series, start_time, time, value, increment, attributes, resource_attributes, service_name."""
    sql = f"SELECT * FROM ({_INCREMENTS}) ORDER BY metric, series, start_time, time"
    return rows(client, sql, {**_window(project, start, end), "metrics": list(metrics)})


class _Prices:
    """USD per token (fresh input, cache read, cache write, output) of each model, read from the
    price book once: a metric's total is many calls of unknown sizes, priced at the base rates."""

    def __init__(self, pricer: PriceBook) -> None:
        self.pricer = pricer
        self._rates: dict[tuple[str, str], tuple[float, float, float, float] | None] = {}

    def rates(self, provider: str, model: str) -> tuple[float, float, float, float] | None:
        key = (provider, model)
        if key not in self._rates:
            cost = self.pricer.cost
            fresh = cost(provider, model, input_tokens=1, output_tokens=0)
            read = cost(provider, model, input_tokens=1, output_tokens=0, cache_read_tokens=1)
            write = cost(provider, model, input_tokens=1, output_tokens=0, cache_write_tokens=1)
            output = cost(provider, model, input_tokens=0, output_tokens=1)
            known = None not in (fresh, read, write, output)
            self._rates[key] = (fresh or 0.0, read or 0.0, write or 0.0, output or 0.0) if known else None
        return self._rates[key]

    def price(self, grain: _Grain, sums: _Sums) -> None:
        """Cost the grain's tokens unless it has a reported cost (which wins)."""
        tokens = sums.tokens
        if sums.reported > 0 or not (tokens["input"] or tokens["output"]):
            return
        rates = self.rates(grain.provider, grain.model)
        if rates is None:
            sums.unpriced += tokens["input"] + tokens["output"]
            return
        fresh = max(0.0, tokens["input"] - tokens["cache_read"] - tokens["cache_write"])
        sums.computed += (
            fresh * rates[0]
            + tokens["cache_read"] * rates[1]
            + tokens["cache_write"] * rates[2]
            + tokens["output"] * rates[3]
        )


def _grains(found: Iterable[Row]) -> dict[_Grain, _Sums]:
    """The increments summed per grain, read in OpenTelemetry's sense of each token count."""
    grains: dict[_Grain, _Sums] = defaultdict(_Sums)
    for row in found:
        metric, amount = row["metric"], float(row["amount"])
        agent = metric.split(".")[0]
        if agent not in CODING_AGENTS:
            agent = ""
        spec = TOKEN_METRICS.get(metric)
        sums = grains[
            _Grain(
                row["day"],
                row["developer"],
                row["team"],
                row["repository"],
                agent,
                CODING_AGENTS[agent] if agent else otel_name(row["provider"]),
                row["model"],
                row["session"],
            )
        ]
        if metric == COST_METRIC:
            sums.reported += amount
        elif metric == COMMIT_METRIC:
            sums.commits += amount
        elif metric == PULL_REQUEST_METRIC:
            sums.pull_requests += amount
        elif spec is not None:
            for count in spec.types.get(row["token_type"], ()):
                sums.tokens[count] += amount
    return grains


#: a window's metric points, summed and priced per day, developer, team, repository, model and
#: coding agent (`read_usage`): what `daily_usage` and `reconcile_with_traces` are made from
Usage = dict[_Grain, _Sums]


def read_usage(
    client: Client, project: str, start: datetime, end: datetime, *, pricer: PriceBook | None = None
) -> Usage:
    """The window's usage, read and priced once, for a caller that wants both `daily_usage` and
    `reconcile_with_traces` of it."""
    return _priced_grains(client, project, start, end, pricer)


def _priced_grains(
    client: Client, project: str, start: datetime, end: datetime, pricer: PriceBook | None
) -> Usage:
    params = {
        **_window(project, start, end),
        "metrics": _METRICS,
        "agent_token_metrics": _AGENT_TOKEN_METRICS,
    }
    grains = _grains(rows(client, _USAGE, params))
    prices = _Prices(pricer or PriceBook())
    for grain, sums in grains.items():
        prices.price(grain, sums)
    return grains


def _period_start(day: date, period: Period) -> date:
    return day - timedelta(days=day.weekday()) if period == "week" else day


def _usage_row(day: date, key: str, sums: _Sums) -> UsageRow:
    tokens = {count: round(value) for count, value in sums.tokens.items()}
    return UsageRow(
        day=day,
        key=key,
        cost_usd=sums.reported + sums.computed if sums.priced else None,
        reported_cost_usd=sums.reported,
        computed_cost_usd=sums.computed,
        unpriced_tokens=round(sums.unpriced),
        input_tokens=tokens["input"],
        output_tokens=tokens["output"],
        cache_read_tokens=tokens["cache_read"],
        cache_write_tokens=tokens["cache_write"],
        reasoning_tokens=tokens["reasoning"],
        commits=round(sums.commits),
        pull_requests=round(sums.pull_requests),
    )


def daily_usage(
    client: Client,
    project: str,
    start: datetime,
    end: datetime,
    by: str,
    period: Period = "day",
    *,
    pricer: PriceBook | None = None,
    usage: Usage | None = None,
) -> list[UsageRow]:
    """Cost, tokens, commits and pull requests in [start, end) per day (or week) and per value of
    `by` (one of GROUPS), from the coding agents' metrics; see the module's docstring. `usage`: the
    window's, if already read (`read_usage`)."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}, got {by!r}")
    if period not in ("day", "week"):
        raise ValueError(f"period must be day or week, got {period!r}")
    totals: dict[tuple[date, str], _Sums] = defaultdict(_Sums)
    grains = usage if usage is not None else _priced_grains(client, project, start, end, pricer)
    for grain, sums in grains.items():
        totals[(_period_start(grain.day, period), getattr(grain, by))].add(sums)
    found = [_usage_row(day, key, sums) for (day, key), sums in totals.items()]
    return sorted(found, key=lambda r: (r.day, -(r.cost_usd or 0.0), r.key))


def reconcile_with_traces(
    client: Client,
    project: str,
    start: datetime,
    end: datetime,
    *,
    pricer: PriceBook | None = None,
    usage: Usage | None = None,
) -> list[Reconciliation]:
    """Per developer and day in [start, end): the coding agents' cost from their metrics beside the
    cost of their traces; see the module's docstring. `usage`: the window's, if already read."""
    metrics: dict[tuple[date, str], _Sums] = defaultdict(_Sums)
    grains = usage if usage is not None else _priced_grains(client, project, start, end, pricer)
    for grain, priced in grains.items():
        if grain.coding_agent:
            metrics[(grain.day, grain.developer)].add(priced)
    traces = {
        (row["day"], row["developer"]): float(row["cost_usd"])
        for row in rows(client, _TRACES, _window(project, start, end))
    }
    found = []
    for day, developer in sorted(metrics.keys() | traces.keys()):
        sums = metrics.get((day, developer))
        from_metrics = sums.reported + sums.computed if sums is not None and sums.priced else None
        from_traces = traces.get((day, developer))
        difference = (from_metrics or 0.0) - (from_traces or 0.0)
        larger = max(abs(from_metrics or 0.0), abs(from_traces or 0.0))
        found.append(
            Reconciliation(
                day=day,
                developer=developer,
                metrics_cost_usd=from_metrics,
                traces_cost_usd=from_traces,
                difference_usd=difference,
                relative_difference=abs(difference) / larger if larger else None,
                unpriced_tokens=round(sums.unpriced) if sums is not None else 0,
            )
        )
    return found
