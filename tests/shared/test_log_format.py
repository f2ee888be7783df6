"""The log formats: one JSON object per line, or text; LOG_FORMAT and SERVICE_NAME."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from shared.log_context import use_connection_id, use_context_id, use_request_id
from shared.log_filters import RequestContextFilter
from shared.log_format import JsonFormatter, TextFormatter, redact

RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
REQUIRED = {"timestamp", "level", "service", "logger", "message", "user_id"}


def _record(msg: object = "hello %s", args: Any = ("world",), **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("ws.consumer", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def _json(record: logging.LogRecord, service: str | None = "ws") -> dict[str, Any]:
    RequestContextFilter().filter(record)
    line = JsonFormatter(service=service).format(record)
    assert "\n" not in line
    entry: dict[str, Any] = json.loads(line)
    return entry


def test_required_fields_outside_a_context() -> None:
    entry = _json(_record())
    assert entry.keys() >= REQUIRED
    assert RFC3339_UTC_MS.fullmatch(entry["timestamp"]), entry["timestamp"]
    assert entry["level"] == "INFO"
    assert entry["service"] == "ws"
    assert entry["logger"] == "ws.consumer"
    assert entry["message"] == "hello world"
    assert entry["user_id"] is None


def test_connection_and_request_ids_have_their_own_keys() -> None:
    with use_connection_id("c0ffee"):
        connection = _json(_record(user_id=7))
    with use_request_id("req-1"):
        request = _json(_record())
    assert connection["connection_id"] == "c0ffee"
    assert connection["user_id"] == 7
    assert "request_id" not in connection
    assert request["request_id"] == "req-1"
    assert "connection_id" not in request


def test_an_id_without_a_kind_takes_the_process_default() -> None:
    import shared.log_context as log_context

    saved = log_context.get_context_kind()
    try:
        log_context.set_default_kind("connection")
        with use_context_id("x1"):
            assert _json(_record())["connection_id"] == "x1"
        log_context.set_default_kind("request")
        with use_context_id("x2"):
            assert _json(_record())["request_id"] == "x2"
    finally:
        log_context.set_default_kind(saved)


def test_topic_and_other_json_safe_extras_are_fields() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing /?token=secret>"

    entry = _json(_record(topic="room.lobby", count=3, payload={"a": [1, 2]}, thing=Thing(), nan=float("nan")))
    assert entry["topic"] == "room.lobby"
    assert entry["count"] == 3
    assert entry["payload"] == {"a": [1, 2]}
    # Not JSON-safe: left out (a repr could hold anything, a query string included).
    assert "thing" not in entry
    assert "nan" not in entry
    assert "args" not in entry
    assert "msg" not in entry


def test_exception_is_a_string_field() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry = _json(record)
    assert entry["level"] == "ERROR"
    assert isinstance(entry["exc_info"], str)
    assert "ValueError: broken" in entry["exc_info"]


def test_never_raises() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __str__(self) -> str:
            raise RuntimeError("no str")

    bad_args = _json(_record("%d items", ("not a number",)))
    assert "%d items" in bad_args["message"]
    hostile = _json(_record(Hostile(), None, extra_field=Hostile()))
    assert hostile.keys() >= REQUIRED
    assert hostile["message"].startswith("<unrepresentable Hostile>")
    assert "extra_field" not in hostile


def test_django_request_extra_is_method_and_path_only() -> None:
    from django.test import RequestFactory

    request = RequestFactory().get("/no-such-page?ticket=abc&token=secret")
    entry = _json(_record("Not Found: %s", (request.path,), request=request, status_code=404))
    assert entry["request"] == "GET /no-such-page"
    assert entry["status_code"] == 404
    assert "secret" not in json.dumps(entry)


def test_ticket_values_are_masked_in_both_formats() -> None:
    secret = "k3y-Secret_value"
    record = _record("GET /ws/?ticket=%s&x=1", (secret,))
    assert secret not in json.dumps(_json(record))
    RequestContextFilter().filter(record)
    assert secret not in TextFormatter().format(record)
    assert redact("a?ticket=abc&b=2 ticket=zzz") == "a?ticket=[redacted]&b=2 ticket=[redacted]"


def test_text_format_keeps_the_development_layout() -> None:
    with use_connection_id("c1"):
        record = _record(topic="room.x")
        RequestContextFilter().filter(record)
    line = TextFormatter().format(record)
    assert line.endswith("INFO ws.consumer [user=- ctx=c1] hello world [topic=room.x]")


def _logged_line(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('probe').warning('probe line', extra={'topic': 'room.t'})"
    )
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "shared.settings",
        "DJANGO_DEBUG": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=False, timeout=60
    )


def test_json_is_the_default_and_service_name_is_configurable() -> None:
    default = _logged_line({})
    assert default.returncode == 0, default.stderr
    entry = json.loads(default.stderr.strip().splitlines()[-1])
    assert entry["service"] == "django"
    assert entry["topic"] == "room.t"
    named = _logged_line({"SERVICE_NAME": "ws-eu-1"})
    assert json.loads(named.stderr.strip().splitlines()[-1])["service"] == "ws-eu-1"


def test_text_format_by_environment() -> None:
    result = _logged_line({"LOG_FORMAT": "TEXT"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING probe [user=- ctx=-] probe line [topic=room.t]")


def test_unknown_log_format_fails_start_up_naming_the_variable() -> None:
    result = _logged_line({"LOG_FORMAT": "yaml"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "LOG_FORMAT='yaml'" in result.stderr


@pytest.mark.parametrize(("module", "service"), [("web_service.asgi", "web"), ("ws_service.asgi", "ws")])
def test_each_entry_point_names_its_service(module: str, service: str) -> None:
    code = (
        f"import {module}, logging; "
        "from shared.log_context import use_context_id\n"
        "with use_context_id('ctx-1'): logging.getLogger('probe').warning('probe line')"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "shared.settings",
        "DJANGO_SECRET_KEY": "entry-point-test",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert entry["service"] == service
    key = "connection_id" if service == "ws" else "request_id"
    assert entry[key] == "ctx-1"
