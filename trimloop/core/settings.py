"""Settings: `TRIMLOOP_*` environment variables over an optional `trimloop.toml` over defaults.

The config file is `./trimloop.toml`, or the path in `TRIMLOOP_CONFIG`. Nested keys use `__` in
the environment: `TRIMLOOP_GATEWAY__CONCURRENCY=16`. Secrets (API keys) are never read from the
file: a model names the environment variable that holds its key (`api_key_env`).
"""

from __future__ import annotations

import ipaddress
import json
import os
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from trimloop.core.egress import Egress, HostNotAllowed, parse_rule
from trimloop.core.errors import ConfigError

CONFIG_ENV = "TRIMLOOP_CONFIG"
DEFAULT_CONFIG_FILE = "trimloop.toml"
# False while `load_settings(check_egress=False)` runs: `trimloop doctor` reads the rest of a
# config whose URLs allowed_hosts refuses, then reports each refused URL as its own finding.
_check_egress: ContextVar[bool] = ContextVar("trimloop_check_egress", default=True)


class ModelConfig(BaseModel):
    """One model a team may call. Unknown keys are refused so typos surface."""

    model_config = {"extra": "forbid"}

    api_base: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (…/v1); calls take the direct path"
    )
    served_as: str | None = Field(default=None, description="model name sent to the endpoint")
    api_key_env: str | None = Field(default=None, description="environment variable with the key")
    input_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M input tokens")
    output_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M output tokens")
    cache_read_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M cached input tokens")
    cache_write_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M tokens written to the cache")
    reasoning_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M reasoning tokens")
    batch_input_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (batch)")
    batch_output_per_mtok: float | None = Field(default=None, ge=0, description="USD per 1M output tokens (batch)")
    long_context_above_tokens: int | None = Field(
        default=None, ge=1, description="prompts longer than this are billed at the long-context prices")
    long_context_input_per_mtok: float | None = Field(default=None, ge=0)
    long_context_output_per_mtok: float | None = Field(default=None, ge=0)
    price_note: str | None = None
    concurrency: int | None = Field(default=None, ge=1)
    completion_only: bool = Field(default=False, description="base model: plain-text templates only")
    via_litellm: bool = Field(
        default=False, description="call api_base through litellm instead of the direct path"
    )
    retires_on: date | None = Field(
        default=None, description="the day the provider stops serving it (overrides litellm's deprecation_date)"
    )


class GatewaySettings(BaseModel):
    model_config = {"extra": "forbid"}

    concurrency: int = Field(default=8, ge=1, description="in-flight calls per provider")
    max_retries: int = Field(default=5, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    cache: bool = True
    default_max_tokens: int = Field(default=512, ge=1, description="sent when params omit it")
    token_safety_factor: float = Field(
        default=1.25, ge=1.0, description="prompt-token margin for non-OpenAI tokenizers in caps"
    )


class LocalModelSettings(BaseModel):
    """The bundled llama.cpp models and their notional self-hosting prices."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=8411, ge=1, le=65535, description="first port; one per model")
    n_threads: int = Field(default=2, ge=1)
    n_ctx: int = Field(default=2048, ge=256)
    startup_timeout_s: float = Field(default=90.0, gt=0)
    # One documented rate per billion parameters, so prices scale with model size the way
    # hosted prices do (about $0.02/M input tokens per billion parameters for open 8B models).
    usd_per_mtok_per_bparam_input: float = Field(default=0.02, ge=0)
    usd_per_mtok_per_bparam_output: float = Field(default=0.06, ge=0)


class ConnectorConfig(BaseModel):
    """One configured store: `type` picks the connector; the other keys are its options."""

    model_config = {"extra": "allow"}

    type: str = Field(description="connector type registered under trimloop.connectors")
    sample_rate: float | None = Field(
        default=None, gt=0, le=1, description="share of calls the source logs (0.01: 1 %) when its records "
        "do not say; each logged call then counts as 1 / sample_rate calls")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


WEBHOOK_EVENTS = ("suggestion.created", "suggestion.approved", "suggestion.deployed", "run.failed", "run.blocked",
                  "model.retiring", "prompt.unhealthy", "watch.regressed")


def default_turns() -> int:
    """`api.concurrent_requests` by default: 4 per CPU core, at most 16. Requests past what the cores
    can run only wait for the GIL: with 16 turns on 2 cores, `GET /health` (on the event loop) waited
    behind 16 busy worker threads during a 100-client burst (p99 up to 535 ms; 8 turns: 32-79 ms, and
    the load phase's throughput did not drop: bench/api.py, 2026-12-06)."""
    return max(1, min(16, 4 * (os.cpu_count() or 1)))


class ApiSettings(BaseModel):
    """The REST API server (`trimloop serve`)."""

    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or networks of your reverse proxies; only from these is "
        "X-Forwarded-For believed (failed-login limit). Empty: the header is ignored")
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="http://127.0.0.1:8000", description="base of links in webhooks")
    failed_logins_per_minute: int = Field(default=10, ge=1, description="per client, shared by every serve process on the database, then 429")
    concurrent_requests: int = Field(
        default_factory=default_turns, ge=1, le=16,
        description="requests holding a database session at once (default 4 per CPU core, at most 16); the "
        "rest wait (asynchronously) for a turn; each needs up to 2 of the pool's 40 connections, 8 are kept "
        "for the rest")
    queue_timeout_s: float = Field(default=20.0, gt=0, le=300,
                                   description="longest wait for a turn, then 503 with Retry-After")
    max_body_bytes: int = Field(default=24 * 1024 * 1024, ge=1024, description="largest API request body "
                                "(a dataset import's 20,000,000 characters plus JSON), else 413")
    max_form_bytes: int = Field(default=64_000, ge=1024, description="largest web UI form body, else 413")
    ingest_queue: int = Field(default=64, ge=1, le=10_000, description="OTLP span batches (POST /v1/traces) "
                              "accepted and not yet stored; one more is answered 429 with Retry-After")
    header_timeout_s: float = Field(default=10.0, gt=0, le=300,
                                    description="time a client has to send a request's headers (slowloris)")
    body_timeout_s: float = Field(default=15.0, gt=0, le=300,
                                  description="longest pause between two chunks of a request body, else 408")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network; write e.g. \"10.0.0.5\" or "
                                 "\"10.0.0.0/24\" (host names are not resolved)") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)


class WebhookConfig(BaseModel):
    """One webhook: where to POST which events. The signing secret comes from the environment."""

    model_config = {"extra": "forbid"}

    url: str = Field(description="http(s) URL that receives a POST per event")
    events: list[Literal["suggestion.created", "suggestion.approved", "suggestion.deployed",
                         "run.failed", "run.blocked", "model.retiring", "prompt.unhealthy", "watch.regressed"]] = Field(
        default_factory=lambda: list(WEBHOOK_EVENTS))
    format: Literal["json", "slack"] = Field(default="json", description="slack: text + blocks")
    secret_env: str | None = Field(
        default=None, description="variable holding the HMAC secret; default: secret_key")
    max_retries: int = Field(default=3, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    timeout_s: float = Field(default=10.0, gt=0)


class SchedulerSettings(BaseModel):
    """`trimloop worker`: how often it syncs and optimizes, and when a prompt is due again."""

    model_config = {"extra": "forbid"}

    interval_minutes: float = Field(default=60.0, gt=0, description="minutes between passes")
    min_new_logs: int = Field(default=200, ge=1, description="new logs since the last run that make a prompt due")
    max_days_between_runs: float = Field(default=7.0, gt=0, description="a prompt not run for this long is due")
    stale_after_minutes: float = Field(
        default=10.0, gt=0, description="a running run with an older heartbeat is reclaimed and resumed")
    heartbeat_seconds: float = Field(default=30.0, gt=0, description="how often a worker marks its run alive")
    expire_pending_after_days: float = Field(
        default=30.0, gt=0, description="a suggestion pending this long without a decision becomes expired")
    repair: bool = Field(default=False, description="queue a repair run (optimizer.repair) for a prompt whose health "
                         "is broken: once per broken spell, again after max_days_between_runs; never a cost search")
    repair_budget_calls: int = Field(default=400, ge=1, le=10_000_000, description="the calls one scheduled repair "
                                     "run may make (its own budget, not the prompt's budget_calls)")
    repair_budget_dollars: float | None = Field(default=1.0, gt=0, le=100_000, description="the dollars one scheduled "
                                                "repair run may spend (a stronger model may be dear)")


class ReservoirSettings(BaseModel):
    """Full records kept per prompt version per day (core.reservoir); traffic aggregates count every call."""

    model_config = {"extra": "forbid"}

    per_day: int = Field(default=2000, ge=1, description="full records kept per prompt version per day")
    seed: int = Field(default=0, ge=0, description="seed of the hash that picks which records are kept")
    sweep_batch: int = Field(default=500, ge=1, le=100_000,
                             description="records deleted per transaction by the retention sweep")
    headroom: float = Field(
        default=1.5, ge=0,
        description="drop a record unwritten when its key is above the share per_day × headroom of its "
                    "version's fewest calls a day (last 7 complete days); 0: never (every record the "
                    "reservoir may keep is written, then trimmed)")

    @field_validator("headroom")
    @classmethod
    def _headroom(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("headroom must be 0 (off) or at least 1 (1.5: a day with two thirds of its "
                             "version's usual calls still fills its reservoir)")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRIMLOOP_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    environment: Literal["development", "production"] = "development"
    home: Path = Field(default=Path(".trimloop"), description="folder for the database and pids")
    database_url: str | None = Field(default=None, description="default: SQLite in `home`")
    secret_key: SecretStr = SecretStr("changethis")
    gateway: GatewaySettings = GatewaySettings()
    local_models: LocalModelSettings = LocalModelSettings()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    connectors: dict[str, ConnectorConfig] = Field(default_factory=dict)
    # Per-prompt options (evaluators, margin, budgets), validated by the package that reads them.
    prompts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    api: ApiSettings = Field(default_factory=ApiSettings)  # a factory: its turns follow the cores
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    scheduler: SchedulerSettings = SchedulerSettings()
    reservoir: ReservoirSettings = ReservoirSettings()
    # Full records older than this are deleted by the retention sweep (every worker pass, or
    # `trimloop sweep`); traffic aggregates are kept.
    retention_days: int = Field(default=90, ge=1, le=36500, description="days full log records are kept")
    # Model retirements (the date from litellm's price map or `models."ID".retires_on`): a production
    # prompt whose model retires within retirement_warning_days is due first (reason model_retiring);
    # a `model.retiring` notification goes out at each of retirement_notice_days before the date, once.
    retirement_warning_days: int = Field(default=60, ge=1, le=3650,
                                         description="days before a model's retirement that its prompts are due")
    retirement_notice_days: list[int] = Field(default_factory=lambda: [60, 30, 7],
                                              description="days before a retirement to notify, each once")
    # Hosts that connectors, webhooks and model api_bases may send requests to (core.egress has
    # the rule syntax). Unset: loopback only. TRIMLOOP_ALLOWED_HOSTS="a:5000,*.example.com" (or
    # a JSON list) overrides the file.
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        default=None, description="hosts trimloop may send requests to; unset: loopback only")

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: comma-separated, or a JSON list
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not a JSON list ({exc}); or write hosts separated by commas") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            parse_rule(entry)  # ValueError names the entry and how to write it
        return value

    @field_validator("retirement_notice_days")
    @classmethod
    def _notice_days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 0 for d in value):
            raise ValueError(f"give days ≥ 0 before the retirement date, e.g. [60, 30, 7]; got {value}")
        return sorted(set(value), reverse=True)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("use sqlite:///path.db or postgresql://user@host:port/db")
        return value

    @model_validator(mode="after")
    def _safe_outside_development(self) -> "Settings":
        if self.environment != "development" and self.secret_key.get_secret_value() == "changethis":
            raise ValueError(
                "secret_key is still 'changethis'; set TRIMLOOP_SECRET_KEY to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self

    @model_validator(mode="after")
    def _targets_allowed(self) -> "Settings":
        """Webhook URLs and model api_bases must be inside allowed_hosts (connectors are
        checked when they are built, since their options belong to each connector type)."""
        if not _check_egress.get():
            return self
        egress = self.egress
        for who, key, url in egress_targets(self, connectors=False):
            try:
                egress.check(url, who=who, where=key)
            except HostNotAllowed as exc:
                raise ValueError(f"{key}: {exc.message}; {exc.hint}") from None
        return self

    @property
    def egress(self) -> Egress:
        """The allow-list for outgoing requests (see trimloop.core.egress)."""
        return Egress.parse(self.allowed_hosts)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        return f"sqlite:///{self.home / 'trimloop.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_path()))


def egress_targets(settings: Settings, *, connectors: bool = True) -> list[tuple[str, str, str]]:
    """(who, config key, URL) of every configured request target that `allowed_hosts` must allow:
    webhook URLs, model api_bases and (with `connectors`) each connector's `url`/`*_url` option."""
    targets = [(f"webhook {i + 1}", f"webhooks[{i}].url", hook.url) for i, hook in enumerate(settings.webhooks)]
    targets += [(f"model {name!r}", f'models."{name}".api_base', model.api_base)
                for name, model in settings.models.items() if model.api_base]
    if connectors:
        targets += [(f"connector {name!r} ({config.type})", f"[connectors.{name}] {key}", value)
                    for name, config in settings.connectors.items() for key, value in config.options.items()
                    if (key == "url" or key.endswith("_url")) and isinstance(value, str)]
    return targets


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_settings(*, check_egress: bool = True, **overrides: Any) -> Settings:
    """Read settings, turning validation failures into a ConfigError that names the field. With
    `check_egress=False`, webhook URLs and model api_bases outside allowed_hosts are let through
    (for `trimloop doctor`, which reports each refused one; settings read so must not serve calls)."""
    token = _check_egress.set(check_egress)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}",
            where=str(config_path()) if config_path().exists() else "environment (TRIMLOOP_*)",
            hint="fix the named keys in trimloop.toml or the TRIMLOOP_* variables; "
            "see the README's Configuration section",
        ) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(
            f"cannot read the config file: {exc}",
            where=str(config_path()),
            hint="check the TOML syntax (strings in quotes, [sections] for tables)",
        ) from None
    finally:
        _check_egress.reset(token)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
