"""The README and docs/: the first screen, one home per topic, working links, complete tables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
READER = re.compile(r'env_(?:str|required|bool|int|float|list)\(\s*"([A-Z0-9_]+)"')
PACKAGES = ("shared", "web_service", "ws_service")
# The README is the first ten minutes; everything else lives in docs/.
README_MAX_BYTES = 15_000
FIRST_SCREEN_LINES = 40
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.*)$", flags=re.MULTILINE)
DOCUMENTS = (README, *sorted(DOCS.glob("*.md")), ROOT / "wsclient" / "README.md", ROOT / "clients" / "js" / "README.md")


def _variables_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names.update(READER.findall(path.read_text()))
    return names


def _documented_variables() -> set[str]:
    page = (DOCS / "configuration.md").read_text()
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", page, flags=re.MULTILINE))


def test_every_environment_variable_is_in_the_configuration_table() -> None:
    read = _variables_read_by_the_code()
    assert len(read) > 20  # the pattern still matches the code
    missing = read - _documented_variables()
    assert not missing, f"add to docs/configuration.md's table: {sorted(missing)}"


def test_readme_first_screen_sets_up_and_ends_in_two_users_chatting() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN_LINES])
    for needed in (
        "docker compose up --build -d --wait",
        "scripts/test",
        "docker compose exec web python -m django create_demo_users",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/accounts/login/",
        "development only",
    ):
        assert needed in first_screen, f"the README's first {FIRST_SCREEN_LINES} lines lack {needed!r}"
    assert first_screen.index("docker compose up") < first_screen.index("create_demo_users")


def test_readme_is_short() -> None:
    size = len(README.read_text().encode())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move detail to docs/"


def test_the_protocol_lives_only_in_docs_protocol() -> None:
    readme = README.read_text()
    for frame in ('"type": "subscribe"', '"type":"subscribe"', "| 4401 |", "| `bad_json` |"):
        assert frame not in readme, f"README repeats the protocol ({frame}); it belongs in docs/protocol.md"
    protocol = (DOCS / "protocol.md").read_text()
    assert "| 4401 |" in protocol
    assert "| `bad_json` |" in protocol


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves() -> None:
    anchors = {path.resolve(): {_slug(h) for h in HEADING.findall(path.read_text())} for path in DOCUMENTS}
    broken: list[str] = []
    for page in DOCUMENTS:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page.resolve()
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors.get(resolved, set()):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def _layout_rows() -> set[str]:
    page = (DOCS / "development.md").read_text()
    return set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE))


def test_the_code_layout_lists_every_module() -> None:
    """docs/development.md has a row for each module and subpackage of the three packages."""
    rows = _layout_rows()
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            if path.suffix == ".py":
                name = f"{package}/{path.name}"
            elif path.is_dir() and path.name != "__pycache__":
                name = f"{package}/{path.name}/"
                if path.name == "management":
                    name = f"{package}/management/commands/"
            else:
                continue
            if name not in rows:
                missing.append(name)
    assert not missing, f"add to the code layout table in docs/development.md: {missing}"


def test_the_code_layout_lists_nothing_that_is_gone() -> None:
    gone = sorted(row for row in _layout_rows() if not (ROOT / row).exists())
    assert not gone, f"docs/development.md lists paths that do not exist: {gone}"
