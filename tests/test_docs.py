"""The README documents every environment variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READER = re.compile(r'env_(?:str|required|bool|int|float|list)\(\s*"([A-Z0-9_]+)"')
PACKAGES = ("shared", "web_service", "ws_service")


def _variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(READER.findall(path.read_text()))
    return names


def _documented_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))


def test_every_environment_variable_is_in_the_readme_table() -> None:
    read = _variables_read_by_the_code()
    assert len(read) > 20  # the pattern still matches the code
    missing = read - _documented_variables()
    assert not missing, f"add to README's configuration table: {sorted(missing)}"


def test_readme_first_screen_has_the_two_set_up_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "docker compose up --build" in first_screen
    assert "scripts/test" in first_screen
