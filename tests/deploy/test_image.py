"""The Dockerfile: installs what `make install` installs for the servers, with everything the
build needs in its context, and runs as a user that is not root."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.files import REPO, dockerfile_env, dockerfile_instructions
from tests.support.collector import free_port


def extras(command: str) -> set[str]:
    """The extras of `pip install '.[a,b]'` (or `-e '.[a,b]'`) in a command."""
    found = re.findall(r"pip install\b[^\n&;]*?\.\[([a-z0-9_,-]+)\]", command)
    assert found, f"no `pip install .[…]` in {command!r}"
    return {name for group in found for name in group.split(",")}


def test_image_installs_the_server_extras_as_the_makefile_does_without_the_dev_ones() -> None:
    makefile = (REPO / "Makefile").read_text()
    runs = " ".join(rest for word, rest in dockerfile_instructions() if word == "RUN")
    assert extras(runs) == extras(makefile) - {"dev"}
    assert "server" in extras(runs)
    assert "-e" not in shlex.split(re.search(r"pip install[^&;\n]*", runs)[0])  # type: ignore[index]


def test_image_runs_as_a_user_that_is_not_root() -> None:
    users = [rest for word, rest in dockerfile_instructions() if word == "USER"]
    assert users, "the image sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    created = re.search(r"useradd\b[^&]*--uid (\d+)[^&]* (\S+)\s*(?:&&|$)", (REPO / "Dockerfile").read_text())
    assert created is not None
    assert user in created.groups()


def test_the_data_directory_is_a_volume_the_user_owns() -> None:
    data_dir = dockerfile_env()["TOKENTRAIL_DATA_DIR"]
    volumes = [rest for word, rest in dockerfile_instructions() if word == "VOLUME"]
    assert any(data_dir in volume for volume in volumes)
    text = (REPO / "Dockerfile").read_text()
    assert re.search(rf"install -d -o tokentrail -g tokentrail[^\n]* {re.escape(data_dir)}\b", text)


def copied_sources() -> list[str]:
    sources = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            *src, _dest = shlex.split(rest)
            sources += src
    return sources


def dockerignore() -> list[str]:
    return [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (last matching pattern wins)."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes
        ):
            verdict = not negate
    return verdict


def test_the_build_context_holds_everything_the_build_copies_and_the_package_needs() -> None:
    patterns = dockerignore()
    sources = copied_sources()
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), f"{source} is copied but .dockerignore leaves it out"
    # what the wheel is built from: the packages, the migrations it forces in, the readme
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = (
        {p.split("/")[0] for p in wheel["packages"]}
        | set(wheel["force-include"])
        | {
            project["project"]["readme"],
            "pyproject.toml",
        }
    )
    assert needed <= {s.rstrip("/") for s in sources}
    assert ignored(".venv/bin/python", patterns)
    assert ignored("tests/conftest.py", patterns)
    assert not ignored("web/tokentrail/web/static/app.css", patterns)


def test_health_check_is_the_copied_script_run_with_python() -> None:
    (check,) = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    command = check.split("CMD", 1)[1].strip()
    argv = [a.strip().strip('"') for a in command.strip("[]").split(",")]
    assert argv[0] == "python"  # the slim image has no curl
    copies = {
        shlex.split(rest)[-1]: shlex.split(rest)[0]
        for word, rest in dockerfile_instructions()
        if word == "COPY"
    }
    assert (REPO / copies[argv[1]]).is_file()
    entrypoint = [rest for word, rest in dockerfile_instructions() if word == "ENTRYPOINT"]
    assert entrypoint == ['["tokentrail"]']


def build_context(into: Path) -> Path:
    """The files `docker build .` would send: the tracked ones .dockerignore does not leave out."""
    patterns = dockerignore()
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if not ignored(name, patterns) and (REPO / name).is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, into / name)
    return into


@pytest.mark.slow
def test_the_images_install_command_builds_a_working_server(tmp_path: Path) -> None:
    """The Dockerfile's COPY and `pip install` steps, run in a fresh virtual environment from the
    build context .dockerignore leaves: the installed `tokentrail` applies every migration of
    the repository, and the health check runs on the installed package alone."""
    context = build_context(tmp_path / "context")
    src = tmp_path / "src"
    for source in copied_sources():
        target = src / source.rstrip("/")
        if (context / source).is_dir():
            shutil.copytree(context / source, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(context / source, target)
    runs = " && ".join(rest for word, rest in dockerfile_instructions() if word == "RUN")
    (install,) = [c.strip() for c in runs.split("&&") if c.strip().startswith("pip install")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    argv = shlex.split(install)
    subprocess.run([str(venv / "bin/pip"), *argv[1:], "--quiet"], cwd=src, check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENTRAIL_", "OTEL_", "PYTHON"))}
    env["TOKENTRAIL_DATA_DIR"] = str(tmp_path / "data")
    migrated = subprocess.run(
        [str(venv / "bin/tokentrail"), "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    migrations = sorted((REPO / "migrations").glob("*.sql"))
    assert f"({len(migrations)} applied now)" in migrated.stdout
    assert f"applied {migrations[-1].stem}" in migrated.stdout
    # the health check, on the installed package alone, finds no collector where none listens
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/usr/local/bin/python\0/usr/local/bin/tokentrail\0collector\0")
    env["TOKENTRAIL_OTLP_HTTP_PORT"] = str(free_port())
    script = (
        f"import sys; sys.path.insert(0, {str(src / 'deploy')!r}); import healthcheck; "
        f"sys.exit(healthcheck.main({str(cmdline)!r}))"
    )
    check = subprocess.run(
        [str(venv / "bin/python"), "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 1
    assert f"127.0.0.1:{env['TOKENTRAIL_OTLP_HTTP_PORT']}/health did not answer" in check.stderr
