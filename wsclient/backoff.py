"""Reconnect delays: capped exponential backoff with full jitter.

Pure functions of the attempt number and a random source, so they can be
tested with a seeded :class:`random.Random`. "Full jitter" (as described in
the AWS Architecture Blog's *Exponential Backoff and Jitter*) draws the delay
uniformly from ``[0, min(cap, base * 2**attempt)]``, which spreads the
reconnects of many clients cut off at the same moment instead of having them
return in synchronised waves.

A server restart (close code 1012) is treated apart: for ``restart_window``
seconds after it, a failure that only says the server is not there yet
(connection refused: nothing listens on the port, which costs the server
nothing) draws its delay under ``restart_cap`` instead of the growing
ceiling, so clients are back within about ``restart_cap`` seconds of the new
process listening instead of up to ``cap``. Full jitter stays, so they still
arrive spread over that interval; any other failure (a timeout, 1013, 4013,
4029: a server that is there but busy) and every failure after the window
grows the ceiling as usual (the attempt counter advances either way).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# 2**1024 overflows a float; any exponent past this is already beyond every sane cap.
_MAX_EXPONENT = 1000


def ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The upper bound of the delay before retry number ``attempt`` (0-based).

    ``min(cap, base * 2**attempt)``, computed without overflowing for huge
    attempt numbers.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be >= 0")
    exponent = min(attempt, _MAX_EXPONENT)
    return min(cap, math.ldexp(base, exponent))


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """A delay drawn uniformly from ``[0, ceiling(attempt)]``."""
    return rng.uniform(0.0, ceiling(attempt, base=base, cap=cap))


@dataclass(slots=True)
class Backoff:
    """Backoff policy plus the retry counter of one client.

    ``next_delay()`` returns the delay for the current attempt and counts it;
    ``reset()`` is called after a successful connection (a ``welcome``), so
    the next outage starts again from ``base``. ``restarting()`` is called on
    a close with 1012 (service restart): see the module's docstring.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    #: Largest delay ceiling for "server not there yet" failures within ``restart_window`` of a 1012.
    restart_cap: float = 2.0
    #: Seconds after a 1012 during which ``restart_cap`` applies.
    restart_window: float = 30.0
    clock: Callable[[], float] = time.monotonic
    #: ``clock()`` value until which the restart treatment lasts (``-inf``: none).
    restart_until: float = -math.inf

    def __post_init__(self) -> None:
        """Reject policies that could never produce a valid delay."""
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")
        if self.restart_cap < 0 or self.restart_window < 0:
            raise ValueError("restart_cap and restart_window must be >= 0")

    def restarting(self) -> None:
        """The server closed with 1012 (service restart): open the restart window from now."""
        self.restart_until = self.clock() + self.restart_window

    def in_restart_window(self) -> bool:
        """Whether a 1012 was seen less than ``restart_window`` seconds ago (and no welcome since)."""
        return self.clock() < self.restart_until

    def next_delay(self, *, server_away: bool = False) -> float:
        """The delay before the next retry; advances the attempt counter.

        ``server_away``: the failure only says that nothing answers yet
        (connection refused); within the restart window the ceiling is
        then at most ``restart_cap``.
        """
        cap = min(self.cap, self.restart_cap) if server_away and self.in_restart_window() else self.cap
        delay = full_jitter(self.attempt, base=self.base, cap=cap, rng=self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from the first attempt (after a successful connection); closes the restart window."""
        self.attempt = 0
        self.restart_until = -math.inf
