"""Channels' ``URLRouter`` that hands the connection over to the routed app.

Channels' router awaits the routed app, so its coroutine frame stays on the
connection's call stack for the connection's whole life (one more level to
walk on every resume of the task), and it gives the app a copy of the scope
(``dict(scope, path_remaining=..., url_route=...)``) that lives as long.
:class:`HandOverURLRouter` routes the same way (``path``/``re_path`` routes,
``root_path``, ``path_remaining``, ``url_route`` args and kwargs, nested
routers) but returns the routed app's coroutine instead of awaiting it
(:func:`~ws_service.asgi_types.hands_over`), and writes ``path_remaining``
and ``url_route`` into the connection's own scope instead of a copy.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from channels.routing import URLRouter
from django.urls.exceptions import Resolver404

from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, hands_over, raising
from ws_service.metrics import HANDSHAKE_STARTED

# The scope keys a router writes.
PATH_REMAINING = "path_remaining"
URL_ROUTE = "url_route"


def _owns_scope(scope: Scope) -> bool:
    """Whether ``scope`` is this connection's own dict, which a router may update in place.

    The stack's outermost WebSocket middleware (``ws_service.host.HostValidator``)
    stamps a copy of the server's scope (``metrics.handshake_started``) that
    only this connection uses; an outer router (this one or Channels') hands
    on a scope it owns too (``path_remaining`` set).
    """
    return HANDSHAKE_STARTED in scope or PATH_REMAINING in scope


def _defers(app: Any) -> bool:
    """Whether ``app`` is a router that may refuse a path (``Resolver404``) only once awaited."""
    if not getattr(app, "_path_routing", False):
        return False
    return not isinstance(app, HandOverURLRouter) or app.defers


class HandOverURLRouter(URLRouter):  # type: ignore[misc]  # channels ships no type hints
    """Channels' ``URLRouter`` (its routes and ``__init__``) whose call hands the connection over.

    Routing follows Channels: the path (after ``root_path``, for the
    outermost router) is matched against the routes in order; the first
    match's app gets ``path_remaining`` (what a nested router matches) and
    ``url_route`` (the positional and keyword arguments of every router on
    the way, with the routes' default kwargs). A path no route matches is a
    ``ValueError("No route found ...")`` from the outermost router and a
    ``Resolver404`` from a nested one (the outer router then tries its next
    route). The outermost router never raises when called: its error is
    raised when the returned awaitable runs, in the connection's task
    (``ws_service.asgi_types.raising``), as Channels' ``async def`` does.

    Unlike Channels, the router writes ``path_remaining`` and ``url_route``
    into the scope it was given instead of a copy, and returns the app's
    coroutine instead of awaiting it: no router frame and no scope copy stay
    for the connection's life. Updating in place is only safe because the
    scope is this connection's own: the ws stack's outermost middleware
    (``HostValidator``) made it a stamped copy of the server's scope. A scope
    without that stamp (a stack built by hand, a test's dict used twice) is
    copied once first, as Channels does; a nested router updates the scope
    its outer router handed on.

    A nested router that is Channels' own (or contains one) refuses a path
    only once awaited: a router routing to one awaits it, keeping Channels'
    semantics (the next route is tried) at the cost of that frame.
    """

    def __init__(self, routes: list[Any]) -> None:
        super().__init__(routes)
        #: Routing may end in an awaited app that refuses the path (a nested Channels router).
        self.defers = any(_defers(route.callback) for route in self.routes)

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        nested = PATH_REMAINING in scope
        try:
            if not _owns_scope(scope):
                scope = dict(scope)
            return self._route(scope, receive, send, self._path(scope), 0)
        except Exception as exc:
            if nested:
                raise  # to the outer router, which tries its next route on Resolver404
            return raising(exc)

    @staticmethod
    def _path(scope: Scope) -> str:
        """The path this router matches: ``path_remaining``, or the path after ``root_path`` when outermost."""
        path: str | None = scope.get(PATH_REMAINING, scope.get("path"))
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if PATH_REMAINING not in scope:
            root_path: str = scope.get("root_path", "")
            if root_path and not path.startswith(root_path):
                raise ValueError(f"No route found for path {path!r}.")
            path = path[len(root_path) :]
        return path.lstrip("/")

    def _route(self, scope: Scope, receive: Receive, send: Send, path: str, start: int) -> Awaitable[None]:
        """The awaitable of the first route from ``start`` that takes ``path``; raises when none does."""
        entry = {key: scope[key] for key in (PATH_REMAINING, URL_ROUTE) if key in scope}
        outer = entry.get(URL_ROUTE, {})
        for index in range(start, len(self.routes)):
            route = self.routes[index]
            try:
                match = route.pattern.match(path)
                if not match:
                    continue
                new_path, args, kwargs = match
                kwargs.update(route.default_args)
                scope[PATH_REMAINING] = new_path
                scope[URL_ROUTE] = {
                    "args": outer.get("args", ()) + args,
                    "kwargs": {**outer.get("kwargs", {}), **kwargs},
                }
                if _defers(route.callback):
                    return self._awaiting(route.callback, scope, receive, send, path, index, entry)
                awaitable: Awaitable[None] = route.callback(scope, receive, send)
                return awaitable
            except Resolver404:
                _restore(scope, entry)
        if PATH_REMAINING in entry:
            raise Resolver404(f"No route found for path {path!r}.")
        raise ValueError(f"No route found for path {path!r}.")

    async def _awaiting(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, path: str, index: int, entry: Scope
    ) -> None:
        """Channels' semantics for a router that refuses a path once awaited: then the next route is tried."""
        try:
            await app(scope, receive, send)
            return
        except Resolver404:
            _restore(scope, entry)
        await self._route(scope, receive, send, path, index + 1)


def _restore(scope: Scope, entry: Scope) -> None:
    """Put the router keys of ``scope`` back as they were when the router was called."""
    for key in (PATH_REMAINING, URL_ROUTE):
        if key in entry:
            scope[key] = entry[key]
        else:
            scope.pop(key, None)
