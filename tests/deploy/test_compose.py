"""deploy/docker-compose.yml, the gateway's and Prometheus' configurations, and the image they
run: valid for Compose, and consistent with the settings the servers read."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from typing import Any

import httpx
import jsonschema
import pytest

from tests.deploy.files import (
    DEPLOY,
    K8S,
    OPERATOR,
    REPO,
    compose_environment,
    compose_file,
    compose_services,
    containers,
    dockerfile_env,
    dockerfile_instructions,
    interpolate,
    load_yaml,
    manifests,
    published,
    read_env_file,
    workloads,
)
from tests.support.collector import running_collector
from tokentrail.server.settings import Settings, SettingsError, from_env
from tokentrail.web.app import _check_exposure

#: what a user puts in deploy/.env before the first `docker compose up`
USER_ENV = {"CLICKHOUSE_PASSWORD": "0123456789abcdef"}


def setting_names() -> set[str]:
    """Every TOKENTRAIL_* variable the servers' settings read."""
    source = (REPO / "collector/tokentrail/server/settings.py").read_text()
    return set(re.findall(r'"(TOKENTRAIL_[A-Z0-9_]+)"', source))


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as check-jsonschema ships it."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def schema_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def tokentrail_services(profiles: tuple[str, ...] = ("gateway", "monitoring", "cli")) -> dict[str, Any]:
    """The services that run the Tokentrail image, as started with every profile on."""
    services = compose_services(read_env_file(DEPLOY / ".env.example") | USER_ENV, profiles)
    return {name: s for name, s in services.items() if s.get("image", "").startswith("tokentrail:")}


def service_settings(service: dict[str, Any]) -> Settings:
    return from_env(dockerfile_env() | compose_environment(service))


def test_compose_file_follows_the_compose_specification() -> None:
    document = compose_file()
    assert schema_errors(document) == []
    # the schema does catch a mistake: a port mapping written as a mapping, a misspelt key
    broken = copy.deepcopy(document)
    broken["services"]["collector"]["ports"] = {"4318": 4318}
    broken["services"]["web"]["enviroment"] = {}
    assert len(schema_errors(broken)) >= 2


def test_compose_needs_the_clickhouse_password_and_uses_it_on_both_sides() -> None:
    with pytest.raises(KeyError, match="CLICKHOUSE_PASSWORD"):
        compose_services(read_env_file(DEPLOY / ".env.example"))
    services = compose_services(USER_ENV)
    clickhouse = compose_environment(services["clickhouse"])
    url = service_settings(services["collector"]).clickhouse_url
    assert url == (
        f"http://{clickhouse['CLICKHOUSE_USER']}:{clickhouse['CLICKHOUSE_PASSWORD']}@clickhouse:8123"
    )


def test_every_tokentrail_variable_in_compose_is_a_setting_the_servers_accept() -> None:
    known = setting_names()
    services = tokentrail_services()
    assert {"migrate", "collector", "collector-2", "web", "tokentrail"} <= set(services)
    for name, service in services.items():
        env = compose_environment(service)
        unknown = sorted(k for k in env if k.startswith("TOKENTRAIL_") and k not in known)
        assert unknown == [], f"{name} sets variables no setting reads: {unknown}"
        service_settings(service)  # raises SettingsError, as the server would at start-up
    assert {k for k in dockerfile_env() if k.startswith("TOKENTRAIL_")} <= known


def test_compose_web_ui_is_not_anonymous_on_the_network() -> None:
    web = service_settings(tokentrail_services()["web"])
    assert web.ui_host == "0.0.0.0"
    assert web.auth == "password"
    _check_exposure(web)  # the check `tokentrail web` makes before it serves
    # the commented opt-in for a local demo is what the server asks for
    text = (DEPLOY / "docker-compose.yml").read_text()
    opt_in = dict(re.findall(r"#\s*(TOKENTRAIL_[A-Z_]+): \"?([^\"\n]+)\"?", text))
    anonymous = web.with_(auth=opt_in["TOKENTRAIL_AUTH"])
    with pytest.raises(SettingsError, match="TOKENTRAIL_UI_ALLOW_ANONYMOUS=1"):
        _check_exposure(anonymous)
    _check_exposure(anonymous.with_(ui_allow_anonymous=opt_in["TOKENTRAIL_UI_ALLOW_ANONYMOUS"] == "1"))


def test_compose_ports_are_the_ones_the_servers_listen_on() -> None:
    services = tokentrail_services()
    for name in ("collector", "collector-2"):
        settings = service_settings(services[name])
        assert services[name]["command"] == ["collector"]
        targets = {published(p)[2] for p in services[name].get("ports", [])}
        assert targets <= {str(settings.otlp_grpc_port), str(settings.otlp_http_port)}
    collector = services["collector"]
    settings = service_settings(collector)
    assert {published(p)[1:] for p in collector["ports"]} == {
        (str(settings.otlp_grpc_port), str(settings.otlp_grpc_port)),
        (str(settings.otlp_http_port), str(settings.otlp_http_port)),
    }
    web = service_settings(services["web"])
    assert [published(p)[1:] for p in services["web"]["ports"]] == [(str(web.ui_port), str(web.ui_port))]
    exposed = {p for word, rest in dockerfile_instructions() if word == "EXPOSE" for p in rest.split()}
    assert exposed == {str(settings.otlp_grpc_port), str(settings.otlp_http_port), str(web.ui_port)}


def host_port_clashes(env: dict[str, str], profiles: tuple[str, ...]) -> list[str]:
    """Host ports that two of the services started would both publish."""
    bound = [
        published(port)[:2]
        for service in compose_services(env, profiles).values()
        for port in service.get("ports", [])
    ]
    return [
        f"{ip}:{port} and {other_ip}:{other_port}"
        for i, (ip, port) in enumerate(bound)
        for other_ip, other_port in bound[i + 1 :]
        if port == other_port and (ip == other_ip or "0.0.0.0" in (ip, other_ip))
    ]


def test_published_ports_do_not_clash_with_or_without_the_gateway() -> None:
    plain = read_env_file(DEPLOY / ".env.example") | USER_ENV
    assert host_port_clashes(plain, ()) == []
    assert host_port_clashes(plain, ("monitoring",)) == []
    # the gateway takes the OTLP ports: the lines .env.example says to uncomment move the collector
    assert host_port_clashes(plain, ("gateway",)) != []
    with_gateway = read_env_file(DEPLOY / ".env.example", commented=True) | USER_ENV
    assert with_gateway["COMPOSE_PROFILES"] == "gateway"
    assert host_port_clashes(with_gateway, ("gateway", "monitoring")) == []


def test_each_collector_has_a_spool_volume_of_its_own() -> None:
    data_dir = dockerfile_env()["TOKENTRAIL_DATA_DIR"]
    services = tokentrail_services()
    spools = []
    for name in ("collector", "collector-2"):
        sources = [v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == data_dir]
        assert len(sources) == 1, name
        spools.append(sources[0])
    assert len(set(spools)) == len(spools)
    assert set(spools) <= set(compose_file()["volumes"])


def test_servers_start_after_the_migrations() -> None:
    services = tokentrail_services()
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for name in ("collector", "collector-2", "web"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def gateway_config(path: Any) -> dict[str, Any]:
    config: dict[str, Any] = load_yaml(path)
    return config


def test_gateway_routes_each_trace_to_one_of_the_collectors() -> None:
    services = compose_services(USER_ENV, ("gateway",))
    gateway = services["otel-gateway"]
    mounted = {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in gateway["volumes"]}
    config_path = mounted[gateway["command"][0].removeprefix("--config=")]
    config = gateway_config(config_path)
    exporter = config["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "traceID"
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["loadbalancing"]
    assert pipelines["logs"]["exporters"] == ["loadbalancing"]
    # traceID routing is for traces and logs only
    assert "loadbalancing" not in pipelines["metrics"]["exporters"]
    # the resolver's name is every collector's alias, on the port they take OTLP/gRPC on
    dns = exporter["resolver"]["dns"]
    collectors = {n: s for n, s in services.items() if s.get("command") == ["collector"]}
    assert len(collectors) >= 2
    for service in collectors.values():
        assert dns["hostname"] in service["networks"]["default"]["aliases"]
        assert dns["port"] == str(service_settings(service).otlp_grpc_port)
    metrics = config["exporters"][pipelines["metrics"]["exporters"][0]]
    assert metrics["endpoint"] == f"dns:///{dns['hostname']}:{dns['port']}"
    # the key it sends with comes from the compose environment
    assert "${env:INGEST_KEY}" in exporter["protocol"]["otlp"]["headers"]["authorization"]
    assert "INGEST_KEY" in gateway["environment"]


def test_compose_and_kubernetes_gateways_differ_only_in_the_collectors_name() -> None:
    compose = gateway_config(DEPLOY / "otel-gateway.yaml")
    kubernetes = gateway_config(K8S / "otel-gateway.yaml")
    name = kubernetes["exporters"]["loadbalancing"]["resolver"]["dns"]["hostname"]
    renamed = json.loads(json.dumps(kubernetes).replace(name, "collectors"))
    assert renamed == compose


def test_prometheus_finds_every_collector_and_sends_a_read_key() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    (job,) = config["scrape_configs"]
    services = compose_services(USER_ENV, ("monitoring", "gateway"))
    collector = services["collector"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == [collector["networks"]["default"]["aliases"][0]]
    assert sd["port"] == service_settings(collector).otlp_http_port
    assert job["metrics_path"] == "/metrics"
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", job["authorization"]["credentials_file"]} <= mounted


def test_the_scrape_configs_credentials_open_a_guarded_metrics_endpoint(settings: Any, store: Any) -> None:
    """Sent the way prometheus.yml's `authorization` sends it, a read key opens /metrics of a
    collector with sign-in on; without it, /metrics is refused."""
    job = load_yaml(DEPLOY / "prometheus.yml")["scrape_configs"][0]
    key = "prometheus-read-key-0123456789"
    guarded = settings.with_(auth="password", api_keys={key: "default"})
    with running_collector(guarded, store) as running:
        url = running.http_url + job["metrics_path"]
        refused = httpx.get(url)
        answered = httpx.get(url, headers={"Authorization": f"{job['authorization']['type']} {key}"})
    assert refused.status_code == 401
    assert answered.status_code == 200
    assert "tokentrail_spans_received_total" in answered.text


def test_clickhouse_backup_disk_is_on_its_own_volume() -> None:
    import xml.etree.ElementTree as ET

    clickhouse = compose_services(USER_ENV)["clickhouse"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in clickhouse["volumes"]}
    config_file = DEPLOY / mounts["/etc/clickhouse-server/config.d/backups.xml"]
    root = ET.parse(config_file).getroot()
    disk = root.find("storage_configuration/disks/backups")
    assert disk is not None
    assert root.findtext("backups/allowed_disk") == disk.tag
    path = disk.findtext("path", "").rstrip("/")
    assert mounts[path] in compose_file()["volumes"]


def test_compose_interpolation_matches_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$HOME", env) == "x d  d $HOME"
    with pytest.raises(KeyError, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)


def test_third_party_images_are_pinned_releases() -> None:
    compose = [s["image"] for s in compose_file()["services"].values() if "build" not in s]
    kubernetes = [
        c["image"] for w in workloads().values() for c in containers(w) if c["image"] != "tokentrail"
    ]
    operator = [
        c["image"]
        for _, doc in manifests(OPERATOR)
        for t in doc["spec"].get("templates", {}).get("podTemplates", [])
        for c in t["spec"]["containers"]
    ]
    images = compose + kubernetes + operator
    assert {i.split(":")[0] for i in images} >= {
        "clickhouse/clickhouse-server",
        "otel/opentelemetry-collector-contrib",
    }
    for image in images:
        tag = image.partition(":")[2]
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?", tag), f"{image} is not pinned to a release"
    clickhouse = {i.partition(":")[2] for i in images if i.startswith("clickhouse/")}
    assert all(tag.split(".")[0] in ("24", "25") for tag in clickhouse)
