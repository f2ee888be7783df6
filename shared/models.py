"""Models shared by both services."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from shared.model_mixins import StampCurrentUserMixin


class Message(StampCurrentUserMixin, models.Model):
    """A message posted to a topic; its author is always the current user."""

    stamp_user_field = "author"
    stamp_user_required = True

    topic = models.CharField(max_length=100)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages", editable=False
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = (models.Index(fields=["topic", "id"], name="message_topic_id"),)
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.topic}#{self.pk}"


class WsTicket(models.Model):
    """A one-time WebSocket ticket; only its SHA-256 digest is stored."""

    digest = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"ticket for user {self.user_id} until {self.expires_at:%H:%M:%S}"
