"""Autobahn's debug-log arguments, rendered only when a record is formatted (Daphne's WebSocket protocol).

Autobahn (Daphne's WebSocket implementation) builds the arguments of its
``log.debug`` calls before the call, whatever the log level: every connection
pretty-prints its protocol options (``pprint.pformat``) and colours function
names and peers for the terminal (``hltype``/``hlval``, through ``click``) on
connect, and again on every frame it reads or sends. With debug logging off
the text is thrown away; in the connect burst it was about a tenth of a Daphne
process's CPU.

Patched here (by the launcher, in its own process only): in the two autobahn
modules that log per connection, ``pformat``, ``hltype`` and ``hlval`` return
a :class:`LazyText` instead, which renders the very same text when a record is
formatted (``format()``, ``str()``), and never otherwise. ``Timings.__str__``,
the one use of ``pformat`` outside a log call there, keeps the real one.
"""

from __future__ import annotations

import pprint
from collections.abc import Callable
from typing import Any, Final

PATCHED_ATTRIBUTE: Final = "_ws_lazy_debug_arguments"
#: The autobahn modules whose per-connection debug calls build text eagerly, and the helpers made lazy there.
LAZY_HELPERS: Final = {
    "autobahn.websocket.protocol": ("pformat", "hltype", "hlval"),
    "autobahn.twisted.websocket": ("hltype", "hlval"),
}


class LazyText:
    """``render(*args, **kwargs)``, computed when the text is asked for (a log record being formatted)."""

    __slots__ = ("_args", "_kwargs", "_render")

    def __init__(self, render: Callable[..., str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._render = render
        self._args = args
        self._kwargs = kwargs

    def __str__(self) -> str:
        return str(self._render(*self._args, **self._kwargs))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return repr(str(self))


def lazy(render: Callable[..., str]) -> Callable[..., LazyText]:
    """``render`` made lazy: its calls return :class:`LazyText`."""

    def deferred(*args: Any, **kwargs: Any) -> LazyText:
        return LazyText(render, args, kwargs)

    deferred.__wrapped__ = render  # type: ignore[attr-defined]  # what functools.wraps sets too
    return deferred


def install() -> bool:
    """Make autobahn's per-connection debug arguments lazy (idempotent); False when autobahn lacks a helper."""
    import importlib

    modules = {name: importlib.import_module(name) for name in LAZY_HELPERS}
    if any(getattr(module, PATCHED_ATTRIBUTE, False) for module in modules.values()):
        return True
    if not all(hasattr(modules[name], helper) for name, helpers in LAZY_HELPERS.items() for helper in helpers):
        return False
    protocol = modules["autobahn.websocket.protocol"]
    timings = getattr(protocol, "Timings", None)
    if timings is not None:
        timings.__str__ = lambda self: pprint.pformat(self._timings)
    for name, helpers in LAZY_HELPERS.items():
        module = modules[name]
        for helper in helpers:
            setattr(module, helper, lazy(getattr(module, helper)))
        setattr(module, PATCHED_ATTRIBUTE, True)
    return True
