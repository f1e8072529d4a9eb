"""Shared fixtures.

chDB allows one database path per process, so the whole test session shares one path and each
test gets its own database with the schema migrated into it.

Tests of the modules in `BOTH_TRANSPORTS` run twice: on the embedded engine, and through
ClickHouse's HTTP interface (clickhouse-connect's HTTP client, the path taken with a ClickHouse
server) served by tokentrail.server.clickhouse_http over the same engine.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: test modules whose tests run on both transports (paths relative to tests/)
BOTH_TRANSPORTS = (
    "store/test_store.py",
    "store/test_keys.py",
    "collector/test_writer.py",
    "collector/test_receivers.py",
    "collector/test_reprice.py",
    "collector/test_outcomes.py",
    "analysis/test_run.py",
    "web/test_pages.py",
    "web/test_access.py",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's OTEL_* and TOKENTRAIL_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TOKENTRAIL_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokentrail-data")


@pytest.fixture(scope="session")
def clickhouse_http(chdb_dir: Path) -> Iterator[str]:
    """The test session's engine served over ClickHouse's HTTP interface: its URL."""
    import uvicorn

    from tokentrail.server.clickhouse_http import Endpoint, create_app

    password = secrets.token_urlsafe(16)
    endpoint = Endpoint(str(chdb_dir / "chdb"), user="tokentrail", password=password)
    server = uvicorn.Server(
        uvicorn.Config(create_app(endpoint), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the ClickHouse HTTP endpoint did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://tokentrail:{password}@127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    endpoint.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_transport" not in metafunc.fixturenames:
        return
    path = Path(str(metafunc.definition.fspath)).resolve()
    relative = path.relative_to(Path(__file__).resolve().parent).as_posix()
    if relative in BOTH_TRANSPORTS and metafunc.definition.get_closest_marker("embedded_only") is None:
        metafunc.parametrize("database_transport", ["chdb", "http"], indirect=True)


@pytest.fixture
def database_transport(request: pytest.FixtureRequest) -> str:
    """How the test reaches the database: "chdb" (embedded) or "http" (ClickHouse's HTTP interface)."""
    return getattr(request, "param", "chdb")


@pytest.fixture
def settings(chdb_dir: Path, tmp_path: Path, database_transport: str, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    from tokentrail.server.settings import from_env

    database = f"t_{uuid.uuid4().hex[:12]}"
    url = f"chdb://{chdb_dir / 'chdb'}"
    if database_transport == "http":
        url = request.getfixturevalue("clickhouse_http")
    return from_env(
        {
            "TOKENTRAIL_DATA_DIR": str(tmp_path),
            "TOKENTRAIL_CLICKHOUSE_URL": url,
            "TOKENTRAIL_CLICKHOUSE_DATABASE": database,
            # flatten on the writer thread: no worker process per test (test_receivers covers both)
            "TOKENTRAIL_WRITER_WORKERS": "0",
            # the host name of fastapi's TestClient, beside the loopback names
            "TOKENTRAIL_UI_HOSTS": "testserver,localhost,127.0.0.1",
        }
    )


@pytest.fixture
def store(settings):  # type: ignore[no-untyped-def]
    """A migrated, empty database of the test's own."""
    from tokentrail.store import connect, migrate

    st = connect(settings)
    migrate(st)
    yield st
    st.client.command(f"DROP DATABASE IF EXISTS {settings.database}")
    st.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not Path("/usr/bin/chromium").exists():
        skip = pytest.mark.skip(reason="Debian chromium is not installed (apt-get install -y chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)
