"""Each removable feature stays removable: only its own files and the tests named for it use its modules.

A feature module in ``ws_service/features/`` that has modules elsewhere
lists them in ``OWN_MODULES`` and names its settings' prefix in
``SETTINGS_PREFIX`` (docs/extending.md, "Removing a feature"). Deleting the
feature then means deleting those files, its settings, docs and tests: no
other Python file imports its modules or reads its settings.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from ws_service.consumers import FEATURES

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("shared", "web_service", "ws_service", "wsclient", "bench", "tests")
SETTINGS_MODULE = ROOT / "shared" / "settings.py"


@dataclass(frozen=True)
class Feature:
    name: str
    modules: frozenset[str]
    settings_prefix: str

    def owns(self, path: Path) -> bool:
        """The feature's own modules and the test files named for it."""
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "tests":
            return self.name in path.stem
        return _module_name(path) in self.modules


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _feature(module: ModuleType) -> Feature | None:
    """The removable feature ``module`` declares (``OWN_MODULES``), if any."""
    own = getattr(module, "OWN_MODULES", None)
    if own is None:
        return None
    name = module.__name__.rsplit(".", 1)[-1]
    return Feature(name, frozenset({module.__name__, *own}), getattr(module, "SETTINGS_PREFIX", ""))


def _removable_features() -> list[Feature]:
    """Every loaded feature that declares its own modules (none once they are all deleted: nothing to check)."""
    modules = (importlib.import_module(f"ws_service.features.{name}") for name in FEATURES)
    return [feature for feature in map(_feature, modules) if feature is not None]


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` counted as both ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _python_files() -> list[Path]:
    return sorted(
        path for folder in SCANNED for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts
    )


def _strangers(feature: Feature) -> list[str]:
    found = []
    for path in _python_files():
        if feature.owns(path):
            continue
        used = _imports(path) & feature.modules
        if used:
            found.append(f"{path.relative_to(ROOT)} imports {sorted(used)}")
        prefix = feature.settings_prefix
        if prefix and path != SETTINGS_MODULE and re.search(rf"\b{re.escape(prefix)}[A-Z]", path.read_text()):
            found.append(f"{path.relative_to(ROOT)} names {feature.settings_prefix}* settings")
    return found


def test_a_feature_declaring_its_own_modules_is_found() -> None:
    module = ModuleType("ws_service.features.sample")
    module.OWN_MODULES = ("shared.sample_store",)  # type: ignore[attr-defined]
    module.SETTINGS_PREFIX = "SAMPLE_"  # type: ignore[attr-defined]
    assert _feature(module) == Feature(
        "sample", frozenset({"ws_service.features.sample", "shared.sample_store"}), "SAMPLE_"
    )
    assert _feature(ModuleType("ws_service.features.plain")) is None


@pytest.mark.parametrize("feature", _removable_features(), ids=lambda feature: feature.name)
def test_only_the_feature_and_its_tests_use_its_modules_and_settings(feature: Feature) -> None:
    for module in feature.modules:
        assert importlib.util.find_spec(module) is not None, (
            f"{feature.name}: OWN_MODULES lists {module}, which is gone"
        )
    assert not _strangers(feature), _strangers(feature)


def test_the_check_sees_an_import_from_another_file(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from shared import feature\nimport ws_service.feature_tracker as t\n")
    assert {"shared.feature", "ws_service.feature_tracker"} <= _imports(sample)
