"""Two projects with data in each, accounts that read one of them, and signing in as a browser
does: for the tests of who reads what."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from bs4 import BeautifulSoup
from fastapi.testclient import TestClient

from tests.support.coding import Call, claude_code, prompt
from tests.support.recorder import Recorder, prices, support_run
from tokentrail.analysis.run import analyze_range
from tokentrail.store import users

#: cheap scrypt parameters for the tests' accounts (the hash names them; production uses more)
CHEAP = {"n": 16, "r": 1, "p": 1}


@dataclass
class Seeded:
    """What one project holds: its traces, a span, a coding session, and the strings that only
    its data contains (found in a response, they say the response shows this project)."""

    project: str
    trace_id: str
    span_id: str
    coding_trace_id: str
    session_id: str
    markers: list[str] = field(default_factory=list)


def seed_project(store: Any, project: str) -> Seeded:
    """An agent run with a retried call (waste once analysed) and a Claude Code prompt, with
    names of the project's own, stored in `project` and analysed."""
    rec = Recorder(service=f"svc-{project}")
    trace_id = support_run(
        rec, agent=f"agent-{project}", conversation=f"conv-{project}", user=f"user-{project}"
    )
    span_id = format(rec.exporter.get_finished_spans()[0].context.span_id, "016x")
    rec.store(store.client, project=project)
    coder = claude_code(f"team-{project}", f"acme/repo-{project}")
    session = f"sess-{project}"
    coding = prompt(
        coder, session, f"dev@{project}.example", f"p-{project}", [Call(1200, 300, 20000, 1000)], ("Read",)
    )
    coder.store(store.client, project=project)
    analyze_range(store.client, project, 0, 2**62, prices())
    markers = [
        trace_id,
        coding.trace_id,
        f"svc-{project}",
        f"agent-{project}",
        f"conv-{project}",
        session,
        f"team-{project}",
        f"dev@{project}.example",
    ]
    return Seeded(project, trace_id, span_id, coding.trace_id, session, markers)


def add_account(store: Any, email: str, password: str, *projects: str) -> None:
    users.save_user(store.client, email, users.hash_password(password, **CHEAP))
    for project in projects:
        users.add_membership(store.client, email, project)


def form_token(page: Any) -> str:
    """The form token of a page (the sign-in form's, or the sign-out form's)."""
    found = BeautifulSoup(page.text, "html.parser").select_one("input[name=csrf_token]")
    assert found is not None, page.text[:500]
    return str(found["value"])


def sign_in(web: TestClient | httpx.Client, email: str, password: str, next_url: str = "/") -> Any:
    """Fill in and send the sign-in form, as a browser would (the answer is not followed)."""
    token = form_token(web.get("/signin"))
    return web.post(
        "/signin",
        data={"email": email, "password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


def shown(body: str, seeded: Seeded) -> list[str]:
    """The project's markers found in a response."""
    return [m for m in seeded.markers if m in body]
