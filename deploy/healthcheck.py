"""The container image's health check: whether the server this container runs answers.

One image runs `tokentrail up`, `collector` or `web`, or a one-off command (`migrate`, `users`,
`demo`…). The check reads which from the command line of the container's first process, then
asks the collector's /health (`up`, `collector`) or the web UI's (`web`), which needs no sign-in
and answers 503 while the database does not answer, naming a host the UI answers (the first of
TOKENTRAIL_UI_HOSTS). A one-off
command has no server to ask and counts as healthy while it runs. Ports and addresses come from
the same settings the server reads, so the check follows TOKENTRAIL_OTLP_HTTP_PORT and
TOKENTRAIL_UI_PORT.

Exit status 0: healthy; 1: not (the reason on standard error), as Docker's HEALTHCHECK expects.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tokentrail.server.settings import Settings, SettingsError, from_env

__all__ = ["main", "probe", "role"]

_SERVERS = ("up", "collector", "web")
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def role(cmdline: Sequence[str]) -> str:
    """The `tokentrail` command a process runs (`up`, `collector`, `web`, `migrate`…), from its
    arguments (`python /usr/local/bin/tokentrail -v web`); empty when it runs something else."""
    for i, arg in enumerate(cmdline):
        if Path(arg).name == "tokentrail" or (arg == "-m" and cmdline[i + 1 : i + 2] == ["tokentrail"]):
            rest = cmdline[i + 1 + (arg == "-m") :]
            return next((a for a in rest if not a.startswith("-")), "")
    return ""


def _address(host: str) -> str:
    """Where to reach a server listening on `host` from inside its container."""
    if host in _WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def probe(command: str, settings: Settings) -> tuple[str, dict[str, str]] | None:
    """The URL and headers that tell whether the server of `command` answers; None for a
    command that serves nothing."""
    if command not in _SERVERS:
        return None
    if command == "web":
        name = settings.ui_hosts[0]
        host = f"[{name}]" if ":" in name else name
        url = f"http://{_address(settings.ui_host)}:{settings.ui_port}/health"
        return url, {"Host": f"{host}:{settings.ui_port}"}
    return f"http://{_address(settings.host)}:{settings.otlp_http_port}/health", {}


def check(url: str, headers: dict[str, str], timeout: float = 4.0) -> str:
    """Empty when `url` answers 200, else what went wrong."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return "" if r.status == 200 else f"{url} answered HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} did not answer: {exc}"


def main(cmdline_path: str = "/proc/1/cmdline") -> int:
    try:
        cmdline = Path(cmdline_path).read_bytes().split(b"\0")
    except OSError as exc:
        print(f"healthcheck: cannot read {cmdline_path}: {exc}", file=sys.stderr)
        return 1
    try:
        target = probe(role([a.decode(errors="replace") for a in cmdline if a]), from_env())
    except SettingsError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if target is None:
        return 0
    problem = check(*target)
    if problem:
        print(f"healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
