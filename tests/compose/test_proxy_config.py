"""Static checks of the nginx templates: the proxy sets forwarding headers itself.

No Docker needed: ``proxy/templates/*.template`` are parsed here (a small
nginx tokenizer, ``include`` of another template followed) and, for every
``location`` that proxies, the request headers nginx would send upstream are
worked out with nginx's inheritance rule: ``proxy_set_header`` directives are
inherited from the enclosing block only when a block has none of its own.

Each proxying location must set ``X-Forwarded-For``/``-Proto`` from what the
proxy itself knows (never appending to the client's value) and must clear
every header a client could use to spoof its address, host, port, scheme or
Daphne's ASGI ``root_path``. The end-to-end test (test_compose_e2e.py) checks
the same against the running stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.compose.support import ROOT

TEMPLATES = ROOT / "proxy" / "templates"
# Where the nginx image's entrypoint renders the templates (envsubst, ".template" dropped).
RENDERED_DIR = "/etc/nginx/conf.d/"

# Set by the proxy from its own view of the connection.
REQUIRED_VALUES = {
    "x-forwarded-for": "$remote_addr",
    "x-forwarded-proto": "$scheme",
}
# Client-supplied values that must never reach Daphne or Django.
MUST_BE_CLEARED = (
    "daphne-root-path",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
    "forwarded",
)


@dataclass
class Block:
    """One nginx block (or the file's top level): its directives and nested blocks."""

    name: str
    args: list[str]
    directives: list[list[str]] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)
    parent: Block | None = None


def tokenize(text: str) -> Iterator[str]:
    """nginx tokens: words (``${VAR}`` kept whole), quoted strings (unquoted), ``{``, ``}``, ``;``."""
    i, length = 0, len(text)
    while i < length:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "#":
            while i < length and text[i] != "\n":
                i += 1
        elif char in "{};":
            yield char
            i += 1
        elif char in "\"'":
            end = text.index(char, i + 1)
            yield text[i + 1 : end]
            i = end + 1
        else:
            start = i
            while i < length and not text[i].isspace() and text[i] not in ";{}":
                if text.startswith("${", i):
                    i = text.index("}", i) + 1
                else:
                    i += 1
            yield text[start:i]


def template_for(include_path: str, templates: Path = TEMPLATES) -> Path:
    """The template in ``templates`` that an ``include`` of a rendered file comes from."""
    assert include_path.startswith(RENDERED_DIR), include_path
    template = templates / (include_path.removeprefix(RENDERED_DIR) + ".template")
    assert template.is_file(), f"include {include_path}: no template {template.name}"
    return template


def parse(path: Path, root: Block | None = None) -> Block:
    """``path`` parsed into ``root`` (a new top-level block by default); includes are inlined."""
    top = root or Block(name="main", args=[])
    stack = [top]
    words: list[str] = []
    for token in tokenize(path.read_text()):
        current = stack[-1]
        if token == ";":
            if words[0] == "include":
                included = parse(template_for(words[1], path.parent), Block(name="include", args=[]))
                current.directives.extend(included.directives)
                for child in included.children:
                    child.parent = current
                current.children.extend(included.children)
            else:
                current.directives.append(words)
            words = []
        elif token == "{":
            child = Block(name=words[0], args=words[1:], parent=current)
            current.children.append(child)
            stack.append(child)
            words = []
        elif token == "}":
            assert not words, f"{path.name}: unterminated directive {words}"
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1, f"{path.name}: unbalanced braces"
    assert not words, f"{path.name}: unterminated directive {words}"
    return top


def walk(block: Block) -> Iterator[Block]:
    yield block
    for child in block.children:
        yield from walk(child)


def effective_proxy_headers(block: Block) -> dict[str, str]:
    """What ``proxy_set_header`` amounts to in ``block`` (nginx inheritance), names lower-cased."""
    level: Block | None = block
    while level is not None:
        own = [d for d in level.directives if d[0] == "proxy_set_header"]
        if own:
            headers: dict[str, str] = {}
            for directive in own:
                assert len(directive) == 3, f"proxy_set_header takes a name and a value: {directive}"
                name = directive[1].lower()
                assert name not in headers, f"{name} set twice in one block"
                headers[name] = directive[2]
            return headers
        level = level.parent
    return {}


def proxying_locations(templates: Path = TEMPLATES) -> list[tuple[str, Block]]:
    """``(file:location, block)`` of every location with a ``proxy_pass``, across all top-level templates."""
    found: list[tuple[str, Block]] = []
    for template in sorted(templates.glob("*.conf.template")):
        for block in walk(parse(template)):
            if block.name == "location" and any(d[0] == "proxy_pass" for d in block.directives):
                found.append((f"{template.name}:{' '.join(block.args)}", block))
    return found


LOCATIONS = proxying_locations()


def test_tokenizer_keeps_envsubst_placeholders_and_quoted_empty_values() -> None:
    tokens = list(tokenize('set $up ${WEB_UPSTREAM}; # comment {\nproxy_set_header Forwarded "";'))
    assert tokens == ["set", "$up", "${WEB_UPSTREAM}", ";", "proxy_set_header", "Forwarded", "", ";"]


def test_inheritance_follows_nginx() -> None:
    """A block with its own proxy_set_header inherits none; one without inherits all."""
    outer = Block(name="server", args=[], directives=[["proxy_set_header", "X-Real-IP", ""]])
    inheriting = Block(name="location", args=["/a"], parent=outer)
    overriding = Block(name="location", args=["/b"], parent=outer, directives=[["proxy_set_header", "Host", "$host"]])
    assert effective_proxy_headers(inheriting) == {"x-real-ip": ""}
    assert effective_proxy_headers(overriding) == {"host": "$host"}


def test_both_services_are_proxied() -> None:
    names = {name.split(":", 1)[1] for name, _ in LOCATIONS}
    assert {"/ws/", "/"} <= names, names
    upstreams = {d[1] for _, block in LOCATIONS for d in block.directives if d[0] == "proxy_pass"}
    assert upstreams == {"http://ws_backend", "http://web_backend"}


@pytest.mark.parametrize(("name", "block"), LOCATIONS, ids=[name for name, _ in LOCATIONS])
def test_location_sets_forwarding_headers_itself(name: str, block: Block) -> None:
    headers = effective_proxy_headers(block)
    for header, value in REQUIRED_VALUES.items():
        assert headers.get(header) == value, f"{name}: {header} must be {value!r}, is {headers.get(header)!r}"
    assert "$proxy_add_x_forwarded_for" not in headers.values(), f"{name}: appends the client's X-Forwarded-For"
    assert headers.get("host") in ("$http_host", "$host"), f"{name}: Host must be set explicitly"


@pytest.mark.parametrize(("name", "block"), LOCATIONS, ids=[name for name, _ in LOCATIONS])
def test_location_clears_client_supplied_proxy_headers(name: str, block: Block) -> None:
    headers = effective_proxy_headers(block)
    for header in MUST_BE_CLEARED:
        assert headers.get(header) == "", f'{name}: {header} must be cleared (""), is {headers.get(header)!r}'


def test_headers_with_underscores_stay_dropped() -> None:
    """Django maps ``X_Forwarded_For`` like ``X-Forwarded-For``; nginx drops such headers by default."""
    for template in TEMPLATES.glob("*.template"):
        directives = [d for block in walk(parse(template)) for d in block.directives]
        assert ["underscores_in_headers", "on"] not in directives, template.name
        assert ["ignore_invalid_headers", "off"] not in directives, template.name


def test_every_template_is_parsed() -> None:
    """Every template is either a top-level conf or included by one, so nothing escapes these checks."""
    text = "\n".join(path.read_text() for path in TEMPLATES.glob("*.template"))
    included = {template_for(path).name for path in re.findall(r"^\s*include\s+(\S+);", text, flags=re.MULTILINE)}
    top_level = {p.name for p in TEMPLATES.glob("*.conf.template")}
    assert {p.name for p in TEMPLATES.glob("*.template")} == top_level | included


def test_a_location_with_headers_of_its_own_loses_the_included_ones(tmp_path: Path) -> None:
    """The trap these checks exist for: one extra proxy_set_header in a location, and nothing is inherited."""
    (tmp_path / "proxy-headers.inc.template").write_text((TEMPLATES / "proxy-headers.inc.template").read_text())
    (tmp_path / "default.conf.template").write_text(
        "server {\n"
        "    include /etc/nginx/conf.d/proxy-headers.inc;\n"
        "    location /ok/ { proxy_pass http://web; }\n"
        "    location /ws/ { proxy_set_header Upgrade $http_upgrade; proxy_pass http://ws; }\n"
        "}\n"
    )
    headers = {name: effective_proxy_headers(block) for name, block in proxying_locations(tmp_path)}
    assert headers["default.conf.template:/ok/"]["daphne-root-path"] == ""
    assert headers["default.conf.template:/ws/"] == {"upgrade": "$http_upgrade"}


# ---------------------------------------------------------------------------
# Limits, balancing, what is not served and what is not logged (issue #11)
# ---------------------------------------------------------------------------

MAIN = parse(TEMPLATES / "default.conf.template")
SERVER = next(block for block in walk(MAIN) if block.name == "server")
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
NGINX_CONF = (ROOT / "proxy" / "nginx.conf").read_text()
# nginx's severities, most verbose first.
LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")


def location(args: str) -> Block:
    found = [block for block in walk(MAIN) if block.name == "location" and " ".join(block.args) == args]
    assert len(found) == 1, f"location {args}: {len(found)} found"
    return found[0]


def directives(block: Block, name: str) -> list[list[str]]:
    return [d for d in block.directives if d[0] == name]


def test_every_placeholder_is_set_in_the_proxy_environment() -> None:
    """envsubst leaves an unset ${VAR} in place, and nginx then refuses to start."""
    placeholders: set[str] = set()
    for template in TEMPLATES.glob("*.template"):
        placeholders |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", template.read_text()))
    environment = COMPOSE["services"]["proxy"]["environment"]
    assert placeholders <= set(environment), placeholders - set(environment)


def test_logs_never_carry_the_query_string() -> None:
    """A /ws/?ticket=... URL is a credential: the access log format uses $uri, never the request line."""
    (log_format,) = directives(MAIN, "log_format")
    variables = set(re.findall(r"\$[a-z_]+", " ".join(log_format[2:])))
    assert not variables & {"$request", "$request_uri", "$query_string", "$args", "$is_args"}, variables
    assert not [name for name in variables if name.startswith("$arg_")], variables
    assert "$uri" in variables
    for block in walk(MAIN):
        for access_log in directives(block, "access_log"):
            assert access_log[1] == "off" or access_log[2:3] == ["proxy"], access_log


def test_nginx_messages_about_ws_requests_are_not_logged() -> None:
    """nginx's error lines quote the request line (and the ticket): /ws/ logs only crit and worse."""
    (error_log,) = directives(location("/ws/"), "error_log")
    assert LEVELS.index(error_log[2]) >= LEVELS.index("crit"), error_log


def test_probes_are_not_served_publicly() -> None:
    for path in ("/healthz", "/readyz"):
        block = location(f"= {path}")
        assert directives(block, "return") == [["return", "404"]]
        assert not directives(block, "proxy_pass")


@pytest.mark.parametrize(("name", "service"), [("ws_backend", "WS_UPSTREAM"), ("web_backend", "WEB_UPSTREAM")])
def test_upstreams_balance_over_every_replica(name: str, service: str) -> None:
    (upstream,) = [block for block in walk(MAIN) if block.name == "upstream" and block.args == [name]]
    assert directives(upstream, "zone"), "resolve needs a shared zone"
    assert directives(upstream, "least_conn")
    (server,) = directives(upstream, "server")
    assert server[1] == "${" + service + "}"
    assert "resolve" in server[2:]
    (resolver,) = directives(MAIN, "resolver")
    assert resolver[1] == "127.0.0.11"
    valid = next(arg for arg in resolver if arg.startswith("valid="))
    assert int(valid.removeprefix("valid=").removesuffix("s")) <= 5


def test_a_failed_handshake_is_retried_on_another_replica_within_bounds() -> None:
    block = location("/ws/")
    (next_upstream,) = directives(block, "proxy_next_upstream")
    assert {"error", "timeout", "http_502"} <= set(next_upstream[1:])
    assert "non_idempotent" not in next_upstream
    (tries,) = directives(block, "proxy_next_upstream_tries")
    assert 1 < int(tries[1]) <= 5
    assert directives(block, "proxy_next_upstream_timeout")


@pytest.mark.parametrize(
    ("path", "zone"),
    [
        ("/ws/", "ws_handshake"),
        ("= /accounts/login/", "login"),
        ("= /admin/login/", "login"),
        ("/admin/", "app"),
        ("/api/", "app"),
    ],
)
def test_per_address_request_limits(path: str, zone: str) -> None:
    (limit,) = directives(location(path), "limit_req")
    assert limit[1] == f"zone={zone}"
    zones = {d[2].removeprefix("zone=").split(":")[0]: d[1] for d in directives(MAIN, "limit_req_zone")}
    if zone == "login":
        assert zones[zone] == "$login_attempt_key"  # POSTs only: a page view is no password attempt
    else:
        assert zones[zone] == "$binary_remote_addr"


def test_per_address_connection_limits_and_429() -> None:
    (ws_limit,) = directives(location("/ws/"), "limit_conn")
    assert ws_limit[1:] == ["ws_conn", "${PROXY_WS_CONNECTIONS_PER_IP}"]
    (http_limit,) = directives(SERVER, "limit_conn")
    assert http_limit[1] == "http_conn"
    assert ["limit_req_status", "429"] in MAIN.directives
    assert ["limit_conn_status", "429"] in MAIN.directives


def test_slow_clients_are_dropped_quickly_and_capacity_is_raised() -> None:
    header_timeout = re.search(r"^\s*client_header_timeout (\d+)s;", NGINX_CONF, flags=re.MULTILINE)
    assert header_timeout
    assert int(header_timeout[1]) <= 10  # nginx's default is 60 s
    assert re.search(r"^\s*reset_timedout_connection on;", NGINX_CONF, flags=re.MULTILINE)
    assert re.search(r"^\s*include /etc/nginx/conf.d/\*\.conf;", NGINX_CONF, flags=re.MULTILINE)
    assert not re.search(r"^\s*user ", NGINX_CONF, flags=re.MULTILINE), "each image's own unprivileged user"
