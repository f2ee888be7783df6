"""The servers' log-call arguments, rendered only when a record is formatted.

Both servers build the arguments of some per-connection log calls before the
call, whatever the log level, and throw the text away when the level is off:

* autobahn (Daphne's WebSocket implementation) pretty-prints every
  connection's protocol options (``pprint.pformat``) and colours function
  names and peers for the terminal (``hltype``/``hlval``, through ``click``)
  for ``log.debug`` on connect, and again on every frame it reads or sends:
  in the connect burst about a tenth of a Daphne process's CPU;
* Uvicorn's websockets-sansio protocol formats the client address and the
  quoted path (``get_client_addr``, ``get_path_with_query_string``) for its
  ``[accepted]``/``403`` INFO lines, which the ws launcher turns off.

Patched here (by the launcher, in its own process only, for the server it
runs): in those modules the helpers return a :class:`LazyText` instead, which
renders the very same text when a record is formatted (``format()``,
``str()``, ``%s``), and never otherwise. autobahn's ``Timings.__str__``, the
one use of ``pformat`` outside a log call there, keeps the real one.
"""

from __future__ import annotations

import importlib
import pprint
from collections.abc import Callable, Mapping
from typing import Any, Final

PATCHED_ATTRIBUTE: Final = "_ws_lazy_log_arguments"
#: Per server: the modules whose per-connection log calls build text eagerly, and the helpers made lazy there.
DAPHNE_HELPERS: Final = {
    "autobahn.websocket.protocol": ("pformat", "hltype", "hlval"),
    "autobahn.twisted.websocket": ("hltype", "hlval"),
}
UVICORN_HELPERS: Final = {
    "uvicorn.protocols.websockets.websockets_sansio_impl": ("get_client_addr", "get_path_with_query_string"),
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


def _install(helpers: Mapping[str, tuple[str, ...]]) -> bool:
    """Make ``helpers`` lazy in their modules (idempotent); False (nothing patched) when a module lacks one."""
    modules = {name: importlib.import_module(name) for name in helpers}
    if not all(hasattr(modules[name], helper) for name, names in helpers.items() for helper in names):
        return False
    for name, names in helpers.items():
        module = modules[name]
        if getattr(module, PATCHED_ATTRIBUTE, False):
            continue
        for helper in names:
            setattr(module, helper, lazy(getattr(module, helper)))
        setattr(module, PATCHED_ATTRIBUTE, True)
    return True


def install_daphne() -> bool:
    """autobahn's per-connection and per-frame ``log.debug`` arguments, lazy."""
    from autobahn.websocket import protocol

    timings: Any = protocol.Timings
    if not getattr(protocol, PATCHED_ATTRIBUTE, False):
        timings.__str__ = lambda self: pprint.pformat(self._timings)
    return _install(DAPHNE_HELPERS)


def install_uvicorn() -> bool:
    """Uvicorn's per-connection INFO-line arguments (websockets-sansio), lazy."""
    return _install(UVICORN_HELPERS)
