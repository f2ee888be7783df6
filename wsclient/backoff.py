"""Reconnect delays: capped exponential backoff with full jitter.

Pure functions of the attempt number and a random source, so they can be
tested with a seeded :class:`random.Random`. "Full jitter" (as described in
the AWS Architecture Blog's *Exponential Backoff and Jitter*) draws the delay
uniformly from ``[0, min(cap, base * 2**attempt)]``, which spreads the
reconnects of many clients cut off at the same moment instead of having them
return in synchronised waves.
"""

from __future__ import annotations

import math
import random
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
    the next outage starts again from ``base``.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        """Reject policies that could never produce a valid delay."""
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")

    def next_delay(self) -> float:
        """The delay before the next retry; advances the attempt counter."""
        delay = full_jitter(self.attempt, base=self.base, cap=self.cap, rng=self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from the first attempt (after a successful connection)."""
        self.attempt = 0
