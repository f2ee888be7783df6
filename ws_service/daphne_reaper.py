"""Daphne's application checker, per process: each second only the connections with something to do are checked.

Daphne's ``Server.application_checker`` runs every second over *every*
connection: has it disconnected with its application still running past
``application_close_timeout`` (cancel it), has its application finished (log
an exception, tell the protocol, forget the future), is it gone for good
(forget the connection). With N idle connections that is N dictionary walks a
second with nothing to do; at 10,000 idle connections it was about 40 % of an
idle Daphne process's CPU.

Patched here (by the launcher, in its own process only): a connection is put
on a per-server *attention list* when something happens that the checker acts
on, and each second the checker looks only at that list:

* its application future finishes (a done-callback, added where Daphne creates
  the future): reaped at the next check, exception logged and, if still
  connected, handed to the protocol (``handle_exception``: 1011 or a 500), as
  Daphne does;
* it disconnects (``protocol_disconnected``): checked every second until its
  application has finished (then it is forgotten) or
  ``application_close_timeout`` has passed (then the application is cancelled),
  as Daphne does.

An idle open connection is on no list, so an idle second costs nothing per
connection. The per-connection rules are Daphne 4's (``_check`` below follows
``Server.application_checker`` line by line); :func:`install` patches only
Daphne versions it was written against (:data:`SUPPORTED_DAPHNE`), and leaves
any other version's checker alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import CancelledError
from typing import Any, Final

from ws_service.daphne_version import kept_on, supported

logger = logging.getLogger("daphne.server")  # Daphne's own logger: its messages stay where they were

REAPER_ATTRIBUTE: Final = "_ws_application_reaper"
CHECK_SECONDS: Final = 1.0


class ApplicationReaper:
    """One per Daphne server: the connections its application checker has to look at."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # An insertion-ordered set: protocol -> None.
        self.attention: dict[Any, None] = {}
        # Each running application's connection, so that one done-callback (this bound method,
        # made once) serves every connection: no closure per connection.
        self.owners: dict[asyncio.Future[Any], Any] = {}
        self.finished = self._finished
        #: per-connection checks made, for tests and curiosity.
        self.checks = 0

    def mark(self, protocol: Any) -> None:
        """``protocol`` has something for the checker (its application finished, or it disconnected)."""
        self.attention[protocol] = None

    def watch(self, future: asyncio.Future[Any], protocol: Any) -> None:
        """Mark ``protocol`` once its application ``future`` finishes."""
        self.owners[future] = protocol
        future.add_done_callback(self.finished)

    def _finished(self, future: asyncio.Future[Any]) -> None:
        protocol = self.owners.pop(future, None)
        if protocol is not None:
            self.mark(protocol)

    def tick(self, now: float) -> None:
        """Daphne's per-connection checks, on the connections marked; those with nothing left are unmarked."""
        connections = self.server.connections
        for protocol in list(self.attention):
            details = connections.get(protocol)
            self.checks += 1
            if details is None or not self._check(protocol, details, now):
                self.attention.pop(protocol, None)

    def _check(self, protocol: Any, details: dict[str, Any], now: float) -> bool:
        """Daphne 4's ``application_checker`` body for one connection; True while it still needs checking."""
        server = self.server
        disconnected = details.get("disconnected")
        application_instance = details.get("application_instance")
        overdue = disconnected is not None and now - disconnected > server.application_close_timeout
        if overdue and application_instance and not application_instance.done():
            logger.warning(
                "Application instance %r for connection %s took too long to shut down and was killed.",
                application_instance,
                repr(protocol),
            )
            application_instance.cancel()
        if application_instance and application_instance.done():
            try:
                exception = application_instance.exception()
            except (CancelledError, asyncio.CancelledError):
                pass
            else:
                if exception:
                    if isinstance(exception, KeyboardInterrupt):
                        server.stop()  # the protocol asks the server to exit (tests do)
                    else:
                        logger.error("Exception inside application: %s", exception, exc_info=exception)
                        if not disconnected:
                            protocol.handle_exception(exception)
            del details["application_instance"]
            application_instance = None
        if not application_instance and disconnected:
            del server.connections[protocol]
            return False
        # Disconnected with its application still running: look again next second (close timeout).
        return bool(disconnected)


def reaper_of(server: Any) -> ApplicationReaper:
    return kept_on(server, REAPER_ATTRIBUTE, ApplicationReaper)


def install() -> bool:
    """Patch ``daphne.server.Server`` (idempotent); False (nothing patched) on a Daphne it does not know."""
    from daphne.server import Server
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor  # zope interfaces confuse mypy about callLater's arguments
    if getattr(Server, "_ws_application_reaper_patch", False):
        return True
    if not supported():
        return False
    original_create = Server.create_application
    original_disconnected = Server.protocol_disconnected

    def create_application(self: Any, protocol: Any, scope: Any) -> Any:
        queue = original_create(self, protocol, scope)
        details = self.connections.get(protocol)
        future = None if details is None else details.get("application_instance")
        if future is not None:
            reaper_of(self).watch(future, protocol)
        return queue

    def protocol_disconnected(self: Any, protocol: Any) -> None:
        original_disconnected(self, protocol)
        reaper_of(self).mark(protocol)

    def application_checker(self: Any) -> None:
        try:
            reaper_of(self).tick(time.time())
        finally:
            reactor.callLater(CHECK_SECONDS, self.application_checker)

    Server.create_application = create_application
    Server.protocol_disconnected = protocol_disconnected
    Server.application_checker = application_checker
    Server._ws_application_reaper_patch = True
    return True
