"""The outermost app (``ws_service.app.ScopeTypeRouter``) hands connections over, and never raises when called."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from asgiref.compatibility import guarantee_single_callable

from ws_service.app import ScopeTypeRouter, build_application
from ws_service.asgi_types import Message, Receive, Scope, Send


async def _receive() -> Message:
    return {"type": "websocket.connect"}


async def _send(message: Message) -> None:
    del message


class Checked:
    """A handed-over check that fails (a bug) when it is called."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        raise RuntimeError("a bug in a handshake check")


def test_it_is_an_asgi_3_application() -> None:
    application = build_application()
    assert inspect.iscoroutinefunction(application.__call__)
    assert guarantee_single_callable(application) is application  # type: ignore[no-untyped-call]  # asgiref: no hints


async def test_it_returns_the_app_of_the_scope_type() -> None:
    seen: list[str] = []

    async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    awaitable = ScopeTypeRouter({"websocket": websocket})({"type": "websocket"}, _receive, _send)
    assert not seen  # nothing of the app has run yet: its coroutine is handed over
    await awaitable
    assert seen == ["websocket"]


@pytest.mark.parametrize(
    ("mapping", "error"),
    [({"websocket": Checked()}, "a bug in a handshake check"), ({}, "No application configured for scope type")],
)
async def test_an_error_is_raised_in_the_task_not_to_the_server_calling_it(mapping: Any, error: str) -> None:
    awaitable = ScopeTypeRouter(mapping)({"type": "websocket"}, _receive, _send)  # does not raise here
    with pytest.raises(Exception, match=error):
        await awaitable
