"""The Django app (`INSTALLED_APPS += ["logto_middleware.django"]`): the `LogtoIdentity` model."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["LogtoAppConfig"]


class LogtoAppConfig(AppConfig):
    name = "logto_middleware.django"
    label = "logto"
    verbose_name = "Logto"
    default_auto_field = "django.db.models.BigAutoField"
