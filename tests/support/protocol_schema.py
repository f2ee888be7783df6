"""Validate real frames against docs/asyncapi.yaml."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SPEC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
Direction = Literal["client", "server"]


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return spec


@cache
def _validators(direction: Direction) -> dict[str, Draft202012Validator]:
    """A validator per frame ``type`` for frames sent by ``direction``."""
    spec = _spec()
    registry: Registry[Any] = Registry().with_resource("spec", Resource.opaque(spec))
    operation = spec["operations"]["clientSends" if direction == "client" else "serverSends"]
    by_type: dict[str, Draft202012Validator] = {}
    for ref in operation["messages"]:
        message_name = ref["$ref"].rsplit("/", 1)[-1]
        schema_ref = spec["components"]["messages"][message_name]["payload"]["$ref"]
        schema_name = schema_ref.rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][schema_name]
        frame_type = schema["properties"]["type"]["const"]
        wrapped = {"$ref": f"spec{schema_ref}"}
        by_type[frame_type] = Draft202012Validator(wrapped, registry=registry, format_checker=FormatChecker())
    return by_type


def validate_frame(frame: dict[str, Any], direction: Direction) -> None:
    """Raise ``AssertionError`` unless ``frame`` matches the spec for its type."""
    validators = _validators(direction)
    frame_type = frame.get("type")
    assert frame_type in validators, f"{direction} frame type {frame_type!r} is not in docs/asyncapi.yaml"
    errors = sorted(validators[frame_type].iter_errors(frame), key=str)
    assert not errors, f"{direction} frame {frame!r} violates docs/asyncapi.yaml: {errors[0].message}"


def frame_types(direction: Direction) -> set[str]:
    """The frame types docs/asyncapi.yaml lists for frames sent by ``direction``."""
    return set(_validators(direction))
