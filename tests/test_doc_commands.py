"""Every command of the README and docs/ is run by a test.

Commands are the lines of ``sh`` blocks (backslash continuations joined,
``# comments`` dropped). ``COMMANDS`` maps each to the tests that run it and
says how; a command no entry matches, an entry no command matches, or a test
that does not exist fails here. Blocks marked ``<!-- recipe: NAME -->``
(docs/clients.md) are run as written by tests/clients/test_recipes.py, which
checks its own coverage; a line of another page that repeats a recipe line
verbatim counts as run by that module. Some commands here are run for real
(``scripts/test``, the Kubernetes block's offline
part, the bench command lines through the harness's own parser).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.main import _parser as bench_parser
from bench.memprofile import _parser as memprofile_parser
from bench.profile import _parser as profile_parser
from tests.shared.test_deploy_check import production_env
from tests.support.recipes import recipes

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "wsclient" / "README.md",
    ROOT / "clients" / "js" / "README.md",
)
BLOCK = re.compile(r"(<!-- recipe: [a-z-]+ -->\n)?```sh\n(.*?)\n```", re.DOTALL)
THIS = "tests/test_doc_commands.py"
COMPOSE = "tests/compose/test_documented_commands.py"
# Added to each documented scripts/test line: collect one module only (the whole run is CI's).
COLLECT_ONLY = ("tests/ws_service/test_origin.py", "--collect-only", "-q", "-p", "no:cacheprovider")


@dataclass(frozen=True)
class Exercised:
    """Commands matching ``pattern`` (the whole line) are run by ``tests`` (``path::function``), ``how``."""

    pattern: str
    tests: tuple[str, ...]
    how: str


COMMANDS = (
    Exercised(r"docker compose up --build -d --wait", (f"{COMPOSE}::compose_stack",), "as written"),
    Exercised(
        r"docker compose exec web python -m django create_demo_users", (f"{COMPOSE}::demo_passwords",), "as written"
    ),
    Exercised(
        r"export DJANGO_SUPERUSER_PASSWORD=.*"
        r"|docker compose exec -e DJANGO_SUPERUSER_PASSWORD .* createsuperuser --noinput",
        (f"{COMPOSE}::test_the_superuser_block_of_the_operations_page",),
        "the block as written",
    ),
    Exercised(
        r"docker compose exec web python -m django ws_push .*"
        r"|docker compose up -d --wait --scale ws=3|docker compose down -v",
        (f"{COMPOSE}::test_push_scale_and_stop_commands_of_the_operations_page_come_last",),
        "as written, in order",
    ),
    Exercised(
        r"scripts/test --check",
        ("tests/test_setup_script.py::test_check_finds_nothing_missing_when_every_tool_is_there",),
        "as written, on a PATH with every tool",
    ),
    Exercised(
        r"cp \.env\.example \.env|docker compose config",
        (
            "tests/compose/test_compose_config.py::test_env_example_documents_the_defaults",
            "tests/compose/test_compose_config.py::test_compose_reads_dot_env_from_the_project_directory",
        ),
        "equivalent: .env.example as the env file, then a .env in the project directory, through compose config",
    ),
    Exercised(
        r"HTTP_PORT=8100 docker compose -p other (up --build -d --wait|ps)|docker compose -p other down -v",
        (
            "tests/compose/test_compose_e2e.py::test_a_second_project_runs_alongside_with_images_and_networks_of_its_own",
            "tests/compose/test_compose_e2e.py::test_each_projects_down_leaves_the_other_running",
        ),
        "equivalent: a second project under its own name and port, then its down",
    ),
    Exercised(
        r"docker compose -f compose\.yaml -f compose\.dev\.yaml (up --build -d --wait|logs -f web ws)",
        ("tests/compose/test_compose_e2e.py::test_an_edit_is_live_in_both_services_without_a_rebuild",),
        "equivalent: the dev_project fixture's up with both files (logs -f follows forever: not run)",
    ),
    Exercised(
        r"scripts/test(?! --check)( .*)?",
        (f"{THIS}::test_scripts_test_hands_its_arguments_to_pytest",),
        "in a fresh clone, the documented arguments plus COLLECT_ONLY (the whole run: .ci/run)",
    ),
    Exercised(
        r"\.venv/bin/ruff check \. && \.venv/bin/ruff format --check \. && DJANGO_DEBUG=1 \.venv/bin/mypy \.",
        (
            "tests/test_code_quality.py::test_ruff_lint",
            "tests/test_code_quality.py::test_ruff_format",
            "tests/test_code_quality.py::test_mypy_strict",
        ),
        "the same three tools with the same arguments",
    ),
    Exercised(
        r"\.venv/bin/python -m bench( .*)?",
        (
            f"{THIS}::test_bench_command_lines_are_accepted_by_the_harness",
            "tests/bench/test_bench_smoke.py::test_quickest_run_measures_every_configuration_and_figure",
        ),
        "every line through the harness's parser; --smoke --reps 1 run for real",
    ),
    Exercised(
        r"(DJANGO|POSTGRES)_[A-Z_]+=\S+",
        (
            f"{THIS}::test_the_production_checklist_is_the_environment_the_deploy_check_tests",
            "tests/shared/test_deploy_check.py::test_production_settings_pass_check_deploy_without_warnings",
        ),
        "the same names, passing check --deploy",
    ),
    Exercised(
        r"cp -r deploy/k8s/overlays/example deploy/k8s/overlays/prod|cp deploy/k8s/.*secrets\.env|"
        r"O=deploy/k8s/overlays/prod NS=\S+|kubectl kustomize \$O",
        (f"{THIS}::test_the_kubernetes_deploy_block",),
        "as written, in a copy of deploy/",
    ),
    Exercised(
        r"kubectl -n \$NS delete job \S+ --ignore-not-found|kubectl apply -k \$O( -l .*)?|kubectl -n \$NS wait .*",
        (f"{THIS}::test_the_kubernetes_deploy_block",),
        "need a cluster: checked offline that the selector, namespace and Job name fit the rendered overlay",
    ),
    Exercised(
        r"cd clients/js && npm ci|WS_URL=… WEB_URL=… TEST_USERS='\[…\]' node --test test/",
        ("tests/clients/test_js_client.py::test_js_client_node_tests_pass_against_the_live_services",),
        "npm ci in clients/js, node --test test/ with those variables",
    ),
)


def _commands() -> list[tuple[str, str]]:
    """(page, command) for every command line outside recipe blocks."""
    found = []
    for page in PAGES:
        for marker, block in BLOCK.findall(page.read_text()):
            if marker:
                continue
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+", " ", re.split(r"\s+#\s", line.strip())[0]).strip()
                if command and not command.startswith("#"):
                    found.append((str(page.relative_to(ROOT)), command))
    return found


def _recipe_lines() -> set[str]:
    return {
        re.sub(r"\s+", " ", line).strip()
        for text in recipes().values()
        for line in text.replace("\\\n", " ").splitlines()
    }


def test_every_documented_command_is_run_by_a_test() -> None:
    recipe_lines = _recipe_lines()
    unmapped, ambiguous = [], []
    used: set[str] = set()
    for page, command in _commands():
        if command in recipe_lines:
            continue
        matches = [entry for entry in COMMANDS if re.fullmatch(entry.pattern, command)]
        if not matches:
            unmapped.append(f"{page}: {command}")
        elif len(matches) > 1:
            ambiguous.append(f"{page}: {command}")
        used.update(entry.pattern for entry in matches)
    assert not unmapped, f"no test runs these; add one and an entry to COMMANDS: {unmapped}"
    assert not ambiguous, ambiguous
    stale = [entry.pattern for entry in COMMANDS if entry.pattern not in used]
    assert not stale, f"entries of COMMANDS that match no documented command: {stale}"


def test_the_wsclient_readme_runs_the_tested_recipes() -> None:
    page = (ROOT / "wsclient" / "README.md").read_text()
    commands = [command for name, command in _commands() if name == "wsclient/README.md"]
    assert commands, "wsclient/README.md shows no runnable commands"
    assert set(commands) <= _recipe_lines(), "wsclient/README.md's commands must be docs/clients.md recipe lines"
    assert "8001" not in page, "compose publishes only the proxy (8000)"


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda entry: entry.pattern[:40])
def test_each_named_test_exists(entry: Exercised) -> None:
    for node in entry.tests:
        path, _, function = node.partition("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {function}\(", source, flags=re.MULTILINE), f"{node} does not exist"


def _documented(pattern: str) -> list[str]:
    return [command for _, command in _commands() if re.fullmatch(pattern, command)]


@pytest.mark.slow
def test_scripts_test_hands_its_arguments_to_pytest(tmp_path: Path) -> None:
    """Each documented ``scripts/test`` line in a fresh clone, collecting only.

    A clone of its own: ``uv sync`` must never touch the ``.venv`` this run uses.
    The clone gets ``.tools`` (the bootstrapped uv) from this checkout.
    """
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    if (ROOT / ".tools").is_dir():
        # The pinned uv that scripts/test bootstraps, taken from this checkout (bootstrapping it means pip and
        # PyPI); uv's own cache then makes the clone's .venv in seconds.
        shutil.copytree(ROOT / ".tools", clone / ".tools", symlinks=True)
    env = {name: value for name, value in os.environ.items() if name not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if part != venv_bin)
    for command in _documented(r"scripts/test(?! --check)( .*)?"):
        arguments = shlex.split(command)[1:]
        result = subprocess.run(
            [str(clone / "scripts" / "test"), *arguments, *COLLECT_ONLY],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
        collected = [line for line in result.stdout.splitlines() if "::" in line]
        assert collected, result.stdout[-2000:]
        if "-k" in arguments:
            keyword = arguments[arguments.index("-k") + 1]
            assert all(keyword in line.lower() for line in collected), collected[:5]


def test_bench_command_lines_are_accepted_by_the_harness() -> None:
    lines = _documented(r"\.venv/bin/python -m bench( .*)?")
    assert len(lines) >= 5
    for command in lines:
        arguments = shlex.split(command)[3:]
        if arguments[:1] == ["profile"]:
            profile_parser().parse_args(arguments[1:])
        elif arguments[:1] == ["memprofile"]:
            memprofile_parser().parse_args(arguments[1:])
        else:
            bench_parser().parse_args(arguments)


def test_the_production_checklist_is_the_environment_the_deploy_check_tests() -> None:
    documented = {command.split("=", 1)[0] for command in _documented(r"(DJANGO|POSTGRES)_[A-Z_]+=\S+")}
    tested = {name for name in production_env() if name.startswith("DJANGO_")} - {"DJANGO_SETTINGS_MODULE"}
    # POSTGRES_PASSWORD is compose's (it goes into DATABASE_URL), and the deploy check has no database;
    # DJANGO_ENV=production is the settings' own default, which the deploy check runs with.
    assert documented - {"POSTGRES_PASSWORD", "DJANGO_ENV"} == tested


def _selected(selector: str, labels: dict[str, str]) -> bool:
    """A ``key in (a,b)`` label selector, the only form the page uses."""
    match = re.fullmatch(r"([\w./-]+) in \(([^)]*)\)", selector)
    assert match, f"unsupported selector {selector!r}"
    return labels.get(match[1]) in match[2].split(",")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is missing (tests/deploy fails by name)")
def test_the_kubernetes_deploy_block(tmp_path: Path) -> None:
    """The offline part runs as written in a copy; the cluster part is checked against the rendered overlay."""
    page = (ROOT / "docs" / "deployment.md").read_text()
    (block,) = [block for _, block in BLOCK.findall(page) if "kubectl kustomize $O" in block]
    lines = [re.split(r"\s+#\s", line.strip())[0] for line in block.splitlines()]
    offline = [line for line in lines if not line.startswith(("kubectl -n", "kubectl apply"))]
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("secrets.env"))
    result = subprocess.run(
        ["bash", "-ec", "\n".join(offline)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rendered: list[dict[str, Any]] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert rendered, "kubectl kustomize rendered nothing"
    names = dict(re.findall(r"(\w+)=(\S+)", next(line for line in lines if line.startswith("O="))))
    (namespace,) = [doc["metadata"]["name"] for doc in rendered if doc["kind"] == "Namespace"]
    assert names["NS"] == namespace
    jobs = {doc["metadata"]["name"] for doc in rendered if doc["kind"] == "Job"}
    for line in lines:
        if line.startswith("kubectl -n $NS"):
            assert any(job in line for job in jobs), f"{line}: the rendered Jobs are {jobs}"
    (apply_selected,) = [line for line in lines if line.startswith("kubectl apply -k $O -l")]
    selector = shlex.split(apply_selected)[-1]
    chosen = {doc["kind"] for doc in rendered if _selected(selector, doc["metadata"].get("labels", {}))}
    assert chosen == {"Namespace", "ConfigMap", "Secret", "Job"}, chosen
