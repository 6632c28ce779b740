"""The middleware's settings, from Django's settings: `LOGTO`, else the `AUTH_` variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ..config import LogtoConfig

__all__ = ["Options", "options_from_settings"]

# Keys of the `LOGTO` dict that are not `LogtoConfig` settings but objects the middleware uses.
_RUNTIME = ("http_client", "async_http_client", "store", "clock")


@dataclass(frozen=True)
class Options:
    config: LogtoConfig
    runtime: dict[str, Any]


def options_from_settings() -> Options:
    """`settings.LOGTO`: a `LogtoConfig`, or a dict of its keyword arguments (plus `http_client`,
    `async_http_client`, `store` and `clock`); without it `LogtoConfig.from_env()`. Its `hooks`
    may be a dotted path (`"myapp.auth.Hooks"`) to a `LogtoHooks` subclass or instance."""
    value = getattr(settings, "LOGTO", None)
    runtime: dict[str, Any] = {}
    if value is None:
        config = LogtoConfig.from_env()
    elif isinstance(value, LogtoConfig):
        config = value
    else:
        values = dict(value)
        runtime = {key: values.pop(key) for key in _RUNTIME if key in values}
        if isinstance(values.get("hooks"), str):
            values["hooks"] = import_string(values["hooks"])
        if isinstance(values.get("hooks"), type):
            values["hooks"] = values["hooks"]()  # settings name the class more often than an instance
        config = LogtoConfig(**values)
    return Options(config, runtime)
