"""Connector types by name: the built-ins plus any registered under the entry-point group
`trimloop.connectors` (a third-party package adds `mystore = "pkg.module:MyConnector"`)."""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache
from importlib.metadata import entry_points

from trimloop.connectors.base import Connector, egress_in_force
from trimloop.core.egress import Egress
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


def create(name: str, config: ConnectorConfig, *, egress: Egress | None = None) -> Connector:
    """A connector instance for `[connectors.NAME]`, held to `egress` (settings.egress;
    default: loopback only). Its `url`/`*_url` options are checked before it is built."""
    egress = egress if egress is not None else Egress.default()
    for key, value in config.options.items():
        if (key == "url" or key.endswith("_url")) and isinstance(value, str):
            egress.check(value, who=f"connector {name!r} ({config.type})", where=f"[connectors.{name}] {key}")
    cls = load(config.type)
    with egress_in_force(egress):  # for a plugin whose __init__ does not take `egress`
        if _accepts_egress(cls):
            return cls(name=name, options=config.options, egress=egress)
        return cls(name=name, options=config.options)


def _accepts_egress(cls: type[Connector]) -> bool:
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False
    return "egress" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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
    return {n: create(n, settings.connectors[n], egress=settings.egress) for n in names}
