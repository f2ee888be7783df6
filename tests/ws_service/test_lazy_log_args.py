"""``ws_service.lazy_log_args``: the servers' log-call arguments cost nothing until a record is formatted."""

from __future__ import annotations

import logging
import pprint
from typing import Any

import autobahn.twisted.websocket
import autobahn.util
import autobahn.websocket.protocol
import pytest
import uvicorn.protocols.utils
import uvicorn.protocols.websockets.websockets_sansio_impl
from twisted.logger import formatEvent

from ws_service import lazy_log_args

# Autobahn ships no type hints for these helpers: the tests use them untyped.
twisted_websocket: Any = autobahn.twisted.websocket
websocket_protocol: Any = autobahn.websocket.protocol
util: Any = autobahn.util
sansio: Any = uvicorn.protocols.websockets.websockets_sansio_impl


class Watched:
    """Counts how often its text is made."""

    def __init__(self) -> None:
        self.rendered = 0

    def __repr__(self) -> str:
        self.rendered += 1
        return "<watched>"


def test_debug_arguments_are_rendered_only_when_a_record_is_formatted() -> None:
    assert lazy_log_args.install_daphne()
    assert lazy_log_args.install_daphne()  # idempotent: helpers are wrapped once
    watched = Watched()
    attrs: Any = websocket_protocol.pformat([("option", watched)])
    func: Any = twisted_websocket.hltype(test_debug_arguments_are_rendered_only_when_a_record_is_formatted)
    assert watched.rendered == 0  # what a debug call with debug logging off costs: no text at all
    event = {"log_format": "{func}: {attrs}", "func": func, "attrs": attrs}
    expected_func = util.hltype(test_debug_arguments_are_rendered_only_when_a_record_is_formatted)
    assert formatEvent(event) == f"{expected_func}: {pprint.pformat([('option', watched)])}"
    assert watched.rendered >= 1


def test_lazy_helpers_render_exactly_autobahns_text() -> None:
    assert lazy_log_args.install_daphne()
    for module in (websocket_protocol, twisted_websocket):
        assert str(module.hltype(formatEvent)) == util.hltype(formatEvent)
        assert f"{module.hlval('127.0.0.1:5000')}" == util.hlval("127.0.0.1:5000")
        assert repr(module.hlval(7)) == repr(util.hlval(7))
    assert str(websocket_protocol.pformat({"b": 1, "a": [2]}, width=5)) == pprint.pformat({"b": 1, "a": [2]}, width=5)


def test_timings_still_print_as_text() -> None:
    assert lazy_log_args.install_daphne()
    timings = websocket_protocol.Timings()
    timings.track("connect")
    assert isinstance(str(timings), str)
    assert "connect" in str(timings)


class WatchedScope(dict[str, Any]):
    """A scope that counts how often it is read."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        WatchedScope.reads += 1
        return super().__getitem__(key)


def test_uvicorn_info_arguments_are_rendered_only_for_a_record(caplog: pytest.LogCaptureFixture) -> None:
    assert lazy_log_args.install_uvicorn()
    assert lazy_log_args.install_uvicorn()  # idempotent
    scope = WatchedScope(client=("127.0.0.2", 5000), root_path="", path="/ws/", query_string=b"a=1")
    logger = logging.getLogger("test.lazy_log_args")
    logger.setLevel(logging.WARNING)
    WatchedScope.reads = 0
    logger.info(
        '%s - "WebSocket %s" [accepted]', sansio.get_client_addr(scope), sansio.get_path_with_query_string(scope)
    )
    assert WatchedScope.reads == 0  # what an INFO line costs with INFO off: no text at all
    with caplog.at_level(logging.INFO, logger="test.lazy_log_args"):
        logger.info(
            '%s - "WebSocket %s" [accepted]', sansio.get_client_addr(scope), sansio.get_path_with_query_string(scope)
        )
    expected_path = uvicorn.protocols.utils.get_path_with_query_string(scope)  # type: ignore[arg-type]
    assert caplog.messages == [f'127.0.0.2:5000 - "WebSocket {expected_path}" [accepted]']
