"""`LogtoIdentity`: which Django `User` a Logto user is (by issuer and `sub`, never by e-mail)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

__all__ = ["LogtoIdentity"]


class LogtoIdentity(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="logto_identity")
    issuer = models.CharField(max_length=255)
    sub = models.CharField(max_length=255)
    # A digest of the claims the user was last updated from: a new sign-in (or refreshed
    # claims) updates the User once, not on every request.
    claims_digest = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "sub"], name="logto_identity_issuer_sub")]  # noqa: RUF012
        verbose_name = "Logto identity"
        verbose_name_plural = "Logto identities"

    def __str__(self) -> str:
        return f"{self.sub} ({self.issuer})"
