"""A labelled corpus of agent traces for the waste detectors.

Each case builds one trace with the real OTel SDK (OTel GenAI names through `Recorder`, or
OpenInference attribute names) and says which model calls each detector must charge. Calls are
labelled by name (the span name carries the label), and the expected waste in dollars is worked
out here from the tokens each case chose and the catalog's prices, not read back from the
analysis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind

from tests.support.recorder import Recorder, prices, text
from tokentrail.analysis.run import analyze_range

# label -> (detector, expected wasted USD or None when it is computed by the case)
Expected = dict[str, tuple[str, float]]


@dataclass
class Case:
    name: str
    build: Callable[[Recorder], Expected]
    expected: Expected = field(default_factory=dict)


def _cost(model: str, provider: str, inp: int, out: int, cached: int = 0) -> float:
    value = prices().cost(provider, model, input_tokens=inp, output_tokens=out, cache_read_tokens=cached)
    assert value is not None, model
    return value


def _unit(model: str, provider: str, inp: int) -> tuple[float, float, float]:
    unit = prices().unit_prices(provider, model, inp)
    assert unit is not None
    return unit


def call(
    rec: Recorder,
    label: str,
    model: str,
    inp: int,
    out: int,
    *,
    cached: int = 0,
    provider: str = "openai",
    content: str | None = None,
    error: str = "",
    finish: str = "stop",
) -> None:
    """A model call whose span name ends with its label."""
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        "gen_ai.usage.cache_read.input_tokens": cached,
        "gen_ai.response.finish_reasons": [finish],
        "gen_ai.input.messages": json.dumps(text(content if content is not None else label)),
    }
    with rec.span(
        f"chat {model} [{label}]",
        500,
        SpanKind.CLIENT,
        error=error,
        **{k.replace(".", "__"): v for k, v in attrs.items()},
    ):
        pass


def tool(rec: Recorder, name: str, args: str | None) -> None:
    attrs: dict[str, Any] = {"gen_ai__operation__name": "execute_tool", "gen_ai__tool__name": name}
    if args is not None:
        attrs["gen_ai__tool__call__arguments"] = args
    with rec.span(f"execute_tool {name}", 50, **attrs):
        pass


def agent(rec: Recorder, name: str, *, outcome: bool | None = None, error: str = "") -> Any:
    attrs: dict[str, Any] = {"gen_ai__operation__name": "invoke_agent", "gen_ai__agent__name": name}
    if outcome is not None:
        attrs["tokentrail__outcome__name"] = "done"
        attrs["tokentrail__outcome__success"] = outcome
    return rec.span(f"invoke_agent {name}", 5, error=error, **attrs)


def productive(rec: Recorder) -> Expected:
    with agent(rec, "support", outcome=True):
        call(rec, "p1", "gpt-4o-mini", 1200, 80)
        tool(rec, "lookup_order", '{"id": 1}')
        call(rec, "p2", "gpt-4o-mini", 1400, 60, cached=1152)  # the prefix was cached
    return {}


def retry(rec: Recorder) -> Expected:
    with agent(rec, "writer"):
        call(rec, "cut", "gpt-4o", 3000, 4096, finish="length")  # cut off at the token limit
        call(rec, "again", "gpt-4o", 3000, 900, cached=2944)
        call(rec, "r429", "gpt-4o-mini", 0, 0, error="RateLimitError")
        call(rec, "after429", "gpt-4o-mini", 200, 20)
    return {"cut": ("retry", _cost("gpt-4o", "openai", 3000, 4096)), "r429": ("retry", 0.0)}


def loop(rec: Recorder) -> Expected:
    with agent(rec, "researcher"):
        for i in range(3):
            call(rec, f"think{i}", "gpt-4o-mini", 300 + i, 30, content=f"think {i}")
            tool(rec, "search", '{"q": "mirror"}')
            tool(rec, "read", '{"path": "damage.md"}')
        call(rec, "answer", "gpt-4o-mini", 400, 50)
    return {f"think{i}": ("loop", _cost("gpt-4o-mini", "openai", 300 + i, 30)) for i in (1, 2)}


def ping_pong(rec: Recorder) -> Expected:
    """A two-tool cycle without model calls in it: found, but it costs no model dollars."""
    with agent(rec, "fetcher"):
        call(rec, "plan", "gpt-4o-mini", 200, 20)
        for _ in range(3):
            tool(rec, "open", '{"u": 1}')
            tool(rec, "close", '{"u": 1}')
        call(rec, "done", "gpt-4o-mini", 250, 20)
    return {}


def varied_tools(rec: Recorder) -> Expected:
    """The same tool with different arguments, and uncaptured arguments: not a loop."""
    with agent(rec, "browser"):
        for i in range(3):
            call(rec, f"step{i}", "gpt-4o-mini", 100 + i, 10, content=f"step {i}")
            tool(rec, "search", json.dumps({"q": i}))
        for i in range(3):
            call(rec, f"blind{i}", "gpt-4o-mini", 150 + i, 10, content=f"blind {i}")
            tool(rec, "fetch", None)
    return {}


def duplicate(rec: Recorder) -> Expected:
    with agent(rec, "billing"):
        call(rec, "ask", "gpt-4o", 900, 40, content="same question")
        call(rec, "ask-again", "gpt-4o", 900, 40, content="same question")
        call(rec, "other", "gpt-4o", 900, 40, content="another question")
    return {"ask-again": ("duplicate", _cost("gpt-4o", "openai", 900, 40))}


def failed_outcome(rec: Recorder) -> Expected:
    with agent(rec, "refunds", outcome=False):
        call(rec, "f1", "gpt-4o", 500, 50)
        call(rec, "f2", "gpt-4o", 700, 50)
    return {
        "f1": ("no_outcome", _cost("gpt-4o", "openai", 500, 50)),
        "f2": ("no_outcome", _cost("gpt-4o", "openai", 700, 50)),
    }


def abandoned(rec: Recorder) -> Expected:
    with agent(rec, "scraper", error="TimeoutError"):
        call(rec, "a1", "gpt-4o-mini", 600, 30)
    return {"a1": ("no_outcome", _cost("gpt-4o-mini", "openai", 600, 30))}


def cache_miss_model_switch(rec: Recorder) -> Expected:
    with agent(rec, "switcher"):
        call(rec, "big", "gpt-4o", 5000, 200)
        call(rec, "switched", "gpt-4o-mini", 5400, 100)  # carries 5,200 tokens, none cached
    fresh, cached, _ = _unit("gpt-4o-mini", "openai", 5400)
    return {"switched": ("cache_miss", 5200 * (fresh - cached))}


def cache_miss_gap(rec: Recorder) -> Expected:
    with agent(rec, "slow"):
        call(rec, "before", "gpt-4o", 3000, 100, cached=0)
        rec.tick(400_000)  # 400 s later: past a 300 s cache lifetime
        call(rec, "after", "gpt-4o", 3500, 100, cached=0)
    fresh, cached, _ = _unit("gpt-4o", "openai", 3500)
    return {"after": ("cache_miss", 3100 * (fresh - cached))}


def bloat(rec: Recorder) -> Expected:
    """The task is 10,000 tokens; at each later call, what earlier calls already read is re-sent
    (stale), and up to the task's own size of it is allowed."""
    with agent(rec, "drafter"):
        call(rec, "d1", "gpt-4o", 10_000, 100, cached=0)
        call(rec, "d2", "gpt-4o", 30_000, 100, cached=9_984)  # stale: min(10,000, 30,000) - 10,000 = 0
        call(rec, "d3", "gpt-4o", 60_000, 100, cached=29_952)  # stale: 30,000 - 10,000 = 20,000
        call(rec, "d4", "gpt-4o", 90_000, 100, cached=0)  # stale: 60,000 - 10,000 = 50,000
    fresh3, read3, _ = _unit("gpt-4o", "openai", 60_000)
    fresh4, read4, _ = _unit("gpt-4o", "openai", 90_000)
    # d3: 10,000 over the allowance, tokens 20,000-30,000 of the prompt; the cache held its first 29,952
    d3 = 48 * fresh3 + 9_952 * read3
    # d4: 40,000 over, none cached; of the 60,100 tokens carried from d3, the other 20,100 missed the cache
    return {
        "d3": ("context_bloat", d3),
        "d4": ("context_bloat", 40_000 * fresh4),
        "d4+": ("cache_miss", 20_100 * (fresh4 - read4)),
    }


def oversized(rec: Recorder) -> Expected:
    with agent(rec, "router"):
        call(rec, "route", "gpt-4.1", 2000, 2)
        call(rec, "cheap", "gpt-4o-mini", 300, 2)  # the cheaper model this project uses
    route = _cost("gpt-4.1", "openai", 2000, 2)
    alt = _cost("gpt-4o-mini", "openai", 2000, 2)
    return {"route": ("oversized_model", route - alt)}


def openinference_duplicate(rec: Recorder) -> Expected:
    with agent(rec, "oi-agent"):
        oi: dict[str, Any] = {
            "openinference__span__kind": "LLM",
            "llm__model_name": "gpt-4o-mini",
            "llm__provider": "openai",
            "llm__token_count__prompt": 800,
            "llm__token_count__completion": 50,
            "llm__input_messages__0__message__role": "user",
            "llm__input_messages__0__message__content": "Where is order 42?",
        }
        for label in ("oi-1", "oi-2"):
            with rec.span(f"ChatOpenAI [{label}]", 400, **oi):
                pass
    return {"oi-2": ("duplicate", _cost("gpt-4o-mini", "openai", 800, 50))}


CASES = [
    Case(f.__name__, f)
    for f in (
        productive,
        retry,
        loop,
        ping_pong,
        varied_tools,
        duplicate,
        failed_outcome,
        abandoned,
        cache_miss_model_switch,
        cache_miss_gap,
        bloat,
        oversized,
        openinference_duplicate,
    )
]


_LABEL = re.compile(r"\[([\w+-]+)\]$")


def run_own_corpus(
    client: Any, pricebook: Any
) -> tuple[dict[tuple[Any, str], float | None], dict[tuple[Any, str], float | None]]:
    """Build every case, store it, analyse it: (expected, found) charges keyed by
    ((case, label), detector), for `tests.support.scoring`."""
    rec = Recorder()
    expected: dict[tuple[Any, str], float | None] = {}
    roots: dict[str, str] = {}
    for case in CASES:
        before = len(rec.exporter.get_finished_spans())
        for label, (detector, usd) in case.build(rec).items():
            expected[((case.name, label.rstrip("+")), detector)] = usd  # "+": a second finding on one call
        root = rec.exporter.get_finished_spans()[-1]
        assert len(rec.exporter.get_finished_spans()) > before and root.parent is None
        roots[format(root.context.trace_id, "032x")] = case.name
    rec.store(client)
    assert analyze_range(client, "default", 0, 2**62, pricebook) == len(CASES)
    labels = {
        (trace_id, span_id): _LABEL.search(name).group(1)  # type: ignore[union-attr]
        for trace_id, span_id, name in client.query("SELECT trace_id, span_id, name FROM spans").result_rows
        if _LABEL.search(name)
    }
    found: dict[tuple[Any, str], float | None] = {}
    rows = client.query(
        "SELECT trace_id, span_id, detector, wasted_usd FROM waste_findings "
        "WHERE (trace_id, analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL)"
    ).result_rows
    for trace_id, span_id, detector, usd in rows:
        found[((roots[trace_id], labels.get((trace_id, span_id), span_id)), detector)] = usd
    return expected, found
