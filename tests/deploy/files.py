"""Reading the deployment files as the tools that use them would: the compose file with its
`${VAR:-default}` interpolation and profiles, env files, the Dockerfile's instructions, the
kustomizations' manifests, and the settings every Tokentrail container ends up with."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
OPERATOR = K8S / "clickhouse-operator"

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with compose's variables replaced: `${X}`, `${X:-default}`, `${X-default}`,
    `${X:?message}` (an error when X is unset or empty), `$$` (a dollar sign)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match[1], match[2] or "", match[3] or ""
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op == ":?" and not current:
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(replace, value)


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """`NAME=value` lines; with `commented`, also the lines written `#NAME=value`, as a user
    uncommenting them would have them."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if commented and re.match(r"^#[A-Z_][A-Z0-9_]*=", line):
            line = line[1:]
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def compose_file() -> dict[str, Any]:
    """docker-compose.yml as written (YAML merge keys resolved, variables not)."""
    data: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.yml")
    return data


def compose_services(env: Mapping[str, str], profiles: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile …` would start, variables interpolated."""
    services = compose_file()["services"]
    return {
        name: interpolate(service, env)
        for name, service in services.items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def published(port: str) -> tuple[str, str, str]:
    """A compose short port syntax `[[ip:]host:]container` as (ip, host port, container port)."""
    parts = port.split("/")[0].split(":")
    target = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    ip = ":".join(parts[:-2]) if len(parts) >= 3 else "0.0.0.0"
    return ip, host, target


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = (REPO / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def dockerfile_env() -> dict[str, str]:
    """The environment the image sets (ENV name=value …)."""
    env = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(directory / "kustomization.yaml")
    return data


def manifests(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every document of the files a kustomization lists as resources (not its bases)."""
    for resource in kustomization(directory)["resources"]:
        path = (directory / resource).resolve()
        if path.is_file():
            for doc in load_documents(path):
                yield path, doc


def workloads(directory: Path = K8S) -> dict[str, dict[str, Any]]:
    """Deployments, StatefulSets and Jobs by name."""
    kinds = ("Deployment", "StatefulSet", "Job")
    return {doc["metadata"]["name"]: doc for _, doc in manifests(directory) if doc["kind"] in kinds}


def containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return found


def kubernetes_environment(container: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    """What a Tokentrail container's environment holds: the image's, then the ConfigMap's and
    the Secret's (`secrets`: the Secret's values), then its own `env`."""
    generated = {
        "tokentrail-config": read_env_file(K8S / "config.env"),
        "tokentrail-secrets": dict(secrets),
    }
    env = dockerfile_env()
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        env.update(generated[ref["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env
