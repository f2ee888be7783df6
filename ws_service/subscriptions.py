"""Per-connection subscription state: in-order, gap-free, duplicate-free delivery.

Message ids are per-topic sequence numbers (see :mod:`shared.messaging`).
Messages from different publishers can reach a consumer through the channel
layer out of order. So for each incoming id the consumer asks :meth:`classify`
whether to drop it (already sent), send it (the next one), or first fetch the
missing ones from the database (a gap: an earlier message is still in flight).

A replay or gap fill sends at most ``WS_REPLAY_MAX_MESSAGES``; when more
history is left, the topic is *held*: live messages are dropped (``HELD``)
until the client asks for the rest with ``subscribe`` and ``since``, and the
replay that reaches the topic's last id releases it.
"""

from __future__ import annotations

from enum import Enum


class Arrival(Enum):
    DUPLICATE = "duplicate"
    NEXT = "next"
    GAP = "gap"
    NOT_SUBSCRIBED = "not_subscribed"
    HELD = "held"


class Subscriptions:
    """The topics a connection follows and the last id sent for each."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._held: set[str] = set()

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, topic: str) -> bool:
        return topic in self._last

    def topics(self) -> list[str]:
        return list(self._last)

    def add(self, topic: str, last_id: int) -> bool:
        """Follow ``topic`` from ``last_id``; ``True`` if it was not followed before."""
        new = topic not in self._last
        self._last[topic] = last_id
        return new

    def remove(self, topic: str) -> bool:
        self._held.discard(topic)
        return self._last.pop(topic, None) is not None

    def hold(self, topic: str, last_sent: int) -> None:
        """History after ``last_sent`` is still to be replayed: drop live messages until then."""
        if topic in self._last:
            self._last[topic] = last_sent
            self._held.add(topic)

    def release(self, topic: str) -> None:
        """The client has caught up: deliver live messages again."""
        self._held.discard(topic)

    def held(self, topic: str) -> bool:
        return topic in self._held

    def last(self, topic: str) -> int:
        return self._last[topic]

    def classify(self, topic: str, message_id: int) -> Arrival:
        last = self._last.get(topic)
        if last is None:
            return Arrival.NOT_SUBSCRIBED
        if topic in self._held:
            return Arrival.HELD
        if message_id <= last:
            return Arrival.DUPLICATE
        if message_id == last + 1:
            return Arrival.NEXT
        return Arrival.GAP

    def sent(self, topic: str, message_id: int) -> None:
        if topic in self._last:
            self._last[topic] = max(self._last[topic], message_id)
