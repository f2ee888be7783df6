"""The Python client's presence calls and CLI command against the real services, on each server.

Deleted with the presence feature (docs/presence.md); the client keeps its
``presence()``, which a server without the feature answers with ``unknown_type``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared import presence
from shared.presence import PresenceEntry
from shared.redis_client import get_redis
from tests.clients.test_python_client import _cli, _cli_env, _client, _next, _session_key
from tests.clients.test_python_client_refs import FAST, REQUEST_TIMEOUT, _outcome, _refused
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_presence_lists_the_subscribers_and_diffs_report_joins_and_leaves(ws_server: DaphneServer) -> None:
    alice, alice_key = await _session_key("pyp_alice")
    bob, bob_key = await _session_key("pyp_bob")
    topic = "room.pyp-two-clients"
    async with (
        _client(ws_server, session_cookie=alice_key) as alice_client,
        _client(ws_server, session_cookie=bob_key) as bob_client,
    ):
        alice_events = alice_client.events()
        await alice_client.subscribe(topic)
        await bob_client.subscribe(topic)
        joined = [(await _next(alice_events, "presence_diff"))["joined"] for _ in range(2)]
        assert joined == [[alice], [bob]]  # her own arrival, then bob's
        users = await alice_client.presence(topic)
        assert sorted(user["id"] for user in users) == sorted([alice["id"], bob["id"]])
        await bob_client.unsubscribe(topic)
        assert (await _next(alice_events, "presence_diff"))["left"] == [bob]


async def test_presence_follows_the_pages_of_a_topic_too_large_for_one_frame(ws_server: DaphneServer) -> None:
    topic = "room.py-crowd"
    # 700 users of ~120 bytes each: more than one 64 KiB frame holds.
    entries = [PresenceEntry(topic, f"crowd{i}", 950_000 + i, f"{i:04d}" + "c" * 100) for i in range(700)]
    for entry in entries:
        await presence.join(entry)
    try:
        _, alice_key = await _session_key("py_pager")
        async with _client(ws_server, session_cookie=alice_key) as alice_client:
            users = await alice_client.presence(topic)
        assert [user["username"] for user in users] == [entry.username for entry in entries]
    finally:
        for entry in entries:
            await presence.leave(entry)
        await get_redis().aclose()


async def test_presence_requests_refused_fail_at_once_with_the_error_echoing_their_ref(ws_server: DaphneServer) -> None:
    alice, alice_key = await _session_key("pyp_ref_alice")
    bob, bob_key = await _session_key("pyp_ref_bob")
    crowded, quiet, theirs = "room.pyp-crowded", "room.pyp-quiet", f"user.{bob['id']}"
    async with (
        _client(ws_server, session_cookie=alice_key, request_timeout=REQUEST_TIMEOUT) as a,
        _client(ws_server, session_cookie=bob_key, request_timeout=REQUEST_TIMEOUT) as b,
    ):
        assert (await _refused(a.presence(theirs))).code == "forbidden"
        assert (await _refused(a.presence("Not A Topic"))).code == "bad_topic"
        await b.subscribe(crowded)
        await a.subscribe(crowded)
        await a.subscribe(quiet)
        async with asyncio.timeout(FAST * 2):
            pages: list[Any] = await asyncio.gather(
                a.presence(crowded), a.presence(quiet), a.presence(theirs), return_exceptions=True
            )
        crowd, alone, refused = pages
        assert isinstance(crowd, list), crowd
        assert isinstance(alone, list), alone
        assert sorted(user["id"] for user in crowd) == sorted([alice["id"], bob["id"]])
        assert [user["id"] for user in alone] == [alice["id"]]
        assert _outcome(refused) == "forbidden"
        assert a.connected


async def test_cli_presence(ws_server: DaphneServer) -> None:
    _, key = await _session_key("pyp_cli")
    url = f"{ws_server.ws_url}/ws/"
    code, out, err = await _cli("--url", url, "presence", "room.pyp-nobody", env=_cli_env(WSCLIENT_SESSION=key))
    assert (code, json.loads(out)["users"]) == (0, []), err
