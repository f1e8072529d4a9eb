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
        raise SystemExit(f"tokentrail: this needs the server extras: pip install 'tokentrail[server]' ({exc})") from None
    try:
        return from_env()
    except SettingsError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None


def _cmd_up(args: argparse.Namespace) -> int:
    from tokentrail.server.run import serve
    from tokentrail.server.store import DatabaseInUse

    settings = _server_settings()
    try:
        serve(settings, collector=args.command in ("up", "collector"), web=args.command in ("up", "web"))
    except DatabaseInUse as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"tokentrail: cannot start: {exc}") from None
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from tokentrail.server.store import DatabaseInUse, connect, migrate

    settings = _server_settings()
    try:
        store = connect(settings)
    except DatabaseInUse as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    try:
        applied = migrate(store)
    finally:
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
    print(f"spool:     {spool['backlog_bytes']:,} bytes waiting (limit {spool['limit_bytes']:,}) in {spool['directory']}")
    print(f"refused:   {int(stats['tokentrail_requests_refused_total']):,} requests (spool full)")
    quarantined = int(stats.get("tokentrail_records_quarantined_total", 0))
    if quarantined:
        print(f"dead:      {quarantined:,} spool records refused by ClickHouse, kept in {spool['directory']}/dead")
    if status["writer"]["last_error"]:
        print(f"writer:    last error: {status['writer']['last_error']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import os

    from tokentrail.instrumentation._setup import DEFAULT_ENDPOINT

    endpoint = (args.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")  # fmt: skip
    base = endpoint.removesuffix("/v1/traces")
    try:
        urllib.request.urlopen(base + "/health", timeout=3).close()
    except urllib.error.HTTPError:
        pass  # something answers: another OTLP receiver without our /health
    except (urllib.error.URLError, OSError):
        print(f"No collector answers at {base}. Start one with `tokentrail up` (or `make up`), "
              "or point OTEL_EXPORTER_OTLP_ENDPOINT at yours.", file=sys.stderr)  # fmt: skip
        return 1
    from tokentrail.demo.workload import run

    print(f"Running {args.tasks} agent tasks against a local model stand-in; spans go to {base}")
    run(tasks=args.tasks, endpoint=args.endpoint, latency=args.latency)
    print(f"Done. Open the web UI (http://127.0.0.1:4320/ with `tokentrail up`) to see {args.tasks} new traces.")
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
    demo.add_argument("--endpoint", help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT or the local collector)")
    demo.add_argument("--latency", type=float, default=0.05, help="seconds per simulated model answer")
    return parser


_COMMANDS = {
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
