"""Shared fixtures.

chDB allows one database path per process, so the whole test session shares one path and each
test gets its own database with the schema migrated into it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's OTEL_* and TOKENTRAIL_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TOKENTRAIL_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokentrail-data")


@pytest.fixture
def settings(chdb_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    from tokentrail.server.settings import from_env

    database = f"t_{uuid.uuid4().hex[:12]}"
    return from_env(
        {
            "TOKENTRAIL_DATA_DIR": str(tmp_path),
            "TOKENTRAIL_CLICKHOUSE_URL": f"chdb://{chdb_dir / 'chdb'}",
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
