"""The `tokentrail` command.

Server commands import server code lazily, so the SDK-only install can still run `demo` and
`status` and say what to install for the rest.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.error
import urllib.request
from typing import Any

__all__ = ["main"]


def _server_settings() -> Any:
    try:
        from tokentrail.server.settings import SettingsError, from_env
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(
            f"tokentrail: this needs the server extras: pip install 'tokentrail[server]' ({exc})"
        ) from None
    try:
        return from_env()
    except SettingsError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None


def _open_store(settings: Any, hint: str = "") -> tuple[Any, list[Any]]:
    """The database, migrated (and the migrations applied now); a clear exit when the embedded
    one is held by a running server."""
    from tokentrail.store import DatabaseInUse, connect, migrate

    try:
        store = connect(settings)
    except DatabaseInUse as exc:
        raise SystemExit(f"tokentrail: {exc}{hint}") from None
    try:
        return store, migrate(store)
    except BaseException:
        store.close()
        raise


def _cmd_up(args: argparse.Namespace) -> int:
    from tokentrail.server.run import serve
    from tokentrail.store import DatabaseInUse

    settings = _server_settings()
    try:
        serve(settings, collector=args.command in ("up", "collector"), web=args.command in ("up", "web"))
    except DatabaseInUse as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"tokentrail: cannot start: {exc}") from None
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _server_settings()
    store, applied = _open_store(settings)
    store.close()
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    print(f"database {settings.database} is up to date ({len(applied)} applied now)")
    return 0


def _fetch_status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _cmd_status(args: argparse.Namespace) -> int:
    settings = _server_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = args.url or f"http://{host}:{settings.otlp_http_port}/api/status"
    status = _fetch_status(url)
    if status is None:
        print(f"collector: not reachable at {url}")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    stats = status["stats"]
    print(f"collector: running ({url})")
    print(f"database:  {status['clickhouse']}")
    for noun in ("spans", "logs"):
        print(
            f"{noun:<6} received {int(stats[f'tokentrail_{noun}_received_total']):>12,}  "
            f"spooled {int(stats[f'tokentrail_{noun}_spooled_total']):>12,}  "
            f"stored {int(stats[f'tokentrail_{noun}_stored_total']):>12,}  "
            f"rejected {int(stats[f'tokentrail_{noun}_rejected_total']):>10,}"
        )
    spool = status["spool"]
    free = spool.get("free_bytes")
    room = f"; {free:,} bytes free on its disk" if free is not None else ""
    print(
        f"spool:     {spool['backlog_bytes']:,} bytes waiting (limit {spool['limit_bytes']:,}) in {spool['directory']}{room}"
    )
    print(f"refused:   {int(stats['tokentrail_requests_refused_total']):,} requests (spool full or failing)")
    if spool.get("last_error"):
        print(
            f"spool:     {spool.get('errors', 0):,} failed writes; last at {spool['last_error_at']}: {spool['last_error']}"
        )
    if spool.get("quarantined_records"):
        print(
            f"damaged:   {spool['quarantined_records']:,} spool records did not match their checksum, copied to "
            f"{spool['quarantine_directory']}"
        )
    writer = status["writer"]
    dead = int(writer.get("dead_lettered_records", stats.get("tokentrail_records_dead_lettered_total", 0)))
    if dead:
        where = writer.get("dead_letter_directory", f"{spool['directory']}/dead")
        print(
            f"dead:      {dead:,} spool records could not be stored (refused on their own), kept in {where}"
        )
    if writer.get("stalled"):
        print(
            f"writer:    STALLED: nothing stored for {writer['seconds_since_progress']:,.0f} s while records wait"
        )
    elif writer.get("failing"):
        print("writer:    failing, retrying")
    if writer["last_error"]:
        when = f" at {writer['last_error_at']}" if writer.get("last_error_at") else ""
        print(f"writer:    last error{when}: {writer['last_error']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import os

    from tokentrail.instrumentation._setup import DEFAULT_ENDPOINT

    endpoint = (
        args.endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or DEFAULT_ENDPOINT
    ).rstrip("/")
    base = endpoint.removesuffix("/v1/traces")
    try:
        urllib.request.urlopen(base + "/health", timeout=3).close()
    except urllib.error.HTTPError:
        pass  # something answers: another OTLP receiver without our /health
    except (urllib.error.URLError, OSError):
        print(
            f"No collector answers at {base}. Start one with `tokentrail up` (or `make up`), "
            "or point OTEL_EXPORTER_OTLP_ENDPOINT at yours.",
            file=sys.stderr,
        )
        return 1
    from tokentrail.demo.workload import run

    print(f"Running {args.tasks} agent tasks against a local model stand-in; spans go to {base}")
    run(tasks=args.tasks, endpoint=args.endpoint, latency=args.latency)
    print(
        f"Done. Open the web UI (http://127.0.0.1:4320/ with `tokentrail up`) to see {args.tasks} new traces."
    )
    return 0


_UNITS = {"m": 60, "h": 3600, "d": 86_400}


def _duration(text: str) -> int:
    """`30m`, `24h`, `7d` → seconds."""
    value, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 24h or 7d")
    return int(value) * _UNITS[unit]


def _progress(done: int, total: int, noun: str = "traces") -> None:
    width = 30
    filled = width * done // total if total else width
    end = "\n" if done >= total else ""
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} {noun}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _cmd_analyze(args: argparse.Namespace) -> int:
    import time

    from tokentrail.analysis.run import analyze_range
    from tokentrail.pricing import PriceBook

    settings = _server_settings()
    store, _ = _open_store(
        settings,
        "\nThe running server analyses traces itself as they complete; stop it to "
        "re-analyse a time range of the embedded database.",
    )
    try:
        now = time.time_ns()
        start = time.monotonic()
        done = analyze_range(
            store.client,
            args.project or settings.default_project,
            now - args.since * 10**9,
            now + 60 * 10**9,
            PriceBook(),
            settings.waste,
            progress=_progress,
        )
    finally:
        store.close()
    print(f"analysed {done:,} traces in {time.monotonic() - start:.1f}s")
    return 0


def _cmd_reprice(args: argparse.Namespace) -> int:
    import time

    from tokentrail.collector.reprice import reprice
    from tokentrail.pricing import PriceBook

    settings = _server_settings()
    store, _ = _open_store(settings, "\nStop the server to reprice the embedded database.")
    try:
        now = time.time_ns()
        prices = PriceBook()
        result = reprice(
            store.client,
            args.project or settings.default_project,
            now - args.since * 10**9,
            now + 60 * 10**9,
            prices,
            progress=lambda d, t: _progress(d, t, "spans"),
            task_attribute=settings.task_type_attribute,
        )
    finally:
        store.close()
    print(
        f"{result.examined:,} model calls examined; {result.changed:,} changed "
        f"in {result.traces:,} traces; prices from {result.version}"
    )
    return 0


def _cmd_waste(args: argparse.Namespace) -> int:
    import csv
    import os
    import urllib.parse

    base = (args.url or f"http://127.0.0.1:{os.environ.get('TOKENTRAIL_UI_PORT', '4320')}").rstrip("/")
    query = {"since": f"{args.since}s", "by": args.by}
    if args.project:
        query["project"] = args.project
    url = f"{base}/waste.json?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            report: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise SystemExit(f"tokentrail: {url}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(
            f"tokentrail: no Tokentrail web UI at {base} ({exc}); start it with `tokentrail up`, "
            "or pass --url"
        ) from None
    rows = report["rows"]
    buckets: list[str] = report["buckets"]
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(
            [args.by, "total_usd", "wasted_usd", "waste_share", *(f"{b}_usd" for b in buckets), "traces"]
        )
        for r in rows:
            writer.writerow(
                [
                    r["key"],
                    r["total_usd"],
                    r["wasted_usd"],
                    r["waste_share"],
                    *(r["buckets"][b] for b in buckets),
                    r["traces"],
                ]
            )
    else:
        head = f"{args.by:<28}{'cost':>12}{'wasted':>12}{'share':>7}  top bucket"
        print(head)
        print("-" * len(head))
        for r in rows:
            waste = {b: v for b, v in r["buckets"].items() if b != "productive" and v > 0}
            top = max(waste, key=lambda b: waste[b]) if waste else "-"
            share = f"{r['waste_share'] * 100:.0f}%" if r["waste_share"] is not None else "-"
            print(f"{str(r['key'])[:27]:<28}{r['total_usd']:>12.4f}{r['wasted_usd']:>12.4f}{share:>7}  {top}")
        t = report["totals"]
        print("-" * len(head))
        share = f"{t['waste_share'] * 100:.0f}%" if t["waste_share"] is not None else "-"
        print(f"{'total':<28}{t['total_usd']:>12.4f}{t['wasted_usd']:>12.4f}{share:>7}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokentrail", description="Observability for AI agents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run collector and web UI on the embedded database (one process)")
    sub.add_parser("collector", help="run only the OTLP collector")
    sub.add_parser("web", help="run only the web UI")
    sub.add_parser("migrate", help="apply database migrations")
    status = sub.add_parser("status", help="show the running collector's counters")
    status.add_argument("--url", help="status URL (default: the local collector)")
    status.add_argument("--json", action="store_true", help="print JSON")
    demo = sub.add_parser("demo", help="send a realistic multi-agent workload (with waste) through the SDK")
    demo.add_argument("--tasks", type=int, default=18, help="agent tasks to run (default 18)")
    demo.add_argument(
        "--endpoint", help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT or the local collector)"
    )
    demo.add_argument("--latency", type=float, default=0.05, help="seconds per simulated model answer")
    analyze = sub.add_parser("analyze", help="(re)compute the waste ledger of a time range, with progress")
    analyze.add_argument(
        "--since", type=_duration, default=_duration("7d"), help="how far back (30m, 24h, 7d)"
    )
    analyze.add_argument("--project", help="project (default: the default project)")
    reprice = sub.add_parser("reprice", help="recompute computed costs with the installed price catalog")
    reprice.add_argument("--since", type=_duration, default=_duration("30d"), help="how far back (24h, 30d)")
    reprice.add_argument("--project", help="project (default: the default project)")
    waste = sub.add_parser("waste", help="the waste ledger by bucket and agent/model/service/user/day")
    waste.add_argument(
        "--since", type=_duration, default=_duration("24h"), help="how far back (30m, 24h, 7d)"
    )
    waste.add_argument("--by", choices=["agent", "model", "service", "user", "day"], default="agent")
    waste.add_argument("--format", choices=["table", "json", "csv"], default="table")
    waste.add_argument("--project", help="project (default: the default project)")
    waste.add_argument("--url", help="web UI address (default: the local one)")
    return parser


_COMMANDS = {
    "analyze": _cmd_analyze,
    "reprice": _cmd_reprice,
    "waste": _cmd_waste,
    "demo": _cmd_demo,
    "up": _cmd_up,
    "collector": _cmd_up,
    "web": _cmd_up,
    "migrate": _cmd_migrate,
    "status": _cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("tokentrail").setLevel(logging.INFO)  # ours at INFO, libraries' at WARNING
    return _COMMANDS[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
