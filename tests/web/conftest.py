from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.recorder import Recorder
from tokentrail.web.app import create_app


@pytest.fixture
def web(settings: Any, store: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store)) as client:
        yield client


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def live(settings: Any, store: Any) -> Iterator[str]:
    """The web UI on a loopback port, for a real browser."""
    with serving(create_app(settings, store)) as url:
        yield url


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """An app served on a loopback port while the block runs; its URL."""
    import threading
    import time

    import uvicorn

    from tests.support.collector import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "web UI did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

        def on_dialog(dialog: Any) -> None:
            problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.problems = problems  # type: ignore[attr-defined]
        yield page
        browser.close()
