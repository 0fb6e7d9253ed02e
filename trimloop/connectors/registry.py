"""Connector types by name: the built-ins plus any registered under the entry-point group
`trimloop.connectors` (a third-party package adds `mystore = "pkg.module:MyConnector"`)."""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from trimloop.connectors.base import Connector
from trimloop.core.errors import ConfigError
from trimloop.core.settings import ConnectorConfig, Settings

ENTRY_POINT_GROUP = "trimloop.connectors"

# Built-ins work even when the package is not installed (running from a checkout).
BUILTINS: tuple[tuple[str, str], ...] = (
    ("files", "trimloop.connectors.files:FilesConnector"),
    ("mlflow", "trimloop.connectors.mlflow:MlflowConnector"),
    ("otel", "trimloop.connectors.otel:OtelConnector"),
    ("phoenix", "trimloop.connectors.phoenix:PhoenixConnector"),
    ("langfuse", "trimloop.connectors.langfuse:LangfuseConnector"),
)


@lru_cache(maxsize=1)
def available() -> dict[str, str]:
    """Connector type → "module:Class", built-ins first; plugins cannot shadow a built-in."""
    found = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load(type_name: str) -> type[Connector]:
    """The connector class registered as `type_name`."""
    target = available().get(type_name)
    if target is None:
        raise ConfigError(
            f"unknown connector type {type_name!r}",
            where="trimloop.toml [connectors]",
            hint=f"known types: {', '.join(sorted(available()))}; a plugin registers more under "
            f"the entry-point group {ENTRY_POINT_GROUP!r}",
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"connector type {type_name!r} cannot be loaded from {target}: {exc}",
            hint="reinstall the package that provides it",
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{target} is not a trimloop Connector subclass", hint="fix the plugin")
    return cls


def create(name: str, config: ConnectorConfig) -> Connector:
    """A connector instance for `[connectors.NAME]`."""
    return load(config.type)(name=name, options=config.options)


def from_settings(settings: Settings, only: list[str] | None = None) -> dict[str, Connector]:
    """Instances for every configured connector (or just `only`), in config order."""
    names = list(settings.connectors)
    if only:
        unknown = [n for n in only if n not in settings.connectors]
        if unknown:
            raise ConfigError(
                f"no connector named {', '.join(map(repr, unknown))}",
                where="trimloop.toml [connectors]",
                hint=f"configured: {', '.join(names) or 'none'}",
            )
        names = [n for n in names if n in only]
    return {n: create(n, settings.connectors[n]) for n in names}
