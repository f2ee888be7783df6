"""Channel-layer group names, in one place for both services."""

from __future__ import annotations

BROADCAST_GROUP = "broadcast"


def user_group(user_id: int) -> str:
    """The group holding every open connection of one user, on every replica."""
    return f"user.{user_id}"
