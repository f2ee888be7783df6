"""Per-topic message ids: what to resubscribe from, and what was already seen.

Ids are per-topic sequence numbers that only grow, and the server sends each
topic in id order, so "seen" is "not above the newest id seen": a message
is a duplicate exactly when its id is at most the topic's last id.
"""

from __future__ import annotations


class MessageTracker:
    """The newest message id seen per topic."""

    def __init__(self) -> None:
        """No topic tracked yet."""
        self._last: dict[str, int] = {}
        self.duplicates = 0

    def __contains__(self, topic: str) -> bool:
        """Whether ``topic`` has a known last id."""
        return topic in self._last

    def last(self, topic: str) -> int | None:
        """The newest id seen on ``topic``; ``None`` if it is not tracked."""
        return self._last.get(topic)

    def snapshot(self) -> dict[str, int]:
        """A copy of every tracked topic's last id."""
        return dict(self._last)

    def replay_from(self, topic: str, since: int) -> None:
        """A ``subscribe`` with ``since`` goes out: the replay after ``since`` is new."""
        self._last[topic] = since

    def subscribed(self, topic: str, last_id: int, *, replayed: bool) -> None:
        """Apply a ``subscribed`` reply.

        Without a replay (no ``since``), everything up to ``last_id`` counts
        as seen. With one, nothing changes, except when the server's
        ``last_id`` is below what was seen: the topic's history was reset
        (a new database), so tracking restarts from the server's value.
        """
        known = self._last.get(topic)
        if not replayed or (known is not None and last_id < known):
            self._last[topic] = last_id

    def accept(self, topic: str, message_id: int) -> bool:
        """Whether message ``message_id`` of ``topic`` is new (and remember it if so)."""
        last = self._last.get(topic)
        if last is not None and message_id <= last:
            self.duplicates += 1
            return False
        self._last[topic] = message_id
        return True
