"""The `tokentrail` command.

Server commands import server code lazily, so the SDK-only install can still run `demo` and say
what to install for the rest. Tables and progress bars are drawn by `rich` (a server extra): live
in a terminal; in a pipe or a CI log, plain text without colour, and progress only as its final
count. Names and messages from the data are printed as they are (no markup, no emoji codes).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Sequence
from typing import Any

from tokentrail import cli_users

__all__ = ["main"]


def _needs_server_extras(exc: ImportError) -> SystemExit:
    return SystemExit(f"tokentrail: this needs the server extras: pip install 'tokentrail[server]' ({exc})")


def _console(*, stderr: bool = False) -> Any:
    """A rich console writing to stdout (or stderr) as it is when printing, so redirections hold."""
    try:
        from rich.console import Console
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _needs_server_extras(exc) from None
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=True)


def _table(*columns: str, right: Collection[str] = (), footer: Sequence[str] = ()) -> Any:
    """A table with a rule under its head (and above its footer, when given) and no outer frame;
    the `right` columns (figures) are aligned right."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE, show_edge=False, show_footer=bool(footer))
    feet = [*footer, *[""] * (len(columns) - len(footer))]
    for name, foot in zip(columns, feet, strict=True):
        table.add_column(name, justify="right" if name in right else "left", footer=foot, no_wrap=True)
    return table


def _server_settings() -> Any:
    """The server's settings, for a command that runs server code (which never needs pandas:
    `tokentrail.server.no_pandas`)."""
    try:
        from tokentrail.server.no_pandas import leave_out_pandas
        from tokentrail.server.settings import SettingsError, from_env
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _needs_server_extras(exc) from None
    leave_out_pandas()
    try:
        return from_env()
    except SettingsError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None


def _open_store(settings: Any) -> tuple[Any, Any]:
    """The database, migrated (and what that changed: `tokentrail.store.Upgrade`). The embedded
    one, while a running server holds it, through that server's endpoint; a clear exit when it
    cannot be reached, or a cluster is not set up for it."""
    from tokentrail.store import DatabaseInUse, connect, upgrade
    from tokentrail.store.cluster import ClusterError

    try:
        store = connect(settings)
    except DatabaseInUse as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    try:
        return store, upgrade(store)
    except ClusterError as exc:
        store.close()
        raise SystemExit(f"tokentrail: {exc}") from None
    except BaseException:
        store.close()
        raise


def _cmd_up(args: argparse.Namespace) -> int:
    from tokentrail.server.run import serve
    from tokentrail.server.settings import SettingsError
    from tokentrail.store import DatabaseInUse
    from tokentrail.store.cluster import ClusterError

    settings = _server_settings()
    try:
        serve(settings, collector=args.command in ("up", "collector"), web=args.command in ("up", "web"))
    except (DatabaseInUse, SettingsError, ClusterError) as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    except OSError as exc:
        raise SystemExit(f"tokentrail: cannot start: {exc}") from None
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _server_settings()
    store, done = _open_store(settings)
    store.close()
    for m in done.applied:
        print(f"applied {m.version:04d}_{m.name}")
    for change in done.retention:
        print(change)
    print(f"database {settings.database} is up to date ({len(done.applied)} applied now)")
    return 0


def _read_key(args: argparse.Namespace) -> dict[str, str]:
    """The Authorization header of a read key (`--api-key` or TOKENTRAIL_API_KEY), if one is given."""
    import os

    key = args.api_key or os.environ.get("TOKENTRAIL_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _fetch_status(url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=3) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise SystemExit(
                f"tokentrail: {url} needs a read key: pass --api-key or set TOKENTRAIL_API_KEY"
            ) from None
        return None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _cmd_status(args: argparse.Namespace) -> int:
    settings = _server_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = args.url or f"http://{host}:{settings.otlp_http_port}/api/status"
    status = _fetch_status(url, _read_key(args))
    if status is None:
        print(f"collector: not reachable at {url}")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    console = _console()
    console.print(f"collector: running ({url})")
    console.print(f"database:  {status['clickhouse']}")
    console.print(_counters(status["stats"]))
    for line in _spool_lines(status["spool"], status["stats"]):
        console.print(line)
    for line in _writer_lines(status["writer"], status["spool"], status["stats"]):
        console.print(line)
    for line in _redaction_lines(status.get("redaction")):
        console.print(line)
    return 0


def _counters(stats: dict[str, Any]) -> Any:
    """Spans, logs and metric data points: received, spooled, stored and rejected."""
    steps = ("received", "spooled", "stored", "rejected")
    table = _table("", *steps, right=steps)
    for noun in ("spans", "logs", "metrics"):
        if f"tokentrail_{noun}_received_total" not in stats:
            continue  # a collector from before it took metrics
        table.add_row(noun, *(f"{int(stats[f'tokentrail_{noun}_{step}_total']):,}" for step in steps))
    return table


def _spool_lines(spool: dict[str, Any], stats: dict[str, Any]) -> list[str]:
    free = spool.get("free_bytes")
    room = f"; {free:,} bytes free on its disk" if free is not None else ""
    lines = [
        f"spool:     {spool['backlog_bytes']:,} bytes waiting (limit {spool['limit_bytes']:,}) in "
        f"{spool['directory']}{room}",
        f"refused:   {int(stats['tokentrail_requests_refused_total']):,} requests (spool full or failing)",
    ]
    if spool.get("last_error"):
        lines.append(
            f"spool:     {spool.get('errors', 0):,} failed writes; last at {spool['last_error_at']}: "
            f"{spool['last_error']}"
        )
    if spool.get("quarantined_records"):
        lines.append(
            f"damaged:   {spool['quarantined_records']:,} spool records did not match their checksum, "
            f"copied to {spool['quarantine_directory']}"
        )
    return lines


def _writer_lines(writer: dict[str, Any], spool: dict[str, Any], stats: dict[str, Any]) -> list[str]:
    lines = []
    dead = int(writer.get("dead_lettered_records", stats.get("tokentrail_records_dead_lettered_total", 0)))
    if dead:
        where = writer.get("dead_letter_directory", f"{spool['directory']}/dead")
        lines.append(
            f"dead:      {dead:,} spool records could not be stored (refused on their own), kept in {where}"
        )
    if writer.get("stalled"):
        lines.append(
            f"writer:    STALLED: nothing stored for {writer['seconds_since_progress']:,.0f} s while records wait"
        )
    elif writer.get("failing"):
        lines.append("writer:    failing, retrying")
    if writer["last_error"]:
        when = f" at {writer['last_error_at']}" if writer.get("last_error_at") else ""
        lines.append(f"writer:    last error{when}: {writer['last_error']}")
    return lines


def _redaction_lines(redaction: dict[str, Any] | None) -> list[str]:
    """What is redacted at ingest, and how many values were, by project and rule."""
    if redaction is None:
        return []  # a collector from before redaction
    rules = ", ".join(redaction["rule_sets"] + redaction["patterns"]) or "nothing"
    keys = f"; keys {', '.join(redaction['keys'])}" if redaction["keys"] else ""
    lines = [f"redaction: {rules}{keys}"]
    by_project: dict[str, list[str]] = {}
    for row in redaction["redacted"]:
        by_project.setdefault(row["project"], []).append(f"{row['rule']} {row['count']:,}")
    for project, counts in sorted(by_project.items()):
        lines.append(f"redacted:  {project}: {', '.join(counts)}")
    return lines


def _cmd_outcome(args: argparse.Namespace) -> int:
    """Record an outcome through the collector's `POST /api/outcomes` (from a git hook, a CI job)."""
    import os

    from tokentrail.instrumentation._setup import DEFAULT_ENDPOINT

    base = (args.url or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    body: dict[str, Any] = {"name": args.name}
    for target in ("session", "conversation", "task", "trace"):
        if getattr(args, target):
            body[f"{target}_id"] = getattr(args, target)
    success = True if args.success is None and args.value is None else args.success
    if success is not None:
        body["success"] = success
    if args.value is not None:
        body["value"] = args.value
    headers = {"Content-Type": "application/json"}
    key = args.api_key or os.environ.get("TOKENTRAIL_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{base}/api/outcomes", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        print(f"tokentrail: the collector refused the outcome (HTTP {exc.code}): {reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"tokentrail: no collector answers at {base} ({exc})", file=sys.stderr)
        return 1
    print(f"recorded {args.name} ({answer['outcome_id']}) in project {answer['project']}")
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


def _range(args: argparse.Namespace, settings: Any) -> tuple[str, int, int]:
    """The project and the time range (ns) a command works on: from `--since` ago to a minute ahead."""
    now = time.time_ns()
    return args.project or settings.default_project, now - args.since * 10**9, now + 60 * 10**9


class _Progress:
    """The progress `analyze` and `reprice` report, as a bar on stderr from their first report on
    (nothing when they report none); outside a terminal only the final count is printed."""

    def __init__(self, noun: str) -> None:
        console = _console(stderr=True)
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        count = TextColumn("{task.completed:,.0f}/{task.total:,.0f} {task.fields[noun]}", markup=False)
        self.bar = Progress(BarColumn(), count, TimeElapsedColumn(), console=console)
        self.noun = noun
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("", total=total, noun=self.noun)
        self.bar.update(self.task, completed=done, total=total)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.bar.stop()


def _cmd_analyze(args: argparse.Namespace) -> int:
    from tokentrail.analysis.run import analyze_range
    from tokentrail.pricing import PriceBook

    settings = _server_settings()
    store, _ = _open_store(settings)
    try:
        start = time.monotonic()
        with _Progress("traces") as progress:
            done = analyze_range(
                store.client, *_range(args, settings), PriceBook(), settings.waste, progress=progress
            )
    finally:
        store.close()
    print(f"analysed {done:,} traces in {time.monotonic() - start:.1f}s")
    return 0


def _cmd_reprice(args: argparse.Namespace) -> int:
    from tokentrail.collector.reprice import reprice
    from tokentrail.pricing import PriceBook

    settings = _server_settings()
    store, _ = _open_store(settings)
    try:
        prices = PriceBook()
        with _Progress("spans") as progress:
            result = reprice(
                store.client,
                *_range(args, settings),
                prices,
                progress=progress,
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
    import os
    import urllib.parse

    base = (args.url or f"http://127.0.0.1:{os.environ.get('TOKENTRAIL_UI_PORT', '4320')}").rstrip("/")
    query = {"since": f"{args.since}s", "by": args.by}
    if args.project:
        query["project"] = args.project
    url = f"{base}/waste.json?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=_read_key(args)), timeout=30
        ) as response:
            report: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise SystemExit(f"tokentrail: {url}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SystemExit(
            f"tokentrail: no Tokentrail web UI at {base} ({exc}); start it with `tokentrail up`, "
            "or pass --url"
        ) from None
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "csv":
        _waste_csv(report, args.by)
    else:
        _console().print(_waste_table(report, args.by))
    return 0


def _waste_csv(report: dict[str, Any], by: str) -> None:
    import csv

    buckets: list[str] = report["buckets"]
    writer = csv.writer(sys.stdout)
    writer.writerow([by, "total_usd", "wasted_usd", "waste_share", *(f"{b}_usd" for b in buckets), "traces"])
    for r in report["rows"]:
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


def _share(value: float | None) -> str:
    return f"{value * 100:.0f}%" if value is not None else "-"


def _waste_table(report: dict[str, Any], by: str) -> Any:
    """Cost, waste and its share by `by`, with the costliest waste bucket of each row, and the total."""
    t = report["totals"]
    figures = ("cost", "wasted", "share")
    table = _table(
        by,
        *figures,
        "top bucket",
        right=figures,
        footer=("total", f"{t['total_usd']:.4f}", f"{t['wasted_usd']:.4f}", _share(t["waste_share"])),
    )
    for r in report["rows"]:
        waste = {b: v for b, v in r["buckets"].items() if b != "productive" and v > 0}
        top = max(waste, key=lambda b: waste[b]) if waste else "-"
        table.add_row(
            str(r["key"]), f"{r['total_usd']:.4f}", f"{r['wasted_usd']:.4f}", _share(r["waste_share"]), top
        )
    return table


def _keys_store() -> tuple[Any, Any, Any]:
    """The settings, the migrated store and the keys module, for `projects` and `keys`."""
    try:
        from tokentrail.store import keys
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise _needs_server_extras(exc) from None
    settings = _server_settings()
    store, _ = _open_store(settings)
    return settings, store, keys


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


def _print_whole(table: Any) -> None:
    """Print a table of ids and names unshortened, also where no terminal sets the width."""
    console = _console()
    if not console.is_terminal:
        console.width = 1000
    console.print(table)


def _cmd_projects(args: argparse.Namespace) -> int:
    settings, store, keys = _keys_store()
    try:
        if args.action == "create":
            project = keys.create_project(store.client, args.name)
            print(
                f"created project {project.name}; give it a key with "
                f"`tokentrail keys create --project {project.name} --scope ingest`"
            )
            return 0
        projects = keys.list_projects(store.client)
        active: dict[str, int] = {}
        for key in keys.list_keys(store.client):
            active[key.project] = active.get(key.project, 0) + (key.state() == "active")
    except keys.KeysError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    finally:
        store.close()
    table = _table("project", "created", "active keys", right=("active keys",))
    for project in projects:
        table.add_row(project.name, _when(project.created_at), str(active.get(project.name, 0)))
    for name in sorted(set(settings.api_keys.values()) - {p.name for p in projects}):
        table.add_row(name, "TOKENTRAIL_API_KEYS", "-")
    if not projects and not settings.api_keys:
        print("no projects yet: create one with `tokentrail projects create NAME`")
        return 0
    _print_whole(table)
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    settings, store, keys = _keys_store()
    try:
        if args.action == "create":
            expires = timedelta(seconds=args.expires) if args.expires else None
            new = keys.create_key(
                store.client, args.project, args.scope, label=args.name or "", expires_in=expires
            )
            print(new.key)
            info = new.info
            until = f", expires {_when(info.expires_at)}" if info.expires_at else ""
            print(
                f"created {info.scope} key {info.key_id} for project {info.project}{until}.\n"
                "Copy the key above now: it is not shown again (only its hash is stored).",
                file=sys.stderr,
            )
            return 0
        if args.action == "revoke":
            now = datetime.now(UTC)
            info = keys.revoke_key(store.client, args.key_id, now=now)
            if info.revoked_at != now:
                print(f"key {info.key_id} was revoked already, at {_when(info.revoked_at)}")
            else:
                print(
                    f"revoked {info.scope} key {info.key_id} of project {info.project}; running "
                    f"servers refuse it within {settings.key_cache_seconds:g} s"
                )
            return 0
        if args.project and not any(p.name == args.project for p in keys.list_projects(store.client)):
            raise keys.KeysError(f"no project {args.project!r} (`tokentrail projects list` shows them)")
        listed = keys.list_keys(store.client, args.project)
    except keys.KeysError as exc:
        raise SystemExit(f"tokentrail: {exc}") from None
    finally:
        store.close()
    if not listed:
        print("no keys yet: create one with `tokentrail keys create --project NAME --scope ingest`")
        return 0
    table = _table("key id", "project", "scope", "name", "created", "expires", "state")
    for key in listed:
        state = key.state()
        if state == "revoked":
            state = f"revoked {_when(key.revoked_at)}"
        table.add_row(
            key.key_id, key.project, key.scope, key.label, _when(key.created_at), _when(key.expires_at), state
        )
    _print_whole(table)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokentrail", description="Observability for AI agents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run collector and web UI on the embedded database (one process)")
    sub.add_parser("collector", help="run only the OTLP collector")
    sub.add_parser("web", help="run only the web UI")
    sub.add_parser(
        "database",
        help="serve only the embedded database (ClickHouse HTTP interface), for collectors and UIs "
        "in other processes",
    )
    sub.add_parser("migrate", help="apply database migrations and the retention (TOKENTRAIL_RETENTION_DAYS)")
    status = sub.add_parser("status", help="show the running collector's counters")
    status.add_argument("--url", help="status URL (default: the local collector)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--api-key", help="a read key, when authentication is on (default: TOKENTRAIL_API_KEY)"
    )
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
    waste.add_argument("--api-key", help="a read key, when sign-in is on (default: TOKENTRAIL_API_KEY)")
    outcome = sub.add_parser(
        "outcome", help="record how a task ended (a merged PR, a passing CI run) against its session or task"
    )
    outcome.add_argument("name", help="what happened: pr_merged, commit, ci_passed, ticket_resolved…")
    target = outcome.add_mutually_exclusive_group(required=True)
    target.add_argument("--session", help="a coding agent's session id (Claude Code, Codex, Gemini CLI)")
    target.add_argument("--conversation", help="a conversation id")
    target.add_argument("--task", help="a task id")
    target.add_argument("--trace", help="a trace id (32 hex digits)")
    verdict = outcome.add_mutually_exclusive_group()
    verdict.add_argument(
        "--success", dest="success", action="store_true", default=None, help="it succeeded (default)"
    )
    verdict.add_argument("--failure", dest="success", action="store_false", help="it failed")
    outcome.add_argument("--value", help="a value to keep with it (a PR number, a score)")
    outcome.add_argument(
        "--url", help="collector address (default: OTEL_EXPORTER_OTLP_ENDPOINT or the local one)"
    )
    outcome.add_argument("--api-key", help="an ingest key (default: TOKENTRAIL_API_KEY)")
    _key_parsers(sub)
    cli_users.add_parser(sub)
    return parser


def _key_parsers(sub: Any) -> None:
    """`tokentrail projects ...` and `tokentrail keys ...`."""
    projects = sub.add_parser("projects", help="create and list projects (each has its own data and keys)")
    actions = projects.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a project")
    create.add_argument("name", help="1 to 64 letters, digits, - or _")
    actions.add_parser("list", help="list the projects")
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key (printed once, stored hashed)")
    create.add_argument("--project", required=True, help="the project it sends to or reads")
    create.add_argument(
        "--scope", required=True, choices=["ingest", "read"], help="ingest: send data; read: read it"
    )
    create.add_argument("--name", help="a label to tell keys apart (who or what uses it)")
    create.add_argument("--expires", type=_duration, help="expire after this long (90d, 12h)")
    listing = actions.add_parser("list", help="list the keys (never their secrets)")
    listing.add_argument("--project", help="only this project's keys")
    revoke = actions.add_parser("revoke", help="revoke a key: refused within seconds, no restart")
    revoke.add_argument("key_id", help="the key's id, as `tokentrail keys list` shows it")


def _cmd_users(args: argparse.Namespace) -> int:
    settings = _server_settings()
    return cli_users.run(args, lambda: _open_store(settings)[0])


_COMMANDS = {
    "users": _cmd_users,
    "outcome": _cmd_outcome,
    "analyze": _cmd_analyze,
    "reprice": _cmd_reprice,
    "waste": _cmd_waste,
    "demo": _cmd_demo,
    "up": _cmd_up,
    "collector": _cmd_up,
    "web": _cmd_up,
    "database": _cmd_up,
    "migrate": _cmd_migrate,
    "status": _cmd_status,
    "projects": _cmd_projects,
    "keys": _cmd_keys,
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
