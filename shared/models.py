"""Models shared by both services."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections, models, router, transaction

from shared.model_mixins import StampCurrentUserMixin


class Message(StampCurrentUserMixin, models.Model):
    """A message posted to a topic; its author is always the current user."""

    stamp_user_field = "author"
    stamp_user_required = True

    topic = models.CharField(max_length=100)
    #: The message's id on the wire: 1, 2, 3, ... per topic, assigned in commit order.
    seq = models.PositiveBigIntegerField(editable=False)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages", editable=False
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = (models.UniqueConstraint(fields=["topic", "seq"], name="message_topic_seq"),)
        indexes = (models.Index(fields=["created_at"], name="message_created_at"),)
        ordering = ("topic", "seq")

    def __str__(self) -> str:
        return f"{self.topic}#{self.seq}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A new message takes the next id of its topic.

        The sequence row stays locked until the surrounding transaction
        commits, so ids within a topic commit in increasing order.
        """
        if not self._state.adding or self.seq is not None:
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            self.seq = TopicSequence.next_for(self.topic, using)
            super().save(*args, **kwargs)


class TopicSequence(models.Model):
    """The last message id handed out in a topic; its row lock orders publishes."""

    topic = models.CharField(max_length=100, primary_key=True)
    last_seq = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.topic}@{self.last_seq}"

    @classmethod
    def next_for(cls, topic: str, using: str) -> int:
        """Increment and return the topic's last id (locks its row until commit)."""
        table = cls._meta.db_table
        sql = (
            f"INSERT INTO {table} (topic, last_seq) VALUES (%s, 1) "  # noqa: S608 - table name from the model
            f"ON CONFLICT (topic) DO UPDATE SET last_seq = {table}.last_seq + 1 RETURNING last_seq"
        )
        with connections[using].cursor() as cursor:
            cursor.execute(sql, [topic])
            row = cursor.fetchone()
        assert row is not None
        return int(row[0])


class WsTicket(models.Model):
    """A one-time WebSocket ticket; only its SHA-256 digest is stored."""

    digest = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    #: The channel-layer group of the session that requested the ticket, so
    #: logging that session out also closes sockets opened with the ticket.
    session_group = models.CharField(max_length=64, blank=True, default="")
    #: That session's key (as in the session table), so redeeming can check
    #: the session still authenticates the user; "" when issued without one.
    session_key = models.CharField(max_length=40, blank=True, default="")

    def __str__(self) -> str:
        return f"ticket for user {self.user_id} until {self.expires_at:%H:%M:%S}"
