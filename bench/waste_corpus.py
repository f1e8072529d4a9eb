"""The waste detectors scored on both labelled corpora: `python -m bench.waste_corpus`.

Ours (traces shaped like Tokentrail's SDK makes them) and the third-party one (real third-party
instrumentations against the model stand-in, through a real collector; needs `make corpus-envs`).
Prints precision, recall and wasted dollars per detector for each, and per emitter for the
third-party corpus. `--emitter NAME` runs one emitter only; `--explain` lists every labelled
call with what the ledger charged it, and every finding on an unlabelled span.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from tests.analysis.thirdparty.corpus import EMITTERS, missing_envs, span_labels
from tests.analysis.thirdparty.harness import run_corpus
from tests.support.corpus import run_own_corpus
from tests.support.scoring import misses, score, table
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import from_env
from tokentrail.store import connect, migrate


def _store(tmp: str, name: str):  # type: ignore[no-untyped-def]
    settings = from_env(
        {"TOKENTRAIL_DATA_DIR": tmp, "TOKENTRAIL_CLICKHOUSE_DATABASE": name, "TOKENTRAIL_WRITER_WORKERS": "0"}
    )
    store = connect(settings)
    migrate(store)
    return settings, store


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--emitter", action="append", choices=sorted(EMITTERS), help="run only these emitters"
    )
    parser.add_argument("--explain", action="store_true", help="every labelled call and what was charged")
    parser.add_argument("--skip-own", action="store_true", help="only the third-party corpus")
    parser.add_argument(
        "--dump", action="store_true", help="every stored span's normalized columns, by trace"
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    prices = PriceBook()
    names = args.emitter or list(EMITTERS)
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-corpus-") as tmp:
        if not args.skip_own:
            _, store = _store(tmp, "own")
            expected, found = run_own_corpus(store.client, prices)
            print(table("Our SDK's corpus", score(expected, found)), "\n")
            store.client.command("DROP DATABASE own")
        if missing := missing_envs(names):
            raise SystemExit(f"the third-party environments {missing} are missing: run `make corpus-envs`")
        settings, store = _store(tmp, "thirdparty")
        result = run_corpus(settings, store, prices, names)
        _print_emitters(result)
        if args.explain:
            _explain(store.client, result)
        if args.dump:
            _dump(
                store.client,
                {i["label"]: f"{i['case']}/{i['name']}" for e in result.emitted for i in e.expected},
            )
        store.close()


def _print_emitters(result: Any) -> None:
    """The scores, then per emitter its labels, the charges expected, and what was found."""
    versions = ", ".join(sorted({f"{p} {v}" for e in result.emitted for p, v in e.versions.items()}))
    print(table("Third-party corpus", result.scores))
    print(f"({len(result.emitted)} emitters: {versions})\n")
    print(f"{'emitter':<16}{'labels':>7}{'charges':>8}{'found':>7}{'missed':>7}{'wrong':>7}{'seconds':>8}")
    for run in result.emitted:
        want = {k: v for k, v in result.expected.items() if str(k[0]).startswith(run.emitter + ":")}
        got = {k: v for k, v in result.found.items() if str(k[0]).startswith(run.emitter + ":")}
        hits = len(set(want) & set(got))
        print(
            f"{run.emitter:<16}{len(run.expected):>7}{len(want):>8}{hits:>7}{len(set(want) - set(got)):>7}"
            f"{len(set(got) - set(want)):>7}{run.seconds:>8.1f}"
        )
    unlabelled = [k for k in result.found if str(k[0]).startswith("unlabelled")]
    if unlabelled:
        print(f"findings on spans without a label: {len(unlabelled)}")


def _explain(client: Any, result: Any) -> None:
    """Every labelled call the ledger missed or charged wrongly, then every finding's reason."""
    print()
    for detector, keys in misses(result.expected, result.found).items():
        print(f"{detector}:")
        for key in keys:
            print(f"  {key}")
    rows = client.query(
        "SELECT detector, reason FROM waste_findings WHERE (trace_id, analyzed_at) IN "
        "(SELECT trace_id, analyzed_at FROM trace_waste FINAL) ORDER BY detector"
    ).result_rows
    print("\nfindings:")
    for detector, reason in rows:
        print(f"  {detector}: {reason}")


def _dump(client, names: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    labels = span_labels(client)
    rows = client.query(
        "SELECT trace_id, span_id, parent_span_id, name, convention, step_kind, step_subkind, "
        "if(response_model != '', response_model, request_model), provider, input_tokens, output_tokens, "
        "cache_read_tokens, billable, cost_usd, tool_name, tool_args_hash != 0, status_code, error_type, "
        "finish_reasons, agent_name, system_hash, length(requested_tools), cache_reported "
        "FROM spans FINAL ORDER BY trace_id, start_time"
    ).result_rows
    trace = ""
    for r in rows:
        if r[0] != trace:
            trace = r[0]
            print(f"\ntrace {trace}")
        print(
            f"  {r[1][:8]}<{r[2][:8] or '-':8} {r[3][:40]:<40} {r[4]:<12} {r[5]}/{r[6] or '-':<8} {r[7][:24]:<24} "
            f"{r[8]:<10} in={r[9]} out={r[10]} cr={r[11]}{'' if r[22] else '?'} bill={r[12]} ${r[13] if r[13] is None else round(r[13], 6)} "
            f"tool={r[14]}{'(args)' if r[15] else ''} req={r[21]} ag={r[19][:16]} sys={r[20] % 1000} {r[16]} {r[17]} {list(r[18])} "
            f"{names.get(labels.get((r[0], r[1]), ''), '')}"
        )


if __name__ == "__main__":
    main()
