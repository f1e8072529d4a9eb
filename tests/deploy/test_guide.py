"""docs/production.md and the READMEs name things that exist: the files, the compose services and
Kubernetes objects its commands use, and the metrics it says to watch."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from tests.deploy.files import DEPLOY, K8S, REPO, compose_file, manifests
from tests.support.collector import collector_env, free_port, start_collector_process

GUIDE = REPO / "docs/production.md"


def test_the_guide_and_readmes_point_at_files_that_exist() -> None:
    guide = GUIDE.read_text()
    for path in set(re.findall(r"`((?:deploy|docs)/[\w./-]+)`", guide)):
        if not path.endswith(("secrets.env", "tokentrail-read-key")):  # made by the user
            assert (REPO / path).exists(), path
    assert "docs/production.md" in (REPO / "README.md").read_text()
    deploy_readme = (DEPLOY / "README.md").read_text()
    assert "../docs/production.md" in deploy_readme
    for name in re.findall(r"^\| `([^`]+)`", deploy_readme, re.MULTILINE):
        if "/" in name or "." in name:
            assert (DEPLOY / name).exists(), name


def test_the_guides_compose_commands_name_its_services_and_ports() -> None:
    guide = GUIDE.read_text() + (REPO / "README.md").read_text()
    services = compose_file()["services"]
    for name in re.findall(r"docker compose (?:run --rm(?: -T)?|exec(?: -T)?) ([a-z0-9-]+)", guide):
        assert name in services, name
    for host, port in re.findall(r"--endpoint http://([a-z0-9-]+):(\d+)", guide):
        if host in services:
            targets = {p.split(":")[-1] for p in services[host].get("ports", [])}
            assert port in targets, f"{host}:{port}"


def test_the_guides_kubectl_commands_name_objects_of_the_manifests() -> None:
    guide = GUIDE.read_text()
    objects = {(doc["kind"].lower(), doc["metadata"]["name"]) for _, doc in manifests(K8S)}
    short = {"deploy": "deployment", "svc": "service"}
    commands = "\n".join(line for line in guide.splitlines() if line.startswith("kubectl"))
    named = re.findall(r"(?<=[ /])(?<!-k )(deploy|svc|job|statefulset)/([a-z0-9-]+)", commands)
    assert named
    for kind, name in named:
        assert (short.get(kind, kind), name) in objects, f"{kind}/{name}"
    for service in re.findall(r"Service `([a-z0-9-]+)`", guide):
        assert ("service", service) in objects, service


def test_the_metrics_the_guide_names_are_served(tmp_path: Path) -> None:
    """Asked of a real `tokentrail collector`: it serves the analysis' counters beside the
    collector's own."""
    guide = GUIDE.read_text()
    named = set(re.findall(r"\b(tokentrail_[a-z_]+)", guide))
    assert len(named) >= 10
    port = free_port()
    proc = start_collector_process(collector_env(str(tmp_path), port), port)
    try:
        exposition = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    served = set(re.findall(r"^# TYPE (\S+)", exposition, re.MULTILINE))
    served |= set(re.findall(r"^(tokentrail_[a-z_]+)", exposition, re.MULTILINE))
    missing = sorted(n for n in named if n not in served and n.removesuffix("_bucket") not in served)
    assert missing == []


def test_the_docs_links_to_files_of_the_repository_resolve() -> None:
    pages = [REPO / "README.md", DEPLOY / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: {target}"
            checked += 1
    assert checked >= 1
