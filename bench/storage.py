"""Sort-key measurement for `spans`, at N spans made inside ClickHouse.

Compares the shipped key (project, trace_id, span_id) with a time-first key
(project, toStartOfHour(start_time), trace_id, span_id) on the queries the product runs:
fetch one trace by id (the trace page), token sums per model over 24 h (reports), and the trace
list from the `traces` summary. Run: `python -m bench.storage [--spans 1000000]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from tokentrail.server.settings import from_env
from tokentrail.store import connect, migrate

_FILL = """
INSERT INTO {table} (project, trace_id, span_id, parent_span_id, name, start_time, end_time, duration_ns,
    service_name, attributes, step_kind, request_model, provider, input_tokens, output_tokens, billable)
SELECT 'default',
    lower(hex(cityHash64(intDiv(number, 20)))) || lower(hex(cityHash64(intDiv(number, 20), 1))),
    lower(hex(cityHash64(number, 2))),
    if(number % 20 = 0, '', lower(hex(cityHash64(intDiv(number, 20) * 20, 2)))),
    ['chat gpt-4o', 'execute_tool search', 'invoke_agent triage'][number % 3 + 1],
    now64(9) - toIntervalSecond(intDiv(number, 20) % (86400 * 7)) AS t,
    t + toIntervalMillisecond(800),
    800000000,
    'support-bot',
    map('gen_ai.request.model', ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5'][number % 3 + 1],
        'gen_ai.usage.input_tokens', toString(number % 5000), 'server.address', 'api.example.com'),
    ['llm', 'tool', 'agent'][number % 3 + 1],
    ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5'][number % 3 + 1],
    'openai',
    number % 5000,
    number % 300,
    number % 3 = 0
FROM numbers({n})
"""


def _median_ms(client: Any, sql: str, params: dict[str, Any], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.query(sql, parameters=params)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as tmp:
        store = connect(from_env({"TOKENTRAIL_DATA_DIR": tmp}))
        migrate(store)
        c = store.client
        c.command(
            "CREATE TABLE spans_by_time AS spans ENGINE = ReplacingMergeTree(ingested_at) "
            "PARTITION BY toYYYYMM(start_time) ORDER BY (project, toStartOfHour(start_time), trace_id, span_id)"
        )
        for table in ("spans", "spans_by_time"):
            start = time.perf_counter()
            c.command(_FILL.format(table=table, n=args.spans))
            c.command(f"OPTIMIZE TABLE {table} FINAL")
            print(f"{table}: {args.spans:,} spans inserted in {time.perf_counter() - start:.1f}s")
        trace_ids = [
            r[0] for r in c.query("SELECT trace_id FROM spans GROUP BY trace_id LIMIT 15").result_rows
        ]
        print(f"{'query (median of 15, ms)':<44}{'trace-id key':>14}{'time-first key':>16}")
        one = "SELECT * FROM {t} FINAL WHERE project = 'default' AND trace_id = {{id:String}}"
        typed = (
            "SELECT request_model, sum(input_tokens), sum(output_tokens) FROM {t} FINAL "
            "WHERE project = 'default' AND start_time > now64(9) - INTERVAL 1 DAY AND billable GROUP BY request_model"
        )
        mapped = (
            "SELECT attributes['gen_ai.request.model'] m, sum(toUInt64OrZero(attributes['gen_ai.usage.input_tokens'])) "
            "FROM {t} FINAL WHERE project = 'default' AND start_time > now64(9) - INTERVAL 1 DAY GROUP BY m"
        )
        for label, sql in (
            ("one trace by id", one),
            ("24h tokens per model, typed", typed),
            ("24h tokens per model, attribute map", mapped),
        ):
            results = []
            for table in ("spans", "spans_by_time"):
                times = (
                    [_median_ms(c, sql.format(t=table), {"id": tid}, runs=1) for tid in trace_ids]
                    if "{{id" in sql
                    else [_median_ms(c, sql.format(t=table), {})]
                )
                results.append(statistics.median(times))
            print(f"{label:<44}{results[0]:>14.1f}{results[1]:>16.1f}")
        store.close()


if __name__ == "__main__":
    main()
