"""The demo page's "Here now" panel (presence) in headless Chromium, against the real services.

Deleted with the presence feature (docs/presence.md): without it the panel
stays hidden and the rest of the page (tests/browser/test_demo_page.py) works
as before. Two users in one room see each other, one leaving is seen, and
after a ws restart the list is back.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Locator, expect

from tests.browser.test_demo_page import (
    RECOVERY_MS,
    DemoPage,
    browser,
    chromium_path,
    demo_servers,
    demo_web,
    two_users_in_a_room,
    ws_server,
)
from tests.support.servers import DaphneServer

__all__ = ["browser", "chromium_path", "demo_servers", "demo_web", "ws_server"]  # fixtures shared with the page tests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _present(page: DemoPage, username: str) -> Locator:
    return page.page.locator("#presence li", has_text=re.compile(f"^{re.escape(username)}"))


async def test_two_users_see_each_other_here_now_and_after_a_ws_restart(
    demo_web: DaphneServer, ws_server: DaphneServer, browser: Browser
) -> None:
    page_a, page_b, room = await two_users_in_a_room(browser, demo_web.http_url, "here")
    for page in (page_a, page_b):
        await expect(page.page.locator("#presence-panel")).to_be_visible()
        for username in (page_a.username, page_b.username):
            await expect(_present(page, username)).to_have_count(1)

    await page_b.join(f"{room}-elsewhere")
    await expect(_present(page_a, page_b.username)).to_have_count(0)
    await page_b.join(room)
    await expect(_present(page_a, page_b.username)).to_have_count(1)

    await asyncio.to_thread(ws_server.stop)
    await asyncio.to_thread(ws_server.start)
    for page in (page_a, page_b):
        await page.expect_connected(within_ms=RECOVERY_MS)
        for username in (page_a.username, page_b.username):
            await expect(_present(page, username)).to_have_count(1)
        assert page.errors == [], page.errors
