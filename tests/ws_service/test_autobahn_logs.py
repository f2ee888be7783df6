"""``ws_service.autobahn_logs``: autobahn's debug-log arguments cost nothing until a record is formatted."""

from __future__ import annotations

import pprint
from typing import Any

import autobahn.twisted.websocket
import autobahn.util
import autobahn.websocket.protocol
from twisted.logger import formatEvent

from ws_service import autobahn_logs

# Autobahn ships no type hints for these helpers: the tests use them untyped.
twisted_websocket: Any = autobahn.twisted.websocket
websocket_protocol: Any = autobahn.websocket.protocol
util: Any = autobahn.util


class Watched:
    """Counts how often its text is made."""

    def __init__(self) -> None:
        self.rendered = 0

    def __repr__(self) -> str:
        self.rendered += 1
        return "<watched>"


def test_debug_arguments_are_rendered_only_when_a_record_is_formatted() -> None:
    assert autobahn_logs.install()
    assert autobahn_logs.install()  # idempotent: helpers are wrapped once
    watched = Watched()
    attrs: Any = websocket_protocol.pformat([("option", watched)])
    func: Any = twisted_websocket.hltype(test_debug_arguments_are_rendered_only_when_a_record_is_formatted)
    assert watched.rendered == 0  # what a debug call with debug logging off costs: no text at all
    event = {"log_format": "{func}: {attrs}", "func": func, "attrs": attrs}
    expected_func = util.hltype(test_debug_arguments_are_rendered_only_when_a_record_is_formatted)
    assert formatEvent(event) == f"{expected_func}: {pprint.pformat([('option', watched)])}"
    assert watched.rendered >= 1


def test_lazy_helpers_render_exactly_autobahns_text() -> None:
    assert autobahn_logs.install()
    for module in (websocket_protocol, twisted_websocket):
        assert str(module.hltype(formatEvent)) == util.hltype(formatEvent)
        assert f"{module.hlval('127.0.0.1:5000')}" == util.hlval("127.0.0.1:5000")
        assert repr(module.hlval(7)) == repr(util.hlval(7))
    assert str(websocket_protocol.pformat({"b": 1, "a": [2]}, width=5)) == pprint.pformat({"b": 1, "a": [2]}, width=5)


def test_timings_still_print_as_text() -> None:
    assert autobahn_logs.install()
    timings = websocket_protocol.Timings()
    timings.track("connect")
    assert isinstance(str(timings), str)
    assert "connect" in str(timings)
