"""Frames are parsed and encoded by orjson; what orjson refuses, the standard library decides as before."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from ws_service import protocol
from ws_service.protocol import ErrorCode, ProtocolError, encode, parse_frame

FRAMES: list[dict[str, Any]] = [
    {"type": "pong"},
    {"type": "pong", "ref": "r1"},
    {"type": "message", "topic": "room.a", "text": "héllo ✓ \u2028 \U0001f600", "id": 7, "seq": None},
    {"type": "error", "code": "bad_json", "detail": 'quote " and \\ backslash\n\t'},
    {"type": "presence", "users": [{"id": 1, "username": "alice"}, {"id": 2, "username": "bob"}], "ok": True},
]


@pytest.mark.parametrize("frame", FRAMES)
def test_encode_writes_what_the_standard_compact_encoder_writes(frame: dict[str, Any]) -> None:
    assert encode(frame) == json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def test_encode_does_not_use_the_standard_library_for_a_plain_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(message: Any) -> str:
        raise AssertionError("the standard encoder ran")

    monkeypatch.setattr(protocol._ENCODER, "encode", refuse)
    assert encode({"type": "pong", "ref": "r"}) == '{"type":"pong","ref":"r"}'


def test_parse_frame_does_not_use_the_standard_library_for_valid_json(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> Any:
        raise AssertionError("json.loads ran")

    monkeypatch.setattr(json, "loads", refuse)
    assert parse_frame('{"type":"ping","ref":"r"}', None) == {"type": "ping", "ref": "r"}


def test_what_orjson_refuses_to_encode_the_standard_encoder_writes() -> None:
    assert encode({"type": "n", "value": 2**70}) == '{"type":"n","value":1180591620717411303424}'
    keys: dict[Any, str] = {"type": "keys", 1: "one", None: "none", False: "no"}
    assert encode(keys) == json.dumps(keys, separators=(",", ":"))


def test_what_orjson_refuses_to_parse_the_standard_parser_decides() -> None:
    parsed = parse_frame('{"type":"ping","x":NaN,"y":1e999}', None)  # accepted before orjson: still accepted
    assert math.isnan(parsed["x"])
    assert parsed["y"] == math.inf
    with pytest.raises(ProtocolError) as raised:
        parse_frame('{"type":"ping","x":"\\ud800"}', None)  # orjson: invalid JSON; the limits: a lone surrogate
    assert raised.value.code is ErrorCode.BAD_MESSAGE
    for text in ("", "{", '{"type":"ping",}', "[" * 100_000, "\x00"):
        with pytest.raises(ProtocolError) as raised:
            parse_frame(text, None)
        assert raised.value.code is ErrorCode.BAD_JSON


def test_an_integer_over_64_bits_is_parsed_as_a_float() -> None:
    """The one difference from the standard parser, documented in docs/protocol.md."""
    assert parse_frame('{"type":"ping","n":123456789012345678901234567890}', None)["n"] == 1.2345678901234568e29


def test_the_json_limits_follow_a_changed_setting(settings: SettingsWrapper) -> None:
    nested = '{"type":"ping","a":{"b":{"c":1}}}'
    assert parse_frame(nested, None)["type"] == "ping"
    settings.WS_MAX_JSON_DEPTH = 2
    with pytest.raises(ProtocolError) as raised:
        parse_frame(nested, None)
    assert raised.value.code is ErrorCode.BAD_MESSAGE
