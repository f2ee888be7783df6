"""``HandOverURLRouter`` routes as Channels' ``URLRouter`` does, in the connection's own scope, and hands over.

The semantics are checked against Channels' own router on the same routes
(path converters, ``re_path`` groups, default kwargs, ``root_path``, nested
routers, a nested refusal that makes the outer router try its next route,
a path nothing takes), then on the ws stack (a path other than /ws/ is
refused with 403 and its hint, whatever the router).
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path, re_path
from django.urls.exceptions import Resolver404

from tests.support.communicators import ws_communicator
from ws_service.asgi_types import Message, Receive, Scope, Send
from ws_service.metrics import HANDSHAKE_STARTED
from ws_service.url_router import HandOverURLRouter


def asgi_path(route: str, app: Any, kwargs: dict[str, Any] | None = None) -> Any:
    """Django's ``path`` for an ASGI app (its type hints expect a view)."""
    return path(route, app, kwargs)


def asgi_re_path(route: str, app: Any) -> Any:
    """Django's ``re_path`` for an ASGI app."""
    return re_path(route, app)


async def _receive() -> Message:
    return {"type": "websocket.connect"}


async def _send(message: Message) -> None:
    del message


class Seen:
    """An ASGI app that records the scope it ran with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)


def _routes(router: type[Any], apps: dict[str, Seen]) -> Any:
    """The same routing table built with ``router`` (Channels' or ours), nested routers included."""
    rooms = router(
        [
            asgi_path("<int:number>/", apps["room"], {"kind": "numbered"}),
            asgi_re_path(r"^(?P<name>[a-z]+)/$", apps["named"]),
        ]
    )
    return router(
        [
            asgi_path("rooms/<slug:area>/", rooms),
            asgi_re_path(r"^items/(\d+)/$", apps["item"]),
            asgi_path("rooms/<slug:area>/<path:rest>", apps["fallback"]),  # tried after the nested router refuses
            asgi_path("ws/", apps["ws"]),
        ]
    )


def _apps() -> dict[str, Seen]:
    return {name: Seen(name) for name in ("room", "named", "item", "fallback", "ws")}


def _scope(path_: str, **extra: Any) -> Scope:
    return {"type": "websocket", "path": path_, HANDSHAKE_STARTED: 0.0, **extra}


async def _route(router: type[Any], scope: Scope) -> tuple[str, Scope]:
    apps = _apps()
    await _routes(router, apps)(scope, _receive, _send)
    (name,) = [name for name, app in apps.items() if app.scopes]
    return name, apps[name].scopes[0]


@pytest.mark.parametrize(
    ("scope", "app", "args", "kwargs", "remaining"),
    [
        (_scope("/ws/"), "ws", (), {}, ""),
        (_scope("/rooms/north/7/"), "room", (), {"area": "north", "number": 7, "kind": "numbered"}, ""),
        (_scope("/rooms/north/lobby/"), "named", (), {"area": "north", "name": "lobby"}, ""),
        (_scope("/rooms/north/42/deep/"), "fallback", (), {"area": "north", "rest": "42/deep/"}, ""),
        (_scope("/items/12/"), "item", ("12",), {}, ""),
        (_scope("/prefix/ws/", root_path="/prefix"), "ws", (), {}, ""),
    ],
)
async def test_it_routes_as_channels_does(
    scope: Scope, app: str, args: tuple[Any, ...], kwargs: dict[str, Any], remaining: str
) -> None:
    channels_app, channels_scope = await _route(URLRouter, dict(scope))
    ours_app, ours_scope = await _route(HandOverURLRouter, dict(scope))
    assert channels_app == ours_app == app
    for routed in (channels_scope, ours_scope):
        assert routed["url_route"] == {"args": args, "kwargs": kwargs}
        assert routed["path_remaining"] == remaining


@pytest.mark.parametrize(
    ("scope", "error"),
    [
        (_scope("/nowhere/"), "No route found for path 'nowhere/'"),
        (_scope("/ws/", root_path="/prefix"), "No route found for path '/ws/'"),
        ({"type": "websocket"}, "No 'path' key in connection scope"),
    ],
)
async def test_a_path_no_route_takes_fails_in_the_task_as_with_channels(scope: Scope, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        await _routes(URLRouter, _apps())(dict(scope), _receive, _send)
    awaitable = _routes(HandOverURLRouter, _apps())(dict(scope), _receive, _send)  # does not raise here
    with pytest.raises(ValueError, match=error):
        await awaitable


def test_a_nested_router_refuses_when_called_so_its_outer_router_tries_the_next_route() -> None:
    nested = HandOverURLRouter([asgi_path("a/", Seen("a"))])
    scope = _scope("/x/", path_remaining="b/", url_route={"args": (), "kwargs": {"area": "x"}})
    with pytest.raises(Resolver404):
        nested(scope, _receive, _send)
    assert scope["path_remaining"] == "b/"  # the refused scope is as it was
    assert scope["url_route"] == {"args": (), "kwargs": {"area": "x"}}


@pytest.mark.parametrize("inner", [URLRouter, HandOverURLRouter])
async def test_a_nested_channels_router_refusing_when_awaited_makes_it_try_the_next_route(inner: type[Any]) -> None:
    """Channels' router refuses only once awaited: the outer router then awaits it (and keeps its frame)."""
    fallback = Seen("fallback")
    outer = HandOverURLRouter(
        [asgi_path("rooms/", inner([asgi_path("a/", Seen("a"))])), asgi_re_path(r"^rooms/(?P<rest>.*)$", fallback)]
    )
    assert outer.defers is (inner is URLRouter)
    assert HandOverURLRouter([asgi_path("outer/", outer)]).defers is outer.defers  # through a nesting of ours too
    scope = _scope("/rooms/b/")
    await outer(scope, _receive, _send)
    assert fallback.scopes == [scope]
    assert scope["url_route"] == {"args": (), "kwargs": {"rest": "b/"}}


async def test_it_updates_the_connections_own_scope_and_hands_the_connection_over() -> None:
    ws = Seen("ws")
    scope = _scope("/ws/")  # stamped: the ws stack's outermost middleware made it this connection's own
    awaitable: Any = HandOverURLRouter([asgi_path("ws/", ws)])(scope, _receive, _send)
    assert awaitable.cr_code.co_qualname == "Seen.__call__"  # the app's own coroutine: no router frame
    assert not ws.scopes  # nothing of the app ran yet
    await awaitable
    assert ws.scopes[0] is scope  # no copy
    assert scope["url_route"] == {"args": (), "kwargs": {}}


async def test_a_scope_that_is_not_the_connections_own_is_copied_once() -> None:
    """A stack built without the stamping outermost middleware (or a dict used twice) routes like Channels."""
    ws = Seen("ws")
    router = HandOverURLRouter([asgi_path("rooms/", HandOverURLRouter([asgi_path("<int:n>/", ws)]))])
    scope: Scope = {"type": "websocket", "path": "/rooms/3/"}
    await router(scope, _receive, _send)
    await router(scope, _receive, _send)  # the same dict again routes the same way
    assert scope == {"type": "websocket", "path": "/rooms/3/"}
    first, second = ws.scopes
    assert first is not scope
    assert second is not first
    assert first["url_route"] == second["url_route"] == {"args": (), "kwargs": {"n": 3}}


@pytest.mark.django_db(transaction=True)
async def test_on_the_ws_stack_an_unknown_path_is_refused_with_its_hint() -> None:
    communicator: WebsocketCommunicator = ws_communicator(path="/elsewhere/")
    await communicator.send_input({"type": "websocket.connect"})
    refused = await communicator.receive_output(3)
    assert refused == {"type": "websocket.close", "reason": "WebSocket refused: only /ws/ accepts WebSockets"}
    await communicator.wait(3)
