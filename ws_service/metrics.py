"""Prometheus metrics of the ws service (docs/operations.md: Metrics).

Served on the internal ``METRICS_PORT`` by :mod:`shared.metrics_server`, never
on the public port. Every label has a fixed, small set of values: the
labelled children are bound here once, and a client-chosen message type can
never create a new series (unknown types count as ``unknown``). The
per-frame counts are added up per event-loop iteration (:class:`LoopCounts`),
not taken with a locked ``inc()`` per frame.

Gauges use ``multiprocess_mode="livesum"``: with ``WS_WORKERS`` > 1 the
launcher's ``PROMETHEUS_MULTIPROC_DIR`` makes each worker write its own file,
and the exposition sums the live workers (a dead worker's gauges vanish,
its counters stay).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram

from shared.push import CHANNEL_LAYER_SEND_SECONDS
from ws_service.asgi_types import Scope

__all__ = ["CHANNEL_LAYER_SEND_SECONDS"]

UNKNOWN: Final = "unknown"
# Frames the consumer could not parse at all (bad JSON, binary, no string "type").
INVALID: Final = "invalid"

# -- connections ---------------------------------------------------------------

CONNECTIONS_OPEN = Gauge(
    "ws_connections_open",
    "Open, authenticated WebSocket connections (welcome sent, cleanup not yet finished).",
    multiprocess_mode="livesum",
)

# The outcome of every handshake that reached the application.
OUTCOME_ACCEPTED: Final = "accepted"
OUTCOME_UNAUTHENTICATED: Final = "unauthenticated"  # closed 4401
OUTCOME_ORIGIN_REFUSED: Final = "origin_refused"  # HTTP 403
OUTCOME_HOST_REFUSED: Final = "host_refused"  # HTTP 403
OUTCOME_TOO_MANY_CONNECTIONS: Final = "too_many_connections"  # closed 4429
OUTCOME_TOO_MANY_HANDSHAKES: Final = "too_many_handshakes"  # closed 4029 (per-address handshake rate)
OUTCOME_RATE_LIMITED: Final = "rate_limited"  # closed 1008 (sustained flooding)
OUTCOME_SLOW_CONSUMER: Final = "slow_consumer"  # aborted, 4408: unsent output over WS_MAX_PENDING_BYTES
OUTCOME_UNAVAILABLE: Final = "unavailable"  # closed 4013: database or channel layer down
OUTCOME_DRAINING: Final = "draining"  # HTTP 403 while the process drains
OUTCOME_ERROR: Final = "error"  # closed 4013 after an unexpected error
OUTCOMES: Final = (
    OUTCOME_ACCEPTED,
    OUTCOME_UNAUTHENTICATED,
    OUTCOME_ORIGIN_REFUSED,
    OUTCOME_HOST_REFUSED,
    OUTCOME_TOO_MANY_CONNECTIONS,
    OUTCOME_TOO_MANY_HANDSHAKES,
    OUTCOME_RATE_LIMITED,
    OUTCOME_SLOW_CONSUMER,
    OUTCOME_UNAVAILABLE,
    OUTCOME_DRAINING,
    OUTCOME_ERROR,
)

CONNECTION_ATTEMPTS = Counter(
    "ws_connection_attempts",
    "WebSocket handshakes by outcome. rate_limited counts connections closed with 1008 for sustained "
    "flooding, slow_consumer connections aborted for unsent output over WS_MAX_PENDING_BYTES (both after "
    "their accepted attempt); every other outcome is the handshake's own decision.",
    ["outcome"],
)
_ATTEMPTS: Final = {outcome: CONNECTION_ATTEMPTS.labels(outcome) for outcome in OUTCOMES}

HANDSHAKE_SECONDS = Histogram(
    "ws_handshake_seconds",
    "Time from the handshake reaching the application to its accept/refuse decision "
    "(host and origin checks, authentication, connection limit, group joins), by outcome.",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
_HANDSHAKES: Final = {
    outcome: HANDSHAKE_SECONDS.labels(outcome)
    for outcome in OUTCOMES
    if outcome not in (OUTCOME_RATE_LIMITED, OUTCOME_SLOW_CONSUMER)
}

# Scope key set by the outermost middleware (HostValidator) when a handshake arrives.
HANDSHAKE_STARTED: Final = "handshake_started"


def handshake_started(scope: Scope) -> Scope:
    """A copy of ``scope`` stamped with the time the handshake reached the application."""
    return {**scope, HANDSHAKE_STARTED: time.perf_counter()}


def handshake_decided(scope: Scope, outcome: str) -> None:
    """Count a handshake's outcome and observe its latency (when the scope was stamped)."""
    _ATTEMPTS[outcome].inc()
    started = scope.get(HANDSHAKE_STARTED)
    if started is not None:
        _HANDSHAKES[outcome].observe(time.perf_counter() - started)


def connection_rate_limited() -> None:
    """An open connection closed with 1008 for sustained flooding."""
    _ATTEMPTS[OUTCOME_RATE_LIMITED].inc()


def connection_slow_consumer() -> None:
    """An open connection aborted for unsent output over ``WS_MAX_PENDING_BYTES``."""
    _ATTEMPTS[OUTCOME_SLOW_CONSUMER].inc()


INBOUND_PAUSES = Counter(
    "ws_inbound_pauses",
    "Times Daphne stopped reading a socket because WS_MAX_PENDING_FRAMES received frames waited unconsumed "
    "(reading resumes once the consumer has taken half; Uvicorn pauses after every message and is not counted).",
)


def inbound_paused() -> None:
    """A socket stopped being read: ``WS_MAX_PENDING_FRAMES`` frames wait for its consumer."""
    INBOUND_PAUSES.inc()


AUTH_CACHE_LOOKUPS = Counter(
    "ws_auth_cache_lookups",
    "Handshakes with a session cookie by whether the process's session cache served them (hit) or the "
    "database had to (miss); see WS_AUTH_CACHE_SECONDS.",
    ["result"],
)
AUTH_CACHE_HITS: Final = AUTH_CACHE_LOOKUPS.labels("hit")
AUTH_CACHE_MISSES: Final = AUTH_CACHE_LOOKUPS.labels("miss")

DRAINS_IN_PROGRESS = Gauge(
    "ws_drains_in_progress",
    "ws server processes draining right now (SIGTERM received: closing every connection with 1012).",
    multiprocess_mode="livesum",
)

# -- frames ----------------------------------------------------------------------

# What clients may send and what the server sends: the types registered in ws_service.frames
# (each feature's), plus INVALID and UNKNOWN. Payloads pushed with shared.push have other types: UNKNOWN.
MESSAGES_RECEIVED = Counter(
    "ws_messages_received",
    "Frames handled by the consumer, by type (invalid: unparsable; unknown: a type the protocol lacks). "
    'Frames dropped by the rate limit are in ws_error_frames_total{code="rate_limited"}.',
    ["type"],
)
RECEIVED: Final = {name: MESSAGES_RECEIVED.labels(name) for name in (INVALID, UNKNOWN)}
RECEIVED_UNKNOWN: Final = RECEIVED[UNKNOWN]
RECEIVED_INVALID: Final = RECEIVED[INVALID]

MESSAGES_SENT = Counter(
    "ws_messages_sent",
    "Frames sent to clients, by type (unknown: application payloads pushed with shared.push).",
    ["type"],
)
SENT: Final = {name: MESSAGES_SENT.labels(name) for name in ("error", UNKNOWN)}
SENT_UNKNOWN: Final = SENT[UNKNOWN]
SENT_ERROR: Final = SENT["error"]


def track_received_type(name: str) -> None:
    """Give a registered client frame type its own ``ws_messages_received`` label."""
    RECEIVED.setdefault(name, MESSAGES_RECEIVED.labels(name))


def track_sent_type(name: str) -> None:
    """Give a registered server frame type its own ``ws_messages_sent`` label."""
    SENT.setdefault(name, MESSAGES_SENT.labels(name))


class LoopCounts:
    """Counts of the per-frame path, added up and handed to their counters once per event-loop iteration.

    A Prometheus ``inc()`` takes a lock (and with ``WS_WORKERS`` > 1 writes a
    memory-mapped file): about 0.3 µs, paid for each frame received and each
    frame sent, which is 10,000 times for one topic message with 10,000 local
    subscribers. Here a count is a dict update; the first count of an
    iteration schedules one hand-over (``call_soon``) that adds each sum with
    one ``inc(n)``, before the loop does anything else. The exposition (read
    by the metrics thread or another process) lags by at most that one
    iteration. Outside a running loop a count goes to its counter at once.
    """

    __slots__ = ("_loop", "_pending")

    def __init__(self) -> None:
        self._pending: dict[Any, int] = {}
        # The loop a hand-over is scheduled on (``None`` when none is): a loop closed before running
        # it (a test's) is not waited for, the next count schedules one on its own loop.
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, counter: Any) -> None:
        """Count one for ``counter`` (a labelled Prometheus counter)."""
        pending = self._pending
        pending[counter] = pending.get(counter, 0) + 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if loop is not self._loop:
            self._loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand every sum to its counter."""
        pending, self._pending, self._loop = self._pending, {}, None
        for counter, count in pending.items():
            counter.inc(count)


FRAME_COUNTS: Final = LoopCounts()


def count_received(frame_type: str) -> None:
    """Count one client frame of a type the protocol has (``unknown`` for any other)."""
    FRAME_COUNTS.add(RECEIVED.get(frame_type, RECEIVED_UNKNOWN))


def count_sent(frame_type: object) -> None:
    """Count one outbound frame (``frame_type`` may be anything a pushed payload holds)."""
    FRAME_COUNTS.add(SENT.get(frame_type, SENT_UNKNOWN) if type(frame_type) is str else SENT_UNKNOWN)


# The error codes of docs/protocol.md "Errors" (ws_service.protocol.ErrorCode, topic errors, rate_limited).
ERROR_CODES: Final = (
    "bad_json",
    "bad_message",
    "unknown_type",
    "bad_topic",
    "forbidden",
    "not_subscribed",
    "too_many_subscriptions",
    "unavailable",
    "rate_limited",
    "quota_exceeded",
    "internal",
)
ERROR_FRAMES = Counter("ws_error_frames", "Error frames sent to clients, by code.", ["code"])
ERRORS: Final = {code: ERROR_FRAMES.labels(code) for code in (*ERROR_CODES, UNKNOWN)}
ERRORS_UNKNOWN: Final = ERRORS[UNKNOWN]


def count_error(code: str) -> None:
    """Count one error frame by code (its ``error`` type is counted where it is sent)."""
    ERRORS.get(code, ERRORS_UNKNOWN).inc()
