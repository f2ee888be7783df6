"""scripts/test's own set-up: which system packages are missing, and the one command that installs them.

The script runs with a PATH of its own: a directory of links to the real
tools it needs, leaving out the one under test. ``--check`` only reports;
the other runs here stop before installing anything (no apt-get, or no
sudo), so no test ever changes the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test"
# What the script itself runs before it decides (bash builtins aside).
BASICS = ("bash", "dirname", "id")
# Tools found on PATH, and the Debian package each comes from.
TOOLS = {"redis-server": "redis-server", "node": "nodejs", "npm": "npm", "kubectl": "kubectl"}
SUDO = "" if os.geteuid() == 0 else "sudo "


def path_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH of one directory holding links to the real ``tools``."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed here (scripts/test installs it)"
        (directory / tool).symlink_to(found)
    return str(directory)


def run_script(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/nonexistent")}
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def listed_packages(output: str) -> list[str]:
    found = re.search(r"^missing system packages: (.+)$", output, flags=re.MULTILINE)
    assert found, output
    return found[1].split()


def test_check_finds_nothing_missing_when_every_tool_is_there(tmp_path: Path) -> None:
    result = run_script(path_with(tmp_path, [*BASICS, *TOOLS]), "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "system packages: nothing missing"


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_check_names_the_package_and_the_one_command_that_installs_it(tmp_path: Path, tool: str) -> None:
    result = run_script(path_with(tmp_path, [*BASICS, *(other for other in TOOLS if other != tool)]), "--check")
    assert result.returncode == 1
    package = TOOLS[tool]
    assert listed_packages(result.stdout) == [package]
    command = re.search(r"^install them with: (.+)$", result.stdout, flags=re.MULTILINE)
    assert command, result.stdout
    assert command[1] == f"{SUDO}apt-get update && {SUDO}apt-get install -y {package}"


def test_several_missing_tools_make_one_command(tmp_path: Path) -> None:
    result = run_script(path_with(tmp_path, [*BASICS, "npm", "kubectl"]), "--check")
    assert result.returncode == 1
    assert listed_packages(result.stdout) == ["redis-server", "nodejs"]
    assert result.stdout.rstrip().endswith("apt-get install -y redis-server nodejs")


def test_without_apt_get_the_suite_stops_at_once_naming_what_to_install(tmp_path: Path) -> None:
    result = run_script(path_with(tmp_path, [*BASICS, "npm", "kubectl", "node"]), "-x")
    assert result.returncode == 1
    assert "no apt-get here: install redis-server" in result.stderr
    assert "pytest" not in result.stdout + result.stderr  # nothing ran after the check


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the script would really run apt-get")
def test_without_root_or_sudo_the_suite_stops_at_once_naming_the_command(tmp_path: Path) -> None:
    result = run_script(path_with(tmp_path, [*BASICS, "apt-get", "npm", "kubectl", "node"]), "-x")
    assert result.returncode == 1
    assert "sudo apt-get update && sudo apt-get install -y redis-server" in result.stderr
