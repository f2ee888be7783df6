"""JSON API of the web service."""

from __future__ import annotations

import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from redis.exceptions import RedisError

from shared import messaging
from shared.current_user import get_current_user
from shared.push import push_to_user
from shared.quota import QuotaExceeded, charge_publish
from shared.tickets import issue_ticket
from shared.topics import TopicError, authorize

logger = logging.getLogger("web.api")


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _not_authenticated() -> JsonResponse:
    return _error(401, "not_authenticated", "Log in first.")


def _json_object(request: HttpRequest) -> dict[str, Any] | None:
    """The body as a JSON object; ``None`` when it is not one.

    The body is at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django answers 400
    past it). JSON nested deeper than the parser's recursion limit raises
    ``RecursionError``: a client mistake like any other unparsable body.
    """
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _frame_bytes(payload: dict[str, Any]) -> int:
    """The size of ``payload`` as the ws service sends it (compact JSON, UTF-8)."""
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


@never_cache
@require_POST
def ws_ticket(request: HttpRequest) -> JsonResponse:
    """``POST /api/ws-ticket``: a one-time WebSocket ticket for the logged-in user.

    CSRF-protected like any session-authenticated POST.
    """
    user = request.user
    if not user.is_authenticated:
        return _not_authenticated()
    ticket, expires_in = issue_ticket(user, request.session.session_key)
    return JsonResponse({"ticket": ticket, "expires_in": expires_in})


@never_cache
@require_GET
async def whoami(request: HttpRequest) -> JsonResponse:
    """``GET /api/whoami``: the user as published in the current-user ContextVar."""
    user = get_current_user()
    if user is None or not user.is_authenticated:
        return _not_authenticated()
    return JsonResponse({"user": {"id": user.pk, "username": user.get_username()}})


@never_cache
@require_POST
def publish(request: HttpRequest, topic: str) -> JsonResponse:
    """``POST /api/topics/<topic>/messages`` ``{"text": ...}``: stored and delivered like a WebSocket publish."""
    if not request.user.is_authenticated:
        return _not_authenticated()
    try:
        topic = authorize(request.user, topic)
    except TopicError as exc:
        return _error(403 if exc.code == "forbidden" else 400, exc.code, exc.detail)
    body = _json_object(request)
    if body is None:
        return _error(400, "bad_json", 'send a JSON object: {"text": "..."}')
    try:
        text = messaging.validate_text(body.get("text"))
        async_to_sync(charge_publish)(request.user.pk, text)
        payload = messaging.store_message(topic, text)
    except messaging.MessageTextError as exc:
        return _error(400, "bad_message", str(exc))
    except QuotaExceeded as exc:
        response = _error(429, "quota_exceeded", exc.detail)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except DatabaseError as exc:
        logger.warning("publish to %s failed: %s", topic, exc)
        return _error(503, "unavailable", "the database is unavailable; retry shortly")
    try:
        async_to_sync(messaging.deliver)(payload)
    except (RedisError, OSError) as exc:
        logger.warning("message %s#%s stored but not delivered live: %s", topic, payload["id"], exc)
    return JsonResponse({"topic": topic, "id": payload["id"], "created_at": payload["created_at"]}, status=201)


@never_cache
@require_POST
def notify(request: HttpRequest, user_id: int) -> JsonResponse:
    """``POST /api/users/<id>/notify`` ``{"text": ..., "data": {...}}`` (staff only)."""
    sender = request.user
    if not sender.is_authenticated:
        return _not_authenticated()
    if not sender.is_staff:
        return _error(403, "forbidden", "only staff may notify users")
    if not get_user_model()._default_manager.filter(pk=user_id).exists():
        return _error(404, "not_found", f"no user {user_id}")
    body = _json_object(request)
    if body is None or not isinstance(body.get("text"), str) or not isinstance(body.get("data", {}), dict):
        return _error(400, "bad_message", 'send {"text": "...", "data": {...}} with an optional object "data"')
    payload = {
        "type": "notification",
        "text": body["text"][:4000],
        "data": body.get("data", {}),
        "sender": {"id": sender.pk, "username": sender.get_username()},
    }
    limit: int = settings.WS_MAX_MESSAGE_BYTES
    try:
        size = _frame_bytes(payload)
    except UnicodeEncodeError:
        return _error(400, "bad_message", "the notification holds a lone surrogate (invalid Unicode)")
    if size > limit:
        # The ws service (Daphne) would refuse to send it: say so instead of a 202 for a lost push.
        return _error(413, "too_large", f"the notification frame is {size} bytes; the limit is {limit} bytes")
    try:
        async_to_sync(push_to_user)(user_id, payload)
    except (RedisError, OSError) as exc:
        logger.warning("notification to user %s not delivered: %s", user_id, exc)
        return _error(503, "unavailable", "the channel layer is unavailable; retry shortly")
    return JsonResponse({"delivered_to": f"user.{user_id}"}, status=202)
