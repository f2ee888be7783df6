"""Logging in to the web service with the standard library only.

:class:`WebLogin` does what a browser does: ``GET`` the login page for the
``csrftoken`` cookie and the form's ``csrfmiddlewaretoken``, ``POST`` the
form, then ``POST /api/ws-ticket`` with the ``X-CSRFToken`` header and an
``Origin``. Its :meth:`WebLogin.ticket_provider` is what
:class:`wsclient.client.WsClient` calls before each connection attempt.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import IO, Any
from urllib.parse import SplitResult, quote, urlsplit

from wsclient.errors import NotLoggedInError

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


def _http_url(url: str) -> SplitResult:
    """``url`` split, if it is an absolute http(s) URL (urllib would also open ``file:``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return parts


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects as they are: a successful login answers 302."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        """Never follow."""
        return None


class WebLogin:
    """A logged-in session of the web service, kept in a cookie jar.

    ``ticket_url`` is the full URL of ``/api/ws-ticket``; the login form is
    looked for at ``login_url`` (default: ``/accounts/login/`` on the same
    origin). Network errors propagate as ``OSError`` (the client retries
    them); refused credentials raise :class:`~wsclient.errors.NotLoggedInError`
    (the client stops).
    """

    def __init__(
        self,
        ticket_url: str,
        username: str,
        password: str,
        *,
        login_url: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Remember where and as whom to log in; nothing is sent yet."""
        parts = _http_url(ticket_url)
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self.ticket_url = ticket_url
        self.login_url = login_url or f"{self.base_url}/accounts/login/"
        _http_url(self.login_url)
        self.username = username
        self._password = password
        self.timeout = timeout
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` in the jar, if any."""
        for cookie in self.cookies:
            if cookie.name == name:
                return cookie.value
        return None

    @property
    def session_key(self) -> str | None:
        """The ``sessionid`` cookie once logged in."""
        return self.cookie("sessionid")

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes]:
        """Status and body; HTTP errors and redirects are returned, not raised."""
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def _post(self, url: str, data: bytes, content_type: str) -> tuple[int, bytes]:
        csrf = self.cookie("csrftoken") or ""
        headers = {
            "Content-Type": content_type,
            "X-CSRFToken": csrf,
            "Origin": self.base_url,
            "Referer": self.login_url,
        }
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - http(s) only
        return self._open(request)

    def login(self) -> None:
        """Log in through the real login form (CSRF and all)."""
        status, page = self._open(urllib.request.Request(self.login_url))  # noqa: S310 - checked in __init__
        if status != 200:
            raise OSError(f"GET {self.login_url} answered {status}")
        match = CSRF_INPUT.search(page.decode("utf-8", "replace"))
        if match is None:
            raise OSError(f"{self.login_url} has no csrfmiddlewaretoken field")
        form = urllib.parse.urlencode(
            {"username": self.username, "password": self._password, "csrfmiddlewaretoken": match.group(1)}
        ).encode()
        status, _ = self._post(self.login_url, form, "application/x-www-form-urlencoded")
        if status == 302 and self.session_key:
            return
        if status in (200, 403):  # the form again (bad credentials) or a CSRF refusal
            raise NotLoggedInError(f"login as {self.username!r} refused (HTTP {status})")
        raise OSError(f"POST {self.login_url} answered {status}")

    def logout(self) -> None:
        """``POST /accounts/logout/``: ends the session (the server closes its sockets with 4401)."""
        status, _ = self._post(f"{self.base_url}/accounts/logout/", b"", "application/x-www-form-urlencoded")
        if status not in (200, 302):
            raise OSError(f"logout answered {status}")

    def _post_json(self, url: str, payload: dict[str, Any] | None) -> tuple[int, Any]:
        """POST as the logged-in user, logging in (again) once if the session is missing or expired."""
        body = json.dumps(payload).encode() if payload is not None else b""
        for attempt in range(2):
            if self.session_key is None:
                self.login()
            status, raw = self._post(url, body, "application/json")
            if status == 401 and attempt == 0:
                self.cookies.clear()
                continue
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw.decode("utf-8", "replace")
            return status, data
        raise NotLoggedInError("the web service does not accept the session")  # pragma: no cover

    def fetch_ticket(self) -> str:
        """A fresh one-time WebSocket ticket (blocking)."""
        status, data = self._post_json(self.ticket_url, None)
        if status == 401:
            raise NotLoggedInError("the web service does not accept the session")
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("ticket"), str):
            raise OSError(f"POST {self.ticket_url} answered {status}: {data!r:.200}")
        ticket: str = data["ticket"]
        return ticket

    async def ticket_provider(self) -> str:
        """:meth:`fetch_ticket` in a thread: pass this to ``WsClient(ticket_provider=...)``."""
        return await asyncio.to_thread(self.fetch_ticket)

    def post_message(self, topic: str, text: str) -> dict[str, Any]:
        """``POST /api/topics/<topic>/messages`` (blocking); the ``201`` body.

        Raises ``OSError`` for any other status, carrying the body.
        """
        url = f"{self.base_url}/api/topics/{quote(topic, safe='')}/messages"
        status, data = self._post_json(url, {"text": text})
        if status != 201 or not isinstance(data, dict):
            raise OSError(f"POST {url} answered {status}: {data!r:.200}")
        return data
