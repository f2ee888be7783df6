"""Containers run as non-root users on read-only root filesystems.

Three layers of evidence:

* the Dockerfiles (static, no Docker): the run stage of each image ends as a
  numeric, non-zero ``USER uid:gid``, and nothing after it switches back;
* the rendered compose file (``docker compose config``, CLI only): the Django
  services keep that user, run ``read_only`` with every capability dropped and
  ``no-new-privileges``, and nothing anywhere is privileged or mounts the
  Docker socket; the services that start as root say which capabilities they
  need, and get no others;
* the running containers (an engine): ``docker compose run`` of web, ws and
  migrate reports uid/gid, the effective capabilities, NoNewPrivs, and that
  the root filesystem refuses writes while ``/tmp`` accepts them.

``test_compose_config.py`` checks the hardening block of every service too;
this module adds the user and the runtime view.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compose.support import (
    BUILD_TIMEOUT,
    COMPOSE_FILE,
    DOWN_TIMEOUT,
    ROOT,
    ComposeProject,
    clean_env,
    docker_status,
    requires_compose,
    requires_engine,
    run_command,
)

IMAGES = {"web": "Dockerfile.web", "ws": "Dockerfile.ws"}
# Services running the project's images (migrate and prune use the web image).
DJANGO_SERVICES = ("web", "ws", "migrate", "prune")
# Images whose entrypoints start as root and drop to their own user; the
# capabilities they get back, exactly as compose.yaml explains them.
ROOT_ENTRYPOINTS = {
    "db": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"},
    "proxy": {"CHOWN", "SETGID", "SETUID"},
}

# Run inside each container: who am I, what may I do, where may I write.
PROBE = """
import errno, json, os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
def writable(directory):
    path = os.path.join(directory, ".write-probe")
    try:
        with open(path, "w") as handle:
            handle.write("x")
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    os.remove(path)
    return "ok"
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
    "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "write": {d: writable(d) for d in ("/", "/app", "/opt/venv", "/etc", "/tmp")},
}))
"""


def final_stage(dockerfile: str) -> list[str]:
    """The instructions of the last build stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (ROOT / dockerfile).read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def image_user(dockerfile: str) -> tuple[int, int]:
    """``(uid, gid)`` the image runs as: its final stage's last ``USER``, which must be numeric."""
    users = [line.split(None, 1)[1] for line in final_stage(dockerfile) if line.upper().startswith("USER ")]
    assert users, f"{dockerfile}: the run stage has no USER, so it runs as root"
    match = re.fullmatch(r"(\d+):(\d+)", users[-1])
    assert match, f"{dockerfile}: USER {users[-1]!r} must be numeric uid:gid (Kubernetes runAsNonRoot checks)"
    return int(match[1]), int(match[2])


@pytest.mark.parametrize("dockerfile", IMAGES.values())
def test_images_run_as_a_numeric_non_root_user(dockerfile: str) -> None:
    uid, gid = image_user(dockerfile)
    assert uid != 0
    assert gid != 0
    stage = final_stage(dockerfile)
    last_user = max(i for i, line in enumerate(stage) if line.upper().startswith("USER "))
    after = [line.split(None, 1)[0].upper() for line in stage[last_user + 1 :]]
    # Only metadata follows the switch; nothing runs as root after it, nothing switches back.
    assert set(after) <= {"EXPOSE", "HEALTHCHECK", "CMD", "ENTRYPOINT", "LABEL", "STOPSIGNAL"}, after


def test_both_images_use_the_same_user() -> None:
    """web writes nothing ws cannot read and vice versa: one uid:gid for the project."""
    assert len({image_user(dockerfile) for dockerfile in IMAGES.values()}) == 1


def compose_config() -> dict[str, Any]:
    """compose.yaml rendered with no .env and no variables set."""
    command = ["docker", "compose", "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    command += ["--env-file", "/dev/null", "config", "--format", "json"]
    config: dict[str, Any] = json.loads(run_command(command, env=clean_env(), timeout=60).stdout)
    return config


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The rendered services."""
    if not docker_status().compose:
        # Only reached in CI: elsewhere requires_compose() has skipped the test.
        pytest.fail(f"CI=true but no Docker Compose v2: {docker_status().detail}")
    rendered: dict[str, Any] = compose_config()["services"]
    return rendered


@requires_compose()
@pytest.mark.parametrize("name", DJANGO_SERVICES)
def test_django_services_are_read_only_unprivileged_and_keep_the_image_user(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert not service.get("cap_add")
    assert "no-new-privileges:true" in service["security_opt"]
    assert not service.get("privileged")
    # No override of the image's USER (an override would have to be non-root too).
    assert service.get("user") in (None, "")
    dockerfile = service["build"]["dockerfile"]
    assert dockerfile in IMAGES.values()
    assert image_user(dockerfile)[0] != 0


@requires_compose()
def test_no_service_is_privileged_or_holds_the_docker_socket(services: dict[str, Any]) -> None:
    for name, service in services.items():
        assert not service.get("privileged"), name
        assert service.get("pid") != "host", name
        assert service.get("network_mode") != "host", name
        assert service.get("ipc") != "host", name
        assert service.get("read_only") is True, name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        for volume in service.get("volumes", []):
            assert "docker.sock" not in str(volume.get("source", "")), name
            if volume["type"] == "bind":
                assert volume.get("read_only") is True, f"{name}: bind mount {volume['source']} must be read-only"


@requires_compose()
def test_services_starting_as_root_get_back_only_what_their_entrypoints_need(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ROOT_ENTRYPOINTS:
            assert service["cap_drop"] == ["ALL"], name
            assert set(service["cap_add"]) == ROOT_ENTRYPOINTS[name], name
        elif name not in DJANGO_SERVICES:
            # Everything else (redis) starts as a named non-root user with no capability at all.
            assert service.get("user") not in (None, "", "root", "0", "0:0"), name
            assert not service.get("cap_add"), name


@pytest.fixture(scope="module")
def probe_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """A throwaway compose project for one-off containers; images built (cached), always taken down."""
    if not docker_status().engine:
        # Only reached in CI: elsewhere requires_engine() has skipped the test.
        pytest.fail(f"CI=true but no usable Docker engine: {docker_status().detail}")
    env_file = tmp_path_factory.mktemp("container-security") / "test.env"
    env_file.write_text("")
    project = ComposeProject(
        name=f"wssec{uuid.uuid4().hex[:10]}", http_port=0, env_file=env_file, env=clean_env(DOCKER_BUILDKIT="1")
    )
    try:
        project.run("build", *DJANGO_SERVICES, timeout=BUILD_TIMEOUT)
        yield project
    finally:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=DOWN_TIMEOUT, check=False)


def run_probe(project: ComposeProject, service: str) -> dict[str, Any]:
    """PROBE's report from a one-off container of ``service`` with compose's settings (no dependencies)."""
    result = project.run("run", "--rm", "--no-deps", "--entrypoint", "python", service, "-c", PROBE, timeout=120)
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@requires_engine()
@pytest.mark.parametrize("service", DJANGO_SERVICES)
def test_running_containers_are_non_root_capability_free_and_read_only(
    probe_project: ComposeProject, service: str
) -> None:
    report = run_probe(probe_project, service)
    dockerfile = IMAGES["ws" if service == "ws" else "web"]
    assert (report["uid"], report["gid"]) == image_user(dockerfile)
    assert report["euid"] != 0
    assert int(report["cap_eff"], 16) == 0, report
    assert int(report["cap_bnd"], 16) == 0, report
    assert report["no_new_privs"] == "1"
    writes = report["write"]
    assert writes.pop("/tmp") == "ok"  # noqa: S108 - a container path, not a temp file here
    # EROFS: the read-only root filesystem refused, whatever the file permissions say.
    assert set(writes.values()) == {"EROFS"}, writes


def test_probe_script_is_valid_python() -> None:
    compile(PROBE, "<probe>", "exec")
