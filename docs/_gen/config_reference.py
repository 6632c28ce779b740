"""The configuration reference, generated from `LogtoConfig` so that it cannot drift.

Fields, types and defaults come from the dataclass; the environment variable of each setting is
found by running `LogtoConfig.from_env` itself: the variables it reads are recorded, and each is
then set on its own to see which field it changes. The meaning of each field comes from
`settings.py` beside this file; a field without one is an error.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import settings as field_docs  # beside this file, not a package

from logto_middleware.config import LogtoConfig, LogtoConfigError

_BASE_ENV = {
    "AUTH_LOGTO_ISSUER": "https://tenant.example/oidc",
    "AUTH_LOGTO_ID": "app-id",
    "AUTH_LOGTO_SECRET": "app-secret",
    "AUTH_SECRET": "s" * 40,
}
# Values tried, in order, to see which field a variable sets; the first one the config accepts
# and that changes a field wins.
_PROBES = ("true", "120", "memory", "authjs", "off", "https://probe.example/probe", "p" * 48)


class DocumentationError(Exception):
    """The reference cannot be generated: the message says what to add and where."""


class _Recorder(Mapping[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.asked: list[str] = []

    def __getitem__(self, key: str) -> str:
        self._ask(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._ask(key)
        return self.values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._ask(key)
        return key in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def _ask(self, key: str) -> None:
        if key not in self.asked:
            self.asked.append(key)


def _snapshot(config: LogtoConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def variables_by_field() -> dict[str, list[str]]:
    """Each field's environment variables, as `LogtoConfig.from_env` reads them."""
    recorder = _Recorder(_BASE_ENV)
    base = _snapshot(LogtoConfig.from_env(recorder))
    found: dict[str, list[str]] = {}
    for variable in recorder.asked:
        for value in _PROBES:
            try:
                probed = _snapshot(LogtoConfig.from_env({**_BASE_ENV, variable: value}))
            except LogtoConfigError:
                continue
            changed = [name for name in base if probed[name] != base[name]]
            if changed:
                for name in changed:
                    found.setdefault(name, []).append(variable)
                break
        else:
            raise DocumentationError(
                f"LogtoConfig.from_env reads {variable} but no probe value in {__file__} changes a field "
                f"with it: add a value it accepts to _PROBES")
    return found


def _type(field: dataclasses.Field[Any]) -> str:
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", repr(field.type))


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
        if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
            return "`" + " ".join(value) + "`" if value else "none"
        return f"`{value!r}`"
    if field.default_factory is not dataclasses.MISSING:
        return f"`{field.default_factory()!r}`"
    return "required"


def render() -> str:
    """The Markdown of the reference; raises `DocumentationError` on an undocumented field."""
    fields = dataclasses.fields(LogtoConfig)
    settings = [f for f in fields if f.init]
    computed = [f for f in fields if not f.init]
    problems = [f"LogtoConfig.{f.name} has no documentation: add it to SETTINGS in docs/_gen/settings.py"
                for f in settings if not field_docs.SETTINGS.get(f.name, "").strip()]
    problems += [f"LogtoConfig.{f.name} has no documentation: add it to COMPUTED in docs/_gen/settings.py"
                 for f in computed if not field_docs.COMPUTED.get(f.name, "").strip()]
    names = {f.name for f in fields}
    problems += [f"docs/_gen/settings.py documents {name}, which LogtoConfig no longer has"
                 for name in [*field_docs.SETTINGS, *field_docs.COMPUTED] if name not in names]
    if problems:
        raise DocumentationError("; ".join(problems))
    env = variables_by_field()

    def variables(name: str) -> str:
        return ", ".join(f"`{v}`" for v in env.get(name, [])) or "—"

    lines = ["| setting | environment | default |", "|---|---|---|"]
    lines += [f"| [`{f.name}`](#{f.name}) | {variables(f.name)} | {_default(f)} |" for f in settings]
    lines.append("")
    for f in settings:
        lines += [f"### `{f.name}` {{#{f.name}}}", "",
                  f"*Type* `{_type(f)}` · *default* {_default(f)} · *environment* {variables(f.name)}", "",
                  field_docs.SETTINGS[f.name], ""]
    lines += ["## Computed attributes", "",
              "Filled in from the settings when the config is built; read them, never pass them.", ""]
    lines += [f"- `{f.name}` (`{_type(f)}`): {field_docs.COMPUTED[f.name]}" for f in computed]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render())
