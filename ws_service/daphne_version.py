"""Which Daphne versions the launcher's Daphne patches were written against.

``daphne_timeouts`` and ``daphne_reaper`` replace methods of ``daphne.server.Server``
and repeat some of their rules; ``daphne_upgrade`` relies on how Daphne hands an upgraded
request's socket over. They patch only a Daphne whose version starts with
one of :data:`SUPPORTED_DAPHNE`; on any other, Daphne keeps its own (correct, slower)
methods, and ``tests/ws_service/test_daphne_reaper.py`` (the installed-version test) fails so that the patches are
re-read against the new Daphne before the lock file moves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

SUPPORTED_DAPHNE: Final = ("4.",)


def daphne_version() -> str:
    import daphne

    version: str = daphne.__version__
    return version


def supported(version: str | None = None) -> bool:
    """True if ``version`` (default: the installed Daphne's) is one the patches were written against."""
    return (version or daphne_version()).startswith(SUPPORTED_DAPHNE)


def kept_on[T](server: Any, attribute: str, factory: Callable[[Any], T]) -> T:
    """The patch's helper object of this Daphne ``server``, made by ``factory(server)`` on first use."""
    helper: T | None = getattr(server, attribute, None)
    if helper is None:
        helper = factory(server)
        setattr(server, attribute, helper)
    return helper
