"""Which Daphne versions the launcher's Daphne patches were written against.

``daphne_timeouts`` and ``daphne_reaper`` replace methods of ``daphne.server.Server``
and repeat some of their rules. They patch only a Daphne whose version starts with
one of :data:`SUPPORTED_DAPHNE`; on any other, Daphne keeps its own (correct, slower)
methods, and tests/ws_service/test_daphne_version.py fails so that the patches are
re-read against the new Daphne before the lock file moves.
"""

from __future__ import annotations

from typing import Final

SUPPORTED_DAPHNE: Final = ("4.",)


def daphne_version() -> str:
    import daphne

    version: str = daphne.__version__
    return version


def supported(version: str | None = None) -> bool:
    """True if ``version`` (default: the installed Daphne's) is one the patches were written against."""
    return (version or daphne_version()).startswith(SUPPORTED_DAPHNE)
