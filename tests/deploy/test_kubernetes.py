"""deploy/kubernetes/: valid against the Kubernetes API's schemas, and consistent with the
image, the settings and each other (names, ports, probes, the gateway's resolver)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.files import (
    K8S,
    OPERATOR,
    REPO,
    containers,
    dockerfile_env,
    dockerfile_instructions,
    kubernetes_environment,
    kustomization,
    load_documents,
    load_yaml,
    manifests,
    read_env_file,
    workloads,
)
from tests.deploy.test_compose import setting_names
from tokentrail.server.settings import Settings, SettingsError, from_env
from tokentrail.web.app import _check_exposure

#: the oldest Kubernetes release the manifests are meant for, and the newest the schemas know
VERSIONS = ("1.30", kubernetes_validate.latest_version())
#: secrets.env as an operator fills it in
SECRETS = read_env_file(K8S / "secrets.env.example") | {
    "TOKENTRAIL_CLICKHOUSE_URL": "http://tokentrail:0123456789abcdef@clickhouse.example.com:8123",
    "TOKENTRAIL_SECRET_KEY": "f" * 64,
}
_CUSTOM_KINDS = ("ClickHouseInstallation", "ClickHouseKeeperInstallation")


def builtin_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest of both kustomizations that is of a built-in kind."""
    found = [*manifests(K8S), *manifests(OPERATOR)]
    return [(path, doc) for path, doc in found if doc["kind"] not in _CUSTOM_KINDS]


def test_manifests_follow_the_kubernetes_schemas() -> None:
    documents = builtin_documents()
    kinds = {doc["kind"] for _, doc in documents}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "Job"} <= kinds
    for version in VERSIONS:
        for path, doc in documents:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} ({version}): {exc}")


def test_the_schemas_catch_a_mistake() -> None:
    statefulset = copy.deepcopy(workloads()["tokentrail-collector"])
    containers(statefulset)[0]["readinessProbe"]["httpGet"]["port"] = ["otlp-http"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[-1], strict=True)
    statefulset = copy.deepcopy(workloads()["tokentrail-collector"])
    statefulset["spec"]["volumeClaimTemplate"] = statefulset["spec"].pop("volumeClaimTemplates")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[-1], strict=True)


def test_kustomizations_list_every_manifest_and_the_files_they_generate_from() -> None:
    for directory in (K8S, OPERATOR):
        spec = kustomization(directory)
        listed = {(directory / r).resolve() for r in spec["resources"]}
        assert all(path.exists() for path in listed)
        on_disk = {p.resolve() for p in directory.glob("*.yaml")} - {
            (directory / "kustomization.yaml").resolve()
        }
        generated = set()
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            for item in generator.get("envs", []) + generator.get("files", []):
                source = directory / item.split("=")[-1]
                generated.add(source.resolve())
                # secrets are made from their example, which must be there
                assert source.exists() or Path(f"{source}.example").exists(), source
        assert on_disk - generated == {p for p in listed if p.is_file()}
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "deploy/kubernetes/secrets.env" in ignored
    assert "deploy/kubernetes/clickhouse-operator/clickhouse.env" in ignored


def tokentrail_containers() -> dict[str, dict[str, Any]]:
    images = {"tokentrail": kustomization(K8S)["images"][0]["name"]}
    return {
        name: container
        for name, workload in workloads().items()
        for container in containers(workload)
        if container["image"] in images.values()
    }


def container_settings(container: dict[str, Any], secrets: dict[str, str] = SECRETS) -> Settings:
    return from_env(kubernetes_environment(container, secrets))


def test_every_setting_in_the_manifests_is_one_the_servers_read_and_accept() -> None:
    known = setting_names()
    config = read_env_file(K8S / "config.env")
    assert sorted(k for k in config if k not in known) == []
    assert sorted(k for k in SECRETS if k.startswith("TOKENTRAIL_") and k not in known) == []
    # the secrets that are not settings are the gateway's, which names them itself
    refs = {
        item["valueFrom"]["secretKeyRef"]["key"]
        for workload in workloads().values()
        for container in containers(workload)
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert {k for k in SECRETS if not k.startswith("TOKENTRAIL_")} == refs
    containers_by_workload = tokentrail_containers()
    assert {c["args"][0] for c in containers_by_workload.values()} == {"collector", "web", "migrate"}
    for container in containers_by_workload.values():
        container_settings(container)


def test_the_example_secret_stops_the_servers_until_it_is_filled_in() -> None:
    example = read_env_file(K8S / "secrets.env.example")
    web = next(c for c in tokentrail_containers().values() if c["args"] == ["web"])
    with pytest.raises(SettingsError, match="TOKENTRAIL_SECRET_KEY"):
        container_settings(web, example)


def test_web_ui_has_sign_in_and_one_signing_key_for_its_replicas() -> None:
    (deployment,) = [w for w in workloads().values() if containers(w)[0].get("args") == ["web"]]
    settings = container_settings(containers(deployment)[0])
    _check_exposure(settings)
    assert settings.auth == "password"
    assert deployment["spec"]["replicas"] > 1
    assert len(SECRETS["TOKENTRAIL_SECRET_KEY"]) >= 32  # set in secrets.env, not generated per pod
    assert "TOKENTRAIL_SECRET_KEY" in read_env_file(K8S / "secrets.env.example")


def ports_by_name(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_container_ports_and_probes_are_the_ones_the_servers_answer_on() -> None:
    for container in tokentrail_containers().values():
        settings = container_settings(container)
        role = container["args"][0]
        if role == "collector":
            assert ports_by_name(container) == {
                "otlp-grpc": settings.otlp_grpc_port,
                "otlp-http": settings.otlp_http_port,
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"] == {"path": "/health", "port": "otlp-http"}
        elif role == "web":
            assert ports_by_name(container) == {"ui": settings.ui_port}
            # ready when the database answers (/health); alive while a static file is served
            assert container["readinessProbe"]["httpGet"]["path"] == "/health"
            for probe in ("readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                assert get["port"] == "ui"
                if probe == "livenessProbe":
                    static = get["path"].removeprefix("/static/")
                    assert (REPO / "web/tokentrail/web/static" / static).is_file()
                # neither needs sign-in; both name a host the UI answers
                assert {h["name"]: h["value"] for h in get["httpHeaders"]}["Host"] in settings.ui_hosts


def test_services_reach_ports_their_pods_have() -> None:
    pods = {
        name: (w["spec"]["template"]["metadata"]["labels"], containers(w))
        for name, w in workloads().items()
        if w["kind"] != "Job"
    }
    services = [doc for _, doc in manifests(K8S) if doc["kind"] == "Service"]
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matched = [cs for labels, cs in pods.values() if selector.items() <= labels.items()]
        assert len(matched) == 1, service["metadata"]["name"]
        names = {p["name"] for c in matched[0] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_each_collector_keeps_its_spool_on_a_volume_of_its_own() -> None:
    collector = workloads()["tokentrail-collector"]
    assert collector["kind"] == "StatefulSet"
    (container,) = containers(collector)
    data_dir = str(container_settings(container).data_dir)
    (claim,) = collector["spec"]["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[data_dir] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_gateway_resolves_the_headless_service_of_the_collectors() -> None:
    gateway = workloads()["tokentrail-gateway"]
    (container,) = containers(gateway)
    config_path = container["args"][0].removeprefix("--config=")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    (volume,) = [n for n, path in mounts.items() if config_path.startswith(path + "/")]
    configmap = volumes[volume]["configMap"]["name"]
    (generator,) = [g for g in kustomization(K8S)["configMapGenerator"] if g["name"] == configmap]
    key, _, source = generator["files"][0].partition("=")
    assert config_path == f"{mounts[volume]}/{key}"
    config = load_yaml(K8S / source)
    assert config["exporters"]["loadbalancing"]["routing_key"] == "traceID"
    dns = config["exporters"]["loadbalancing"]["resolver"]["dns"]
    collector = workloads()["tokentrail-collector"]
    assert collector["spec"]["serviceName"] == dns["hostname"]
    (headless,) = [
        d for _, d in manifests(K8S) if d["kind"] == "Service" and d["metadata"]["name"] == dns["hostname"]
    ]
    assert headless["spec"]["clusterIP"] == "None"
    assert int(dns["port"]) == ports_by_name(containers(collector)[0])["otlp-grpc"]
    assert int(dns["port"]) in {p["port"] for p in headless["spec"]["ports"]}


def test_pods_run_as_the_images_user_without_privileges_on_a_read_only_root() -> None:
    user = next(rest for word, rest in dockerfile_instructions() if word == "USER")
    uid = int(user.split(":")[0])
    namespace = next(d for _, d in manifests(K8S) if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, workload in workloads().items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "memory" in container["resources"]["limits"], name
            # the places a server writes are volumes: the data directory (if it uses it) and /tmp
            if container["image"] == "tokentrail":
                paths = {m["mountPath"] for m in container["volumeMounts"]}
                assert "/tmp" in paths, name
                if container["args"][0] in ("collector", "web"):
                    assert dockerfile_env()["TOKENTRAIL_DATA_DIR"] in paths, name


def test_clickhouse_operator_cluster_is_the_one_tokentrail_names() -> None:
    documents = {doc["kind"]: doc for _, doc in manifests(OPERATOR)}
    installation = documents["ClickHouseInstallation"]
    keeper = documents["ClickHouseKeeperInstallation"]
    assert installation["apiVersion"] == "clickhouse.altinity.com/v1"
    assert keeper["apiVersion"] == "clickhouse-keeper.altinity.com/v1"
    (cluster,) = installation["spec"]["configuration"]["clusters"]
    spec = kustomization(OPERATOR)
    (merged,) = [g for g in spec["configMapGenerator"] if g["name"] == "tokentrail-config"]
    assert merged["behavior"] == "merge"
    overrides = dict(item.split("=", 1) for item in merged["literals"])
    web = next(c for c in tokentrail_containers().values() if c["args"] == ["web"])
    env = kubernetes_environment(web, SECRETS) | overrides
    assert from_env(env).cluster == cluster["name"]
    # the operator names its services clickhouse-<installation> and keeper-<keeper installation>
    (node,) = installation["spec"]["configuration"]["zookeeper"]["nodes"]
    assert node["host"] == f"keeper-{keeper['metadata']['name']}"
    example = (K8S / "secrets.env.example").read_text()
    assert f"@clickhouse-{installation['metadata']['name']}:8123" in example
    # the password secret keeps its name: the operator reads it by that name
    ref = installation["spec"]["configuration"]["users"]["tokentrail/password"]["valueFrom"]["secretKeyRef"]
    (secret,) = spec["secretGenerator"]
    assert secret["name"] == ref["name"] and secret["options"]["disableNameSuffixHash"] is True
    assert ref["key"] in read_env_file(OPERATOR / f"{secret['envs'][0]}.example")
    assert [doc["kind"] for doc in load_documents(OPERATOR / "clickhouse.yaml")] == list(_CUSTOM_KINDS)
