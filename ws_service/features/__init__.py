"""The /ws/ protocol's features, one module each; every module here is loaded.

A feature registers its message types, event handlers and hooks on
:data:`ws_service.frames.frames` when imported. Deleting a feature's module
(with its settings, docs and tests) removes it: nothing else names it.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> list[str]:
    """Import every feature module of this package (once); their names, sorted."""
    names = sorted(module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names
