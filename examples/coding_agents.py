"""Worked example: cost per merged pull request for coding agents.

Three developers' sessions, each sent the way its tool sends it (the tool stand-ins from
tests/support/coding_agents emit the documented log events and metrics through the OTel SDK's
OTLP exporters): dana works with Claude Code, lee with Codex, sam with Gemini CLI. Then, as a CI
job would, the outcome of each session's pull request is recorded against the session: dana's and
lee's are merged, sam's is closed unmerged. The figures are the same on every machine.

    tokentrail up &                      # the collector and the UI
    python examples/coding_agents.py     # then open http://127.0.0.1:4320/developers
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tool stand-ins live in tests/

from tests.support.coding_agents import emit, realistic_session

ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
UI = os.environ.get("TOKENTRAIL_UI", "http://127.0.0.1:4320")
WORK = [
    ("dana@acme.example", "claude_code", True),
    ("lee@acme.example", "codex", True),
    ("sam@acme.example", "gemini_cli", False),
]


def post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def main() -> None:
    for seed, (developer, tool, merged) in enumerate(WORK, start=1):
        session = dataclasses.replace(realistic_session(tool, seed=seed), user_email=developer)  # type: ignore[arg-type]
        emit(session, ENDPOINT)
        # what `tokentrail outcome pr_merged --session … [--failure]` sends from a CI job
        post(
            f"{ENDPOINT}/api/outcomes",
            {"session_id": session.session_id, "name": "pr_merged", "success": merged},
        )
        print(
            f"{developer}: a {tool} session of {len(session.prompts)} prompts, PR {'merged' if merged else 'closed'}"
        )
    time.sleep(3)  # the collector stores, builds the sessions' traces and analyses them
    with urllib.request.urlopen(f"{UI}/developers.json?range=24h", timeout=30) as response:
        report = json.load(response)
    print(f"\n{'developer':<20}{'tasks':>6}{'spend':>10}{'per task':>10}{'per merged PR':>15}")
    for row in report["rows"]:
        outcome = next((o for o in row["outcomes"] if o["name"] == "pr_merged"), None)
        per_pr = outcome["cost_per_success_usd"] if outcome else None
        print(
            f"{row['key']:<20}{row['tasks']:>6}{row['cost_usd']:>10.4f}{row['cost_per_task_usd']:>10.4f}"
            f"{'—' if per_pr is None else f'{per_pr:.4f}':>15}"
        )


if __name__ == "__main__":
    main()
