"""Rate limiting primitives with an injectable clock: a token bucket and a sliding-window counter.

Both are pure (no I/O, no event loop), so tests drive them with a fake clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens per second refill a bucket holding at most ``burst`` tokens.

    It starts full: a client may send ``burst`` frames at once, then ``rate``
    per second on average.
    """

    __slots__ = ("_clock", "_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """The tokens available now."""
        self.try_acquire(0.0)  # refills, takes nothing
        return self._tokens

    def try_acquire(self, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available (after the refill since the last call); ``False`` otherwise.

        One method, no helper call: this runs for every frame a client sends.
        """
        now = self._clock()
        elapsed = now - self._updated
        self._updated = now
        tokens = self._tokens
        if elapsed > 0:  # a clock going backwards never adds tokens
            tokens += elapsed * self.rate
            if tokens > self.burst:
                tokens = float(self.burst)
        if tokens >= cost:
            self._tokens = tokens - cost
            return True
        self._tokens = tokens
        return False


class WindowCounter:
    """Counts events in the last ``window`` seconds; memory is bounded by ``limit``.

    The deque of times is made on the first event (every connection has a
    counter; few ever see an event).
    """

    __slots__ = ("_clock", "_events", "limit", "window")

    def __init__(self, limit: int, window: float, *, clock: Clock = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a window counter needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: deque[float] | None = None

    def hit(self) -> bool:
        """Record one event; ``True`` when ``limit`` events fall within the window."""
        now = self._clock()
        events = self._events
        if events is None:
            events = self._events = deque(maxlen=self.limit)
        events.append(now)
        while events and events[0] <= now - self.window:
            events.popleft()
        return len(events) >= self.limit
