"""deploy/healthcheck.py, the image's HEALTHCHECK: it asks the server the container runs, and
reports a collector or web UI that does not answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.files import DEPLOY
from tests.support.collector import free_port, running_collector
from tests.web.conftest import serving
from tokentrail.store import Store
from tokentrail.store.keys import KeyRing
from tokentrail.web.app import create_app
from tokentrail.web.auth import RingKeys


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Container:
    """The health check run as in a container whose first process runs `tokentrail COMMAND`."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cmdline = tmp_path / "cmdline"  # a stand-in for /proc/1/cmdline
        self.setenv = monkeypatch.setenv

    def check(self, command: str) -> int:
        argv = ["/usr/local/bin/python", "/usr/local/bin/tokentrail", command]
        self.cmdline.write_bytes(b"".join(a.encode() + b"\0" for a in argv))
        status: int = healthcheck().main(str(self.cmdline))
        return status


@pytest.fixture
def container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Container:
    return Container(tmp_path, monkeypatch)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["/usr/local/bin/python3.11", "/usr/local/bin/tokentrail", "collector"], "collector"),
        (["/usr/local/bin/python", "/usr/local/bin/tokentrail", "-v", "web"], "web"),
        (["tokentrail", "up"], "up"),
        (["python", "-m", "tokentrail", "migrate"], "migrate"),
        (["/bin/sh", "-c", "sleep 1"], ""),
    ],
)
def test_role_is_the_tokentrail_command_the_process_runs(argv: list[str], command: str) -> None:
    assert healthcheck().role(argv) == command


def test_a_collector_is_healthy_while_its_health_endpoint_answers(
    settings: Any, store: Any, container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    container.setenv("TOKENTRAIL_HOST", "0.0.0.0")
    with running_collector(settings, store) as running:
        port = running.http_url.rsplit(":", 1)[1]
        container.setenv("TOKENTRAIL_OTLP_HTTP_PORT", port)
        assert container.check("collector") == 0
    assert container.check("collector") == 1
    assert f"http://127.0.0.1:{port}/health did not answer" in capsys.readouterr().err


def test_a_web_ui_with_sign_in_is_healthy_under_a_name_it_answers(
    settings: Any, store: Any, container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    served = settings.with_(auth="password", ui_hosts=("tokentrail.example.com", "localhost"))
    with serving(create_app(served, store)) as url:
        container.setenv("TOKENTRAIL_UI_PORT", url.rsplit(":", 1)[1])
        container.setenv("TOKENTRAIL_AUTH", "password")
        container.setenv("TOKENTRAIL_UI_HOSTS", "tokentrail.example.com")
        assert container.check("web") == 0
        # a name the UI does not answer to is refused, and the check says so
        container.setenv("TOKENTRAIL_UI_HOSTS", "elsewhere.example.com")
        assert container.check("web") == 1
    assert "answered HTTP 400" in capsys.readouterr().err


def test_a_web_ui_whose_database_does_not_answer_is_unhealthy(
    settings: Any, store: Any, container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    cut_off = Store(settings, store.client, url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    keys = RingKeys(KeyRing(settings, store.new_client()))
    with serving(create_app(settings, cut_off, keys=keys)) as url:
        container.setenv("TOKENTRAIL_UI_PORT", url.rsplit(":", 1)[1])
        assert container.check("web") == 1
    assert "answered HTTP 503" in capsys.readouterr().err


def test_a_one_off_command_is_healthy_and_bad_settings_are_not(
    container: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    container.setenv("TOKENTRAIL_OTLP_HTTP_PORT", str(free_port()))  # nothing listens there
    assert container.check("migrate") == 0
    container.setenv("TOKENTRAIL_OTLP_HTTP_PORT", "http")
    assert container.check("collector") == 1
    assert "TOKENTRAIL_OTLP_HTTP_PORT='http' is not a whole number" in capsys.readouterr().err
