"""The Kubernetes manifests (deploy/k8s) are valid and agree with the code.

Every manifest is validated against the bundled JSON schema of one pinned
Kubernetes version (kubernetes-validate, strict: unknown fields fail). Then
the structure is checked against what the services really do, read from the
code and the Dockerfiles rather than repeated here:

* probe paths: ``web_service.health`` and ``ws_service.http``;
* ports: the ws launcher's ``ServerOptions.from_env()`` evaluated with each
  container's environment (image ENV, then ConfigMap and Secret, then
  ``env``), Dockerfile.web's CMD, the Dockerfiles' EXPOSE lines;
* environment names: the same readers tests/test_docs.py looks for;
* the ws drain: terminationGracePeriodSeconds > preStop + WS_DRAIN_TIMEOUT + margin.

``kubectl kustomize`` (local, no cluster) renders base and overlays when
kubectl is installed; without it those two tests skip and the per-file checks
remain.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate.utils as kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

import web_service.health
import ws_service.http

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = K8S / "overlays"
KUSTOMIZATION = "kustomization.yaml"

# The pinned schema: kubernetes-validate's bundled v1.37.0 (works offline).
KUBERNETES_VERSION = "1.37.0"

# The same readers tests/test_docs.py collects, with the reader kind kept.
READER = re.compile(r'env_(str|required|bool|int|float|list)\(\s*"([A-Z0-9_]+)"')
PACKAGES = ("shared", "web_service", "ws_service")

# What the base Secret holds (URLs carry passwords); never in the ConfigMap,
# nor is anything else that looks like a credential.
SECRET_NAMES = frozenset({"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"})
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN")
CONFIGMAP = "django-ws-split-env"
SECRET = "django-ws-split-secrets"
WEB = "django-ws-split-web"
WS = "django-ws-split-ws"
MIGRATE = "django-ws-split-migrate"
PRUNE = "django-ws-split-prune"
# The launcher's default when the ConfigMap leaves WS_DRAIN_TIMEOUT out comes
# from the code too (ServerOptions.from_env); this margin is ours.
DRAIN_MARGIN_SECONDS = 5
# Only to run the settings module with the base Secret, whose key is empty on purpose.
PLACEHOLDER_SECRET_KEY = "test-only-placeholder-key-for-settings-parsing-0123456789"


Manifest = dict[str, Any]


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for document in documents:
        assert isinstance(document, dict), f"{path}: every YAML document is a mapping"
    return documents


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.rglob("*.yaml") if path.name != KUSTOMIZATION)


def kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob(KUSTOMIZATION))


@cache
def base_resources() -> dict[tuple[str, str], Manifest]:
    """The base's resources by (kind, name), from the files its kustomization lists."""
    kustomization = load_documents(BASE / KUSTOMIZATION)[0]
    resources: dict[tuple[str, str], Manifest] = {}
    for entry in kustomization["resources"]:
        for document in load_documents(BASE / entry):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in resources, f"{key} is defined twice"
            resources[key] = document
    return resources


def resource(kind: str, name: str) -> Manifest:
    found = base_resources().get((kind, name))
    assert found is not None, f"deploy/k8s/base has no {kind} {name}"
    return found


def of_kind(kind: str) -> list[Manifest]:
    return [document for (found, _), document in base_resources().items() if found == kind]


def workloads() -> list[Manifest]:
    return of_kind("Deployment") + of_kind("Job") + of_kind("CronJob")


def pod_spec(workload: Manifest) -> Manifest:
    """The pod template's spec (a CronJob's is inside its jobTemplate)."""
    owner = workload["spec"]["jobTemplate"] if workload["kind"] == "CronJob" else workload
    spec: Manifest = owner["spec"]["template"]["spec"]
    return spec


def only_container(workload: Manifest) -> Manifest:
    (container,) = pod_spec(workload)["containers"]
    assert isinstance(container, dict)
    return container


def named_ports(container: Manifest) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


# ---------------------------------------------------------------------------
# What the code and the Dockerfiles say
# ---------------------------------------------------------------------------


@cache
def reader_kinds() -> dict[str, frozenset[str]]:
    """Every variable the code reads, with how it reads it (str, int, ...)."""
    kinds: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for kind, name in READER.findall(path.read_text()):
                kinds.setdefault(name, set()).add(kind)
    return {name: frozenset(found) for name, found in kinds.items()}


@dataclass(frozen=True)
class Dockerfile:
    env: dict[str, str]
    expose: tuple[int, ...]
    cmd: list[str]
    user: str


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


@cache
def dockerfile(name: str) -> Dockerfile:
    """The run stage (after the last FROM) of a Dockerfile: ENV, EXPOSE, CMD, USER."""
    lines = list(_logical_lines((ROOT / name).read_text()))
    last_from = max(index for index, line in enumerate(lines) if line.upper().startswith("FROM "))
    env: dict[str, str] = {}
    expose: list[int] = []
    cmd: list[str] = []
    user = ""
    for line in lines[last_from + 1 :]:
        instruction, _, rest = line.partition(" ")
        match instruction.upper():
            case "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    env[key] = value
            case "EXPOSE":
                expose.extend(int(port.split("/")[0]) for port in rest.split())
            case "CMD":
                cmd = json.loads(rest)
            case "USER":
                user = rest.strip()
    return Dockerfile(env=env, expose=tuple(expose), cmd=cmd, user=user)


def image_dockerfile(image: str) -> str:
    """The Dockerfile an image name in the manifests is built from."""
    return {"django-ws-split-web": "Dockerfile.web", "django-ws-split-ws": "Dockerfile.ws"}[image]


def container_env(workload: Manifest) -> dict[str, str]:
    """The environment Kubernetes gives the container: image ENV < envFrom (in order) < env."""
    container = only_container(workload)
    env = dict(dockerfile(image_dockerfile(container["image"])).env)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(resource("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            env.update(resource("Secret", source["secretRef"]["name"])["stringData"])
    for variable in container.get("env", []):
        env[variable["name"]] = variable["value"]
    return env


@cache
def _effective(name: str) -> dict[str, Any]:
    """The settings module and the ws launcher's options, loaded with the container's environment.

    A subprocess, so that nothing of this test process (pytest-env's values,
    settings already loaded) leaks in. Loading the settings also proves every
    ConfigMap value parses and is within its bounds.
    """
    (workload,) = [w for w in workloads() if w["metadata"]["name"] == name]
    env = {key: value for key, value in os.environ.items() if key not in reader_kinds()}
    # The image's PATH refers to its /opt/venv; this interpreter is used instead.
    env.update({key: value for key, value in container_env(workload).items() if key != "PATH"})
    if not env.get("DJANGO_SECRET_KEY"):
        env["DJANGO_SECRET_KEY"] = PLACEHOLDER_SECRET_KEY
    script = (
        "import dataclasses, json, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        "from ws_service.launcher.options import ServerOptions\n"
        "options = dataclasses.asdict(ServerOptions.from_env())\n"
        "print(json.dumps({'options': options, 'debug': settings.DEBUG,"
        " 'health_check_timeout': settings.HEALTH_CHECK_TIMEOUT}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{name}: the settings refuse its environment:\n{result.stderr[-2000:]}"
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def ws_options() -> dict[str, Any]:
    options: dict[str, Any] = _effective(WS)["options"]
    return options


def web_port() -> int:
    """The port the web image's command listens on, with the web container's environment.

    Either Daphne's CLI (``daphne ... --port N``) or the web launcher
    (``python -m web_service``: WEB_PORT, its default read from the code).
    """
    cmd = dockerfile("Dockerfile.web").cmd
    if "--port" in cmd:
        return int(cmd[cmd.index("--port") + 1])
    assert cmd[-2:] == ["-m", "web_service"], f"unknown web command {cmd}"
    env = container_env(resource("Deployment", WEB))
    if "WEB_PORT" in env:
        return int(env["WEB_PORT"])
    launcher = (ROOT / "web_service" / "__main__.py").read_text()
    default = re.search(r'env_int\(\s*"WEB_PORT",\s*(\d+)', launcher)
    assert default is not None, "web_service/__main__.py no longer reads WEB_PORT"
    return int(default.group(1))


def real_http_ports() -> dict[str, int]:
    return {WEB: web_port(), WS: int(ws_options()["port"])}


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# ---------------------------------------------------------------------------
# Schema validation and kustomize
# ---------------------------------------------------------------------------


def validate(document: Manifest, where: str) -> None:
    """Strict validation against the pinned schema; a short message on failure."""
    failure = None
    try:
        validated = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(item) for item in error.path)
        failure = f"{where}: {document['kind']}/{document['metadata']['name']}: {path}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        failure = f"{where}: {error.message}"
    if failure is not None:
        pytest.fail(failure[:2000])
    # The schema really used is the pinned one, not an older fallback.
    assert validated == kubernetes_validate.major_minor(KUBERNETES_VERSION)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: str(path.relative_to(K8S)))
def test_every_manifest_validates_against_the_pinned_schema(path: Path) -> None:
    documents = load_documents(path)
    assert documents, f"{path} holds no manifest"
    for document in documents:
        validate(document, str(path.relative_to(ROOT)))


def test_the_pinned_schema_is_bundled_and_strict_validation_catches_typos() -> None:
    assert KUBERNETES_VERSION in kubernetes_validate.all_versions()
    deployment = json.loads(json.dumps(resource("Deployment", WS)))
    only_container(deployment)["readinessProbe"]["httpGett"] = {"path": "/readyz", "port": "http"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda path: str(path.relative_to(K8S)))
def test_each_kustomization_lists_every_file_of_its_directory(directory: Path) -> None:
    kustomization = load_documents(directory / KUSTOMIZATION)[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization.get("resources", [])
    files = {entry for entry in listed if (directory / entry).is_file()}
    for entry in set(listed) - files:
        assert (directory / entry / KUSTOMIZATION).is_file(), (
            f"{directory}: {entry} is neither a file nor a kustomization"
        )
    assert files == {path.name for path in directory.glob("*.yaml") if path.name != KUSTOMIZATION}
    if directory != BASE:
        assert any((directory / entry).resolve() == BASE for entry in listed), "an overlay builds on the base"


def test_the_base_sets_every_image_the_manifests_use() -> None:
    kustomization = load_documents(BASE / KUSTOMIZATION)[0]
    names = {image["name"] for image in kustomization["images"]}
    used = {only_container(workload)["image"] for workload in workloads()}
    assert used == names == {"django-ws-split-web", "django-ws-split-ws"}


def kustomize_build(directory: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl not found: install it (Debian: apt-get install kubectl); "
            "`kubectl kustomize` renders locally, no cluster needed",
            pytrace=False,
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def test_the_rendered_base_validates() -> None:
    rendered = kustomize_build(BASE)
    for document in rendered:
        validate(document, "kubectl kustomize deploy/k8s/base")
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in rendered} == set(base_resources())
    for document in rendered:
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "django-ws-split"


def test_the_rendered_example_overlay_validates_and_replaces_the_secret(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    overlay = copy / "overlays" / "example"
    example = (overlay / "secrets.env.example").read_text()
    (overlay / "secrets.env").write_text(example.replace("DJANGO_SECRET_KEY=\n", "DJANGO_SECRET_KEY=overlay-key\n"))
    rendered = kustomize_build(overlay)
    for document in rendered:
        validate(document, "kubectl kustomize deploy/k8s/overlays/example")
    (secret,) = [doc for doc in rendered if doc["kind"] == "Secret"]
    assert "stringData" not in secret, "the placeholders of the base are gone"
    assert set(secret["data"]) == SECRET_NAMES
    images = {
        c["image"] for doc in rendered if doc["kind"] in ("Deployment", "Job") for c in pod_spec(doc)["containers"]
    }
    assert all(image.startswith("registry.example.com/") for image in images)


# ---------------------------------------------------------------------------
# One settings environment: ConfigMap + Secret, names the code reads
# ---------------------------------------------------------------------------


def test_configmap_and_secret_hold_only_variables_the_code_reads() -> None:
    read = reader_kinds()
    assert len(read) > 20  # the pattern still matches the code
    configmap = resource("ConfigMap", CONFIGMAP)["data"]
    secret = resource("Secret", SECRET)["stringData"]
    assert "data" not in resource("Secret", SECRET)
    assert set(configmap) - set(read) == set(), "ConfigMap keys the code never reads"
    assert set(secret) - set(read) == set(), "Secret keys the code never reads"
    assert set(secret) == SECRET_NAMES
    assert not SECRET_NAMES & set(configmap), "secret values belong in the Secret"
    assert not [name for name in configmap if CREDENTIAL.search(name)], "credentials belong in the Secret"
    assert all(isinstance(value, str) for value in (*configmap.values(), *secret.values()))
    for workload in workloads():
        names = {variable["name"] for variable in only_container(workload).get("env", [])}
        assert names <= set(read), f"{workload['metadata']['name']}: env names the code never reads"


def test_every_workload_gets_the_one_settings_environment() -> None:
    for workload in workloads():
        sources = only_container(workload)["envFrom"]
        assert sources == [{"configMapRef": {"name": CONFIGMAP}}, {"secretRef": {"name": SECRET}}]


def test_the_placeholders_fail_closed() -> None:
    # With DJANGO_DEBUG=0 an empty key stops every pod at start-up.
    assert resource("ConfigMap", CONFIGMAP)["data"]["DJANGO_DEBUG"] == "0"
    assert resource("Secret", SECRET)["stringData"]["DJANGO_SECRET_KEY"] == ""
    for example in OVERLAYS.rglob("secrets.env.example"):
        assert "DJANGO_SECRET_KEY=\n" in example.read_text()
        assert (example.parent / ".gitignore").read_text().split() == ["secrets.env"]


@pytest.mark.parametrize("name", [WEB, WS, MIGRATE, PRUNE])
def test_the_settings_accept_each_containers_environment(name: str) -> None:
    assert _effective(name)["debug"] is False


def test_the_manifests_run_in_production_mode_which_refuses_development_secrets() -> None:
    """DJANGO_ENV=production: compose's published development key would stop every pod."""
    assert resource("ConfigMap", CONFIGMAP)["data"]["DJANGO_ENV"] == "production"
    env = {key: value for key, value in os.environ.items() if key not in reader_kinds()}
    env.update({key: value for key, value in container_env(resource("Deployment", WEB)).items() if key != "PATH"})
    env["DJANGO_SECRET_KEY"] = "insecure-dev-key-change-me"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is a published development key" in result.stderr


def test_messages_are_pruned_on_a_schedule() -> None:
    (cronjob,) = of_kind("CronJob")
    assert cronjob["metadata"]["name"] == PRUNE
    container = only_container(cronjob)
    assert container["image"] == "django-ws-split-web"
    command = container["command"]
    assert command[:3] == ["python", "-m", "django"]
    assert (ROOT / "shared" / "management" / "commands" / f"{command[3]}.py").is_file()
    assert command[3] == "prune_messages"
    assert "--every" not in command, "one round per Job: the CronJob is the schedule"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    assert pod_spec(cronjob)["restartPolicy"] == "Never"


def test_ws_workers_match_the_cpu_limit() -> None:
    limit = cpu_cores(only_container(resource("Deployment", WS))["resources"]["limits"]["cpu"])
    assert ws_options()["workers"] == max(1, int(limit))


# ---------------------------------------------------------------------------
# Probes, ports, drain
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "module"), [(WEB, web_service.health), (WS, ws_service.http)], ids=["web", "ws"])
def test_probes_use_the_services_real_paths_and_ports(name: str, module: Any) -> None:
    container = only_container(resource("Deployment", name))
    ports = named_ports(container)
    expected = {
        "livenessProbe": module.LIVENESS_PATH,
        "readinessProbe": module.READINESS_PATH,
        "startupProbe": module.LIVENESS_PATH,
    }
    for probe_name in ("livenessProbe", "readinessProbe"):
        assert probe_name in container, f"{name} has no {probe_name}"
    for probe_name, path in expected.items():
        if probe_name not in container:
            continue
        if probe_name == "readinessProbe":
            # Readiness runs its checks concurrently, each bounded by HEALTH_CHECK_TIMEOUT.
            assert container[probe_name]["timeoutSeconds"] > _effective(name)["health_check_timeout"]
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, f"{name} {probe_name}"
        port = probe["port"]
        assert ports.get(port, port) == real_http_ports()[name], f"{name} {probe_name} port"


@pytest.mark.parametrize(("name", "dockerfile_name"), [(WEB, "Dockerfile.web"), (WS, "Dockerfile.ws")])
def test_container_ports_are_the_ones_the_services_listen_on(name: str, dockerfile_name: str) -> None:
    workload = resource("Deployment", name)
    ports = named_ports(only_container(workload))
    assert set(ports) == {"http", "metrics"}
    assert ports["http"] == real_http_ports()[name]
    assert ports["http"] in dockerfile(dockerfile_name).expose
    metrics_port = int(container_env(workload)["METRICS_PORT"])
    assert ports["metrics"] == metrics_port == 9100
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_ws_launcher_sees_the_ports_and_drain_of_the_configmap() -> None:
    options = ws_options()
    assert options["server"] in ("daphne", "uvicorn")
    assert options["metrics_port"] == named_ports(only_container(resource("Deployment", WS)))["metrics"]
    configmap = resource("ConfigMap", CONFIGMAP)["data"]
    if "WS_DRAIN_TIMEOUT" in configmap:
        assert options["drain_timeout"] == float(configmap["WS_DRAIN_TIMEOUT"])


def test_the_ws_command_is_the_images_command() -> None:
    container = only_container(resource("Deployment", WS))
    assert container.get("command", dockerfile("Dockerfile.ws").cmd) == dockerfile("Dockerfile.ws").cmd
    assert "command" not in only_container(resource("Deployment", WEB)), "web runs Dockerfile.web's CMD"


def pre_stop_seconds(container: Manifest) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


def test_ws_grace_period_covers_pre_stop_drain_and_margin() -> None:
    deployment = resource("Deployment", WS)
    pre_stop = pre_stop_seconds(only_container(deployment))
    drain = float(ws_options()["drain_timeout"])  # the ConfigMap's value, else the code default
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert pre_stop >= 3, "endpoints need a few seconds to drop the pod before SIGTERM"
    assert grace > pre_stop + drain + DRAIN_MARGIN_SECONDS, (
        f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + WS_DRAIN_TIMEOUT {drain} + margin"
    )


def test_web_waits_for_endpoint_removal_too() -> None:
    deployment = resource("Deployment", WEB)
    assert 0 < pre_stop_seconds(only_container(deployment)) < pod_spec(deployment)["terminationGracePeriodSeconds"]


def test_rolling_updates_never_drop_below_capacity() -> None:
    for name in (WEB, WS):
        rolling = resource("Deployment", name)["spec"]["strategy"]["rollingUpdate"]
        assert rolling["maxUnavailable"] == 0


# ---------------------------------------------------------------------------
# Services, Ingress, PDB, HPA
# ---------------------------------------------------------------------------


def deployment_for(service: Manifest) -> Manifest:
    selector = service["spec"]["selector"]
    matches = [
        deployment
        for deployment in of_kind("Deployment")
        if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} Deployments"
    return matches[0]


def test_services_select_their_pods_and_target_real_container_ports() -> None:
    for service in of_kind("Service"):
        deployment = deployment_for(service)
        assert deployment["metadata"]["name"] == service["metadata"]["name"]
        ports = named_ports(only_container(deployment))
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{service['metadata']['name']}: {target}"


def test_deployment_selectors_match_their_pod_labels() -> None:
    for deployment in of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def container_port_behind(backend: Manifest) -> tuple[str | None, int, str]:
    """(container port name, number, Deployment) that an Ingress backend reaches."""
    service = resource("Service", backend["service"]["name"])
    wanted = backend["service"]["port"]
    (port,) = [
        p for p in service["spec"]["ports"] if p.get("name") == wanted.get("name") or p["port"] == wanted.get("number")
    ]
    deployment = deployment_for(service)
    ports = named_ports(only_container(deployment))
    target = port["targetPort"]
    if isinstance(target, str):
        return target, ports[target], deployment["metadata"]["name"]
    names = [name for name, number in ports.items() if number == target]
    return (names[0] if names else None), target, deployment["metadata"]["name"]


def test_ingress_routes_ws_to_ws_and_the_rest_to_web_never_to_metrics() -> None:
    (ingress,) = of_kind("Ingress")
    routes: dict[str, tuple[str | None, int, str]] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["pathType"] == "Prefix"
            routes[path["path"]] = container_port_behind(path["backend"])
    assert set(routes) == {"/ws/", "/"}
    assert routes["/ws/"] == ("http", real_http_ports()[WS], WS)
    assert routes["/"] == ("http", real_http_ports()[WEB], WEB)
    metrics_port = int(resource("ConfigMap", CONFIGMAP)["data"]["METRICS_PORT"])
    for name, number, _ in routes.values():
        assert name != "metrics"
        assert number != metrics_port
    assert "metrics" not in json.dumps(ingress["spec"])


def test_ingress_keeps_websockets_open_and_has_tls() -> None:
    (ingress,) = of_kind("Ingress")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"])
        assert seconds >= 3600 > ws_options()["ping_interval"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["secretName"]
    assert tls["hosts"] == [rule["host"] for rule in ingress["spec"]["rules"]]


def test_ws_has_a_disruption_budget_and_an_autoscaler() -> None:
    deployment = resource("Deployment", WS)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [pdb for pdb in of_kind("PodDisruptionBudget") if pdb["metadata"]["name"] == WS]
    (budget,) = budgets
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    (autoscaler,) = of_kind("HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", WS)
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in autoscaler["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    # CPU utilisation is measured against requests: the container must have one.
    assert only_container(deployment)["resources"]["requests"]["cpu"]


def test_every_budget_selects_exactly_one_deployment() -> None:
    for budget in of_kind("PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        matching = [
            d for d in of_kind("Deployment") if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, budget["metadata"]["name"]


# ---------------------------------------------------------------------------
# Migration Job, hardening, resources
# ---------------------------------------------------------------------------


def test_the_migration_job_runs_composes_migrate_command_with_the_web_image() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    job = resource("Job", MIGRATE)
    container = only_container(job)
    assert container["command"] == compose["services"]["migrate"]["command"]
    assert container["image"] == only_container(resource("Deployment", WEB))["image"]
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["activeDeadlineSeconds"] > 0


@pytest.mark.parametrize("workload", workloads(), ids=lambda workload: workload["metadata"]["name"])
def test_pods_run_hardened_as_the_images_user(workload: Manifest) -> None:
    spec = pod_spec(workload)
    container = only_container(workload)
    uid, _, gid = dockerfile(image_dockerfile(container["image"])).user.partition(":")
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == int(uid)
    assert pod_security["runAsGroup"] == int(gid or uid)
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # /tmp is writable (compose: tmpfs /tmp) through an emptyDir.
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108 - the mount path checked, not a temp file
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


@pytest.mark.parametrize("workload", workloads(), ids=lambda workload: workload["metadata"]["name"])
def test_every_container_has_requests_and_limits(workload: Manifest) -> None:
    resources = only_container(workload)["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) >= {"cpu", "memory"}, f"{workload['metadata']['name']} {bound}"
    assert cpu_cores(resources["requests"]["cpu"]) <= cpu_cores(resources["limits"]["cpu"])
