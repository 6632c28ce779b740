"""Backends that shape the users (for the tests of `create_user` overrides)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logto_middleware.django.backends import LogtoBackend


class StaffBackend(LogtoBackend):
    def create_user(self, claims: Mapping[str, Any]) -> Any:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_user(f"staff-{claims['sub']}", is_staff=True)


class BrokenBackend(LogtoBackend):
    def create_user(self, claims: Mapping[str, Any]) -> Any:
        raise ValueError("the app's bug")
