"""The `LogtoIdentity` links in Django's admin (read-only: they are made by sign-ins)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from .models import LogtoIdentity


@admin.register(LogtoIdentity)
class LogtoIdentityAdmin(admin.ModelAdmin):
    list_display = ("sub", "user", "issuer", "updated_at")
    search_fields = ("sub", "user__username")
    readonly_fields = ("issuer", "sub", "user", "claims_digest", "created_at", "updated_at")

    def has_add_permission(self, request: Any) -> bool:
        return False
