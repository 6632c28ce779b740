"""`LogtoBackend`: the Django `User` of a Logto user, linked by issuer and `sub`.

    AUTHENTICATION_BACKENDS = ["logto_middleware.django.backends.LogtoBackend"]

Subclass it to shape the users: override `create_user(claims)` and `update_user(user, claims)`.
It is a `ModelBackend`, so permissions and groups work as usual.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..session import LogtoUser

__all__ = ["LogtoBackend"]


class LogtoBackend(ModelBackend):
    """`authenticate(request, logto_user=...)`: the linked `User`, created on the first sign-in
    and updated when the claims change (a new sign-in); never matched by e-mail or username."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     logto_user: LogtoUser | None = None, issuer: str = "", **kwargs: Any) -> Any:
        if not isinstance(logto_user, LogtoUser) or not logto_user.claims.get("sub"):
            return None
        user = self.linked_user(issuer, logto_user.claims)
        return user if self.user_can_authenticate(user) else None

    def linked_user(self, issuer: str, claims: Mapping[str, Any]) -> Any:
        from .models import LogtoIdentity

        sub = str(claims["sub"])
        digest = hashlib.sha256(json.dumps(claims, sort_keys=True, default=str).encode()).hexdigest()
        for _ in range(2):  # a concurrent first sign-in of the same user: the second finds the first's
            identity = LogtoIdentity.objects.select_related("user").filter(issuer=issuer, sub=sub).first()
            if identity is not None:
                if identity.claims_digest != digest:
                    self.update_user(identity.user, claims)
                    identity.claims_digest = digest
                    identity.save(update_fields=["claims_digest", "updated_at"])
                return identity.user
            try:
                with transaction.atomic():
                    user = self.create_user(claims)
                    LogtoIdentity.objects.create(user=user, issuer=issuer, sub=sub, claims_digest=digest)
                    return user
            except IntegrityError:
                continue
        raise RuntimeError("the Logto identity could not be linked")

    def create_user(self, claims: Mapping[str, Any]) -> Any:
        """A new `User` for a first sign-in (saved): a username of its own (`logto-<sub>`), no
        usable password, and the fields of `update_user`."""
        model = get_user_model()
        username = f"logto-{claims['sub']}"[:140]
        if model._default_manager.filter(**{model.USERNAME_FIELD: username}).exists():
            username += "-" + secrets.token_hex(4)  # never take over a user that is not linked
        user = model(**{model.USERNAME_FIELD: username})
        user.set_unusable_password()
        self._copy_claims(user, claims)
        user.save()
        return user

    def update_user(self, user: Any, claims: Mapping[str, Any]) -> None:
        """Update a linked `User` from new claims (saved): e-mail and names, when the model has them."""
        self._copy_claims(user, claims)
        user.last_login = timezone.now()
        user.save()

    @staticmethod
    def _copy_claims(user: Any, claims: Mapping[str, Any]) -> None:
        fields = {field.name for field in user._meta.get_fields()}
        name = str(claims.get("name") or "")
        given, family = claims.get("given_name"), claims.get("family_name")
        if not given and not family and name:
            given, _, family = name.partition(" ")
        for field, value in (("email", claims.get("email")), ("first_name", given), ("last_name", family)):
            if field in fields and isinstance(value, str):
                setattr(user, field, value[:150])
