"""Model mixins that read the current user from :mod:`shared.current_user`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.db import models

from shared.current_user import get_current_user

if TYPE_CHECKING:
    from django.db.models.base import ModelState
    from django.db.models.options import Options


class CurrentUserRequired(RuntimeError):
    """Saving a new object that must record its creator, with no user published."""


class StampCurrentUserMixin:
    """On the first save, fill ``stamp_user_field`` from the current user.

    The value comes from the ContextVar, never from request data, so a client
    cannot claim to be someone else. A value already set explicitly (a data
    migration, an admin action on behalf of someone) is kept. With
    ``stamp_user_required`` a new object saved outside any authenticated
    request or connection raises :class:`CurrentUserRequired` instead of an
    IntegrityError from the database.
    """

    stamp_user_field: ClassVar[str] = "created_by"
    stamp_user_required: ClassVar[bool] = False

    if TYPE_CHECKING:  # provided by models.Model, which the mixin is combined with
        _state: ModelState
        _meta: Options[Any]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self._stamp_current_user()
        super().save(*args, **kwargs)  # type: ignore[misc]

    def _stamp_current_user(self) -> None:
        field = self._meta.get_field(self.stamp_user_field)
        if not isinstance(field, models.ForeignKey):
            raise TypeError(f"{type(self).__name__}.{self.stamp_user_field} must be a ForeignKey to the user model")
        if getattr(self, field.attname) is not None:
            return
        user = get_current_user()
        if user is not None and user.is_authenticated:
            setattr(self, field.attname, user.pk)
        elif self.stamp_user_required:
            raise CurrentUserRequired(
                f"{type(self).__name__}.{self.stamp_user_field} is taken from the current user, "
                "but none is published: save it inside a request or connection, "
                "or within shared.current_user.use_current_user(user)"
            )


class CreatedByModel(StampCurrentUserMixin, models.Model):
    """Abstract base with a ``created_by`` stamped from the current user."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        abstract = True
