"""The demo page at ``/`` in headless Chromium, against the real services.

Debian's chromium (``/usr/bin/chromium``) is driven by Python playwright;
``playwright install`` is never needed. Two browser contexts log in through
the real login form as two users and use the page as a person would: they
see each other's messages. Then
the ws service is restarted (same port). While it is down, messages are
posted over HTTP (``POST /api/topics/<topic>/messages``); each page must
reconnect by itself and show every one of them exactly once.

Further tests: a reload and a return to a room show its recent history (subscribe
with ``recent``), once each even while new messages arrive; one identity line and
friendly status text (also after a logout elsewhere: 4401); the room's own name as
heading and title; the page's own invalid-room message; no 404 (favicon).
The "Here now" panel (presence) is tested in test_demo_page_presence.py.

In tests the web and ws services listen on different ports, so the page's web
server runs with ``WS_PUBLIC_URL`` pointing at the ws service (in production
it is empty: same origin ``/ws/`` through the proxy).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from playwright.async_api import Browser, Page, async_playwright, expect

from shared import messaging
from shared.current_user import use_current_user
from tests.support.live import login
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
# After the ws service is back: the page's backoff is capped at 8 s.
RECOVERY_MS = 30_000
# The newest messages the page shows on joining a room (data-history in home.html).
HISTORY = 50
# Records every text #post-error shows, however briefly (a later post clears it).
RECORD_SHOWN_ERRORS = """
window.shownErrors = [];
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("post-error");
  if (box === null) return;
  new MutationObserver(() => {
    if (!box.hidden && box.textContent) window.shownErrors.push(box.textContent);
  }).observe(box, { attributes: true, childList: true, characterData: true, subtree: true });
});
"""
# Every expect() below waits at most this long unless it says otherwise.
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def demo_servers(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    """The web service, telling the page where the ws service is, and that ws service.

    The page (the web service's origin) opens a cross-origin socket, so the ws
    service lists that origin in DJANGO_CSRF_TRUSTED_ORIGINS, as a deployment
    with separate web and ws hosts must.
    """
    ws = DaphneServer.ws({**service_env, "WS_SERVER": ws_server_kind}, logs_dir / f"demo-ws-{ws_server_kind}.log")
    web = DaphneServer.web({**service_env, "WS_PUBLIC_URL": f"{ws.ws_url}/ws/"}, logs_dir / "demo-web.log")
    trusted = [service_env.get("DJANGO_CSRF_TRUSTED_ORIGINS", ""), web.http_url]
    ws.env["DJANGO_CSRF_TRUSTED_ORIGINS"] = ",".join(origin for origin in trusted if origin)
    ws.start()
    try:
        web.start()
        try:
            yield web, ws
        finally:
            web.stop()
    finally:
        ws.stop()


@pytest.fixture(scope="module")
def demo_web(demo_servers: tuple[DaphneServer, DaphneServer]) -> DaphneServer:
    return demo_servers[0]


@pytest.fixture(scope="module")
def ws_server(demo_servers: tuple[DaphneServer, DaphneServer]) -> DaphneServer:
    """This module's ws service (it trusts the demo page's origin)."""
    return demo_servers[1]


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", pytrace=False)
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            await chromium.close()


class DemoPage:
    """One user's tab on the demo page, logged in through the login form."""

    def __init__(self, page: Page, username: str) -> None:
        self.page = page
        self.username = username
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    @classmethod
    async def open(cls, browser: Browser, web_url: str, username: str) -> DemoPage:
        context = await browser.new_context(base_url=web_url)
        context.set_default_timeout(WAIT_MS)
        await context.add_init_script(RECORD_SHOWN_ERRORS)
        demo = cls(await context.new_page(), username)
        await demo.page.goto("/")  # redirected to the login form
        await expect(demo.page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
        await demo.page.fill("#id_username", username)
        await demo.page.fill("#id_password", PASSWORD)
        await demo.page.click("button[type=submit]")
        await expect(demo.page).to_have_url(re.compile(r"/(#lobby)?$"))
        await demo.expect_connected()
        await demo.expect_room("room.lobby")
        return demo

    async def expect_room(self, room: str) -> None:
        """The heading, the document title and the address name the room as people do ("lobby")."""
        name = room.removeprefix("room.")
        await expect(self.page.locator("#room-title")).to_have_text(name)
        await expect(self.page).to_have_title(f"{name} · Rooms")
        await expect(self.page).to_have_url(re.compile(f"#{re.escape(name)}$"))

    async def expect_connected(self, within_ms: float = WAIT_MS) -> None:
        await expect(self.page.locator("#status")).to_have_attribute("data-state", "open", timeout=within_ms)
        await expect(self.page.locator("#status")).to_have_text("Connected")
        await expect(self.page.locator("#post-button")).to_be_enabled()

    async def join(self, room: str) -> None:
        await self.page.fill("#room-input", room.removeprefix("room."))
        await self.page.click("#room-form button[type=submit]")
        await self.expect_room(room)

    async def post(self, text: str) -> None:
        await self.page.fill("#post-text", text)
        await self.page.press("#post-text", "Enter")
        await expect(self.page.locator("#post-text")).to_have_value("")  # cleared on the ack
        await expect(self.page.locator("#post-error")).to_be_hidden()

    async def expect_message_once(self, text: str, author: str) -> None:
        message = self.page.locator("#messages li.message").filter(
            has=self.page.locator(".text", has_text=re.compile(f"^{re.escape(text)}$"))
        )
        await expect(message).to_have_count(1)
        await expect(message.locator(".author")).to_have_text(author)

    async def shown_errors(self) -> list[str]:
        """Every error text the page showed since it was loaded."""
        shown: list[str] = await self.page.evaluate("window.shownErrors")
        return shown

    async def texts(self) -> list[str]:
        return await self.page.locator("#messages li.message .text").all_text_contents()

    async def ids(self) -> list[int]:
        return [
            int(i)
            for i in await self.page.locator("#messages li.message").evaluate_all("els => els.map(e => e.dataset.id)")
        ]


async def two_users_in_a_room(browser: Browser, web_url: str, kind: str) -> tuple[DemoPage, DemoPage, str]:
    """Two new users (alice-…, bob-…), each logged in on the demo page of the same new room ``room.<kind>-…``.

    Returns their pages and the room's suffix-bearing name.
    """
    suffix = uuid.uuid4().hex[:10]
    alice = await sync_to_async(make_user)(f"alice-{suffix}")
    bob = await sync_to_async(make_user)(f"bob-{suffix}")
    room = f"room.{kind}-{suffix}"
    page_a = await DemoPage.open(browser, web_url, alice.username)
    page_b = await DemoPage.open(browser, web_url, bob.username)
    await page_a.join(room)
    await page_b.join(room)
    return page_a, page_b, room


async def test_two_users_chat_and_the_page_recovers_after_a_ws_restart(
    demo_web: DaphneServer, ws_server: DaphneServer, browser: Browser
) -> None:
    page_a, page_b, room = await two_users_in_a_room(browser, demo_web.http_url, "demo")

    # Messages both ways.
    await page_a.post("hello from alice")
    await page_b.expect_message_once("hello from alice", page_a.username)
    await page_b.post("hello from bob")
    await page_a.expect_message_once("hello from bob", page_b.username)

    # Restart the ws service; post over HTTP while it is down.
    missed = ["posted while the ws service was down 1", "posted while the ws service was down 2"]
    await asyncio.to_thread(ws_server.stop)
    try:
        for page in (page_a, page_b):
            await expect(page.page.locator("#status")).to_have_attribute(
                "data-state", re.compile("reconnecting|connecting")
            )
            # The drain closed with 1012: said in words, and kept while the attempts fail.
            await expect(page.page.locator("#status")).to_have_text("The server is restarting — reconnecting…")
            await expect(page.page.locator("#post-button")).to_be_disabled()
        http = await login(demo_web.http_url, page_b.username, PASSWORD)
        try:
            for text in missed:
                response = await http.post(
                    f"/api/topics/{room}/messages",
                    json={"text": text},
                    headers={"X-CSRFToken": http.cookies["csrftoken"], "Origin": demo_web.http_url},
                )
                assert response.status_code == 201, response.text
        finally:
            await http.aclose()
    finally:
        await asyncio.to_thread(ws_server.start)

    for page in (page_a, page_b):
        await page.expect_connected(within_ms=RECOVERY_MS)
        for text in missed:
            await page.expect_message_once(text, page_b.username)

    # Live again after the restart, in both directions.
    await page_b.post("after the restart")
    await page_a.expect_message_once("after the restart", page_b.username)
    await page_a.post("welcome back")
    await page_b.expect_message_once("welcome back", page_a.username)
    expected = ["hello from alice", "hello from bob", *missed, "after the restart", "welcome back"]
    for page in (page_a, page_b):
        assert await page.texts() == expected
        ids = await page.ids()
        assert ids == sorted(ids), ids
        assert len(set(ids)) == len(ids), ids
        # Nothing went wrong on the way, also on a server without optional features (presence: unknown_type).
        assert await page.shown_errors() == []
        assert page.errors == [], page.errors


def _store_messages(username: str, topic: str, count: int) -> list[int]:
    """``count`` messages stored as ``username`` without live delivery (history only)."""
    user = User.objects.get(username=username)
    with use_current_user(user):
        return [messaging.store_message(topic, f"old {i}")["id"] for i in range(1, count + 1)]


async def _post_over_http(web_url: str, username: str, topic: str, texts: list[str]) -> None:
    http = await login(web_url, username, PASSWORD)
    try:
        for text in texts:
            response = await http.post(
                f"/api/topics/{topic}/messages",
                json={"text": text},
                headers={"X-CSRFToken": http.cookies["csrftoken"], "Origin": web_url},
            )
            assert response.status_code == 201, response.text
    finally:
        await http.aclose()


async def test_a_reload_and_returning_to_a_room_show_its_recent_history(
    demo_web: DaphneServer, browser: Browser
) -> None:
    page_a, page_b, room = await two_users_in_a_room(browser, demo_web.http_url, "history")
    await page_a.post("first")
    await page_b.post("second")
    await page_a.expect_message_once("second", page_b.username)

    # A reload: the page starts empty and shows the stored messages again, once each.
    await page_a.page.reload()
    await page_a.expect_connected()
    await page_a.expect_room(room)
    await page_a.expect_message_once("first", page_a.username)
    await page_a.expect_message_once("second", page_b.username)
    assert await page_a.texts() == ["first", "second"]

    # Away to another room (its own history only), then back: the room's history is there.
    await page_a.join("room.lobby")
    await expect(page_a.page.locator("#messages li.message .text", has_text="second")).to_have_count(0)
    await page_b.post("while alice was away")
    await page_a.join(room)
    await page_a.expect_message_once("while alice was away", page_b.username)
    assert await page_a.texts() == ["first", "second", "while alice was away"]

    # Live after the history.
    await page_b.post("live again")
    await page_a.expect_message_once("live again", page_b.username)
    assert await page_a.texts() == ["first", "second", "while alice was away", "live again"]
    assert page_a.errors == [], page_a.errors


async def test_joining_shows_the_newest_messages_once_while_new_ones_arrive(
    demo_web: DaphneServer, browser: Browser
) -> None:
    suffix = uuid.uuid4().hex[:10]
    alice = await sync_to_async(make_user)(f"alice-{suffix}")
    bob = await sync_to_async(make_user)(f"bob-{suffix}")
    room = f"room.busy-{suffix}"
    stored = await sync_to_async(_store_messages)(bob.username, room, HISTORY + 30)
    page = await DemoPage.open(browser, demo_web.http_url, alice.username)

    # Bob keeps posting while alice joins, so new messages can arrive during the replay.
    live = [f"new {i}" for i in range(1, 11)]
    posting = asyncio.create_task(_post_over_http(demo_web.http_url, bob.username, room, live))
    await page.join(room)
    await posting
    await page.expect_message_once(live[-1], bob.username)

    ids = await page.ids()
    texts = await page.texts()
    last = stored[-1] + len(live)
    # The newest HISTORY messages when the page subscribed (the snapshot saw between 0 and 10 of the new ones),
    # then every later one: each once, in order, nothing older.
    assert ids == list(range(ids[0], last + 1)), ids
    assert stored[-1] - HISTORY + 1 <= ids[0] <= stored[-1] - HISTORY + 1 + len(live), ids[0]
    assert texts[-len(live) :] == live
    assert page.errors == [], page.errors


async def test_one_identity_line_and_friendly_status_after_a_logout_elsewhere(
    demo_web: DaphneServer, browser: Browser
) -> None:
    alice = await sync_to_async(make_user)(f"alice-{uuid.uuid4().hex[:10]}")
    page = await DemoPage.open(browser, demo_web.http_url, alice.username)
    header = page.page.locator("header.bar")
    await expect(header).to_contain_text(f"Signed in as {alice.username}")
    await expect(header).not_to_contain_text("Connected as")
    await expect(page.page.locator("#status")).to_have_text("Connected")
    await _expect_status_fits(page.page)

    # Logging out in another tab ends the session: the server closes with 4401.
    other = await page.page.context.new_page()
    await other.goto("/")
    await other.click("form.logout button[type=submit]")
    status = page.page.locator("#status")
    await expect(status).to_have_attribute("data-state", "stopped")
    await expect(status).to_have_text("Signed out — log in again")
    await expect(status.locator("a")).to_have_attribute("href", "/accounts/login/?next=/")
    await expect(page.page.locator("#post-button")).to_be_disabled()
    await _expect_status_fits(page.page)
    await page.page.set_viewport_size({"width": 360, "height": 700})
    await _expect_status_fits(page.page)
    assert page.errors == [], page.errors


async def _expect_status_fits(page: Page) -> None:
    """The status pill shows all of its text: nothing overflows it, and it lies inside the window."""
    box = await page.locator("#status").evaluate(
        """el => {
          const r = el.getBoundingClientRect();
          return {overflowX: el.scrollWidth - el.clientWidth, overflowY: el.scrollHeight - el.clientHeight,
                  left: r.left, right: r.right, width: window.innerWidth};
        }"""
    )
    assert box["overflowX"] <= 0, box
    assert box["overflowY"] <= 0, box
    assert box["left"] >= 0, box
    assert box["right"] <= box["width"], box


async def test_an_invalid_room_shows_the_page_s_own_message(demo_web: DaphneServer, browser: Browser) -> None:
    page = await DemoPage.open(
        browser, demo_web.http_url, (await sync_to_async(make_user)(f"a-{uuid.uuid4().hex[:10]}")).username
    )
    error = page.page.locator("#room-error")
    await expect(error).to_be_hidden()

    await page.page.fill("#room-input", "Not a room!")
    await page.page.click("#room-form button[type=submit]")
    await expect(error).to_be_visible()
    await expect(error).to_have_text("“Not a room!” is not a room name. A room name is 1 to 64 of a-z, 0-9, - and _.")
    await expect(page.page.locator("#room-input")).to_have_attribute("aria-invalid", "true")
    # The browser's own validation (which would hide the page's message behind its bubble) is not in play.
    assert await page.page.locator("#room-input").evaluate("el => el.validity.valid && el.validationMessage === ''")
    await page.expect_room("room.lobby")  # still in the lobby

    await page.page.fill("#room-input", "")
    await page.page.click("#room-form button[type=submit]")
    await expect(error).to_have_text("Type a room name. A room name is 1 to 64 of a-z, 0-9, - and _.")

    await page.page.press("#room-input", "x")  # typing clears the message
    await expect(error).to_be_hidden()
    await page.join("room.valid-name")
    await expect(error).to_be_hidden()
    assert page.errors == [], page.errors


async def test_the_pages_load_without_a_404_and_have_a_favicon(demo_web: DaphneServer, browser: Browser) -> None:
    alice = await sync_to_async(make_user)(f"alice-{uuid.uuid4().hex[:10]}")
    context = await browser.new_context(base_url=demo_web.http_url)
    failed: list[str] = []
    context.on(
        "response",
        lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None,
    )
    page = await context.new_page()
    demo = DemoPage(page, alice.username)
    await page.goto("/accounts/login/")
    icon = page.locator("link[rel=icon]")
    await expect(icon).to_have_attribute("type", "image/svg+xml")
    await page.fill("#id_username", alice.username)
    await page.fill("#id_password", PASSWORD)
    await page.click("button[type=submit]")
    await demo.expect_connected()
    await expect(icon).to_have_count(1)

    href = await icon.get_attribute("href")
    assert href is not None
    for path in (href, "/favicon.ico"):  # /favicon.ico: asked by browsers and tools on any page without the link
        response = await page.request.get(path)
        assert response.status == 200, (path, response.status)
        assert response.headers["content-type"].startswith("image/svg+xml"), (path, response.headers)
        assert (await response.body()).startswith(b"<svg"), path
    assert failed == [], failed
    assert demo.errors == [], demo.errors
    await context.close()
