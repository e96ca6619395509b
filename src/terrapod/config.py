"""Terrapod's one Settings object.

Values come from, highest priority first: arguments passed in code (the CLI's flags),
``TERRAPOD_*`` environment variables (``__`` separates nesting levels, e.g.
``TERRAPOD_STORAGE__S3__BUCKET``), an optional YAML file named by ``TERRAPOD_CONFIG_FILE``,
and the defaults below. The defaults are the embedded shape: SQLite and filesystem storage
under ``data_dir``.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class DatabaseSettings(BaseModel):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: SQLite file terrapod.db in the data dir. "
        "PostgreSQL: postgresql://user@host:5432/dbname",
    )
    pool_size: int = Field(default=20, ge=1, le=500)
    max_overflow: int = Field(default=10, ge=0, le=500)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0]
        if scheme not in {
            "sqlite",
            "sqlite+aiosqlite",
            "postgresql",
            "postgres",
            "postgresql+asyncpg",
        }:
            raise ValueError(
                f"unsupported database scheme {scheme!r}: use sqlite:/// or postgresql://"
            )
        return value


class S3Settings(BaseModel):
    bucket: str | None = None
    endpoint_url: str | None = Field(
        default=None, description="For S3-compatible stores (MinIO, Ceph, …)"
    )
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    prefix: str = Field(default="", description="Key prefix inside the bucket")
    multipart_chunk_size: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)


class StorageSettings(BaseModel):
    backend: Literal["filesystem", "s3"] = "filesystem"
    path: Path | None = Field(
        default=None, description="Filesystem back-end root. Unset: <data_dir>/objects"
    )
    s3: S3Settings = S3Settings()

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> StorageSettings:
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError("storage.backend is s3 but storage.s3.bucket is not set")
        return self


class RunSettings(BaseModel):
    """Runs and the built-in agent (docs/configuration.md, "Runs")."""

    builtin_agent: bool = Field(
        default=True, description="Run jobs on the agent inside `terrapod serve`"
    )
    agent_concurrency: int = Field(
        default=2, ge=1, le=64, description="Jobs the built-in agent runs at once"
    )
    job_timeout_seconds: int = Field(
        default=3600, ge=10, le=7 * 24 * 3600, description="A plan or apply is stopped after this"
    )
    heartbeat_timeout_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="A running job whose agent has not been heard of for this long is failed",
    )
    force_cancel_cooloff_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Time after a cancel before force-cancel becomes available",
    )
    work_dir: Path | None = Field(
        default=None, description="Where jobs get their working directories. Unset: <data_dir>/work"
    )
    list_rate_limit_per_minute: int = Field(
        default=30,
        ge=0,
        description="Run list requests per minute per token (TFE: 30); 0 turns the limit off",
    )
    max_configuration_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest configuration a tarball may unpack to",
    )
    housekeeping_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often stale jobs are failed, waiting runs re-checked and logs archived",
    )
    event_stream_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="A run-event stream (SSE) ends after this; browsers reconnect by themselves",
    )
    engines: dict[str, Path] = Field(
        default_factory=dict,
        description="Other Terraform versions the built-in agent may use: version -> binary",
    )
    provider_mirror: Path | None = Field(
        default=None,
        description="A filesystem mirror of providers (private ones) the engine installs from, "
        "beside the registries",
    )


class AgentSettings(BaseModel):
    """Agents and the listener protocol (docs/configuration.md, "Agents";
    docs/dev/agents.md)."""

    credential_ttl_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Lifetime of the short-lived credential an agent gets at join and renew",
    )
    heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often agents are told to call their heartbeat (sent at join)",
    )
    runs_next_max_wait_seconds: float = Field(
        default=20.0,
        ge=0,
        le=300,
        description="Longest an agent's runs/next long poll is held open (a larger wait is cut "
        "to this)",
    )
    job_heartbeat_max_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="Longest a job heartbeat long poll is held open (a larger wait is cut to this)",
    )
    poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="While a runs/next long poll waits, how often the database is checked for "
        "jobs queued by another server",
    )
    cancel_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="While a job heartbeat waits, how often the database is checked for a "
        "cancel requested on another server",
    )
    run_token_margin_seconds: int = Field(
        default=600,
        ge=0,
        le=24 * 3600,
        description="A run token lives for runs.job_timeout_seconds plus this",
    )


class RunTaskSettings(BaseModel):
    """Run tasks: how the server calls task services (docs/configuration.md, "Run tasks")."""

    allow_private_addresses: bool = Field(
        default=False,
        description="Allow task URLs whose host is a private, loopback, link-local or reserved "
        "address (off: such hosts are refused when saved and when a request is sent)",
    )
    callback_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="A task result whose service has not called back for this long is errored "
        "(HCP Terraform: 10 minutes)",
    )
    request_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long the POST of a task request to a service may take",
    )
    sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often undelivered requests are retried and timeouts enforced",
    )
    mandatory_failures_overridable: bool = Field(
        default=False,
        description="A failed mandatory post-plan task waits for an organization owner's "
        "override (stage awaiting_override) instead of erroring the run",
    )
    callback_base_url: str | None = Field(
        default=None,
        description="Base URL task services call back (https://terrapod.example.com). Unset: "
        "external_url, else http://<host>:<port>",
    )

    @field_validator("callback_base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("callback_base_url must start with http:// or https://")
        return value.rstrip("/")


class SmtpSettings(BaseModel):
    """The mail server email notifications go through (docs/configuration.md, "Notifications")."""

    host: str | None = Field(default=None, description="Unset: email notifications are refused")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls: upgrade a plain connection (port 587); ssl: TLS from the start "
        "(port 465); none: plain text (a relay on a trusted network only)",
    )
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = Field(
        default="terrapod@localhost", description="The From address of notification emails"
    )


class NotificationSettings(BaseModel):
    """Notification deliveries (docs/configuration.md, "Notifications")."""

    allow_private_addresses: bool = Field(
        default=False,
        description="Allow destination URLs whose host is a private, loopback, link-local or "
        "reserved address (off: such hosts are refused when saved and when delivering)",
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="How long one delivery may take"
    )
    max_attempts: int = Field(
        default=5, ge=1, le=50, description="Tries per notification before it is given up"
    )
    retry_base_seconds: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Wait before the first retry; each further retry waits twice as long",
    )
    sweep_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often deliveries whose wake-up was lost (a restart) are looked for",
    )
    concurrency: int = Field(default=4, ge=1, le=64, description="Deliveries sent at once")
    smtp: SmtpSettings = SmtpSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TERRAPOD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(default=Path("data"), description="Where embedded state lives")
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    external_url: str | None = Field(
        default=None,
        description="Public base URL (https://terrapod.example.com). Unset: taken from each "
        "request's Host header.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Master secret for URL signatures and encryption at rest. Unset: "
        "generated once in <data_dir>/secret.key (mode 0600).",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Becomes the bootstrap admin's API token at first start."
    )
    admin_username: str = "admin"
    admin_email: str = "admin@localhost"
    default_organization: str = "default"
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    runs: RunSettings = RunSettings()
    notifications: NotificationSettings = NotificationSettings()
    runtasks: RunTaskSettings = RunTaskSettings()
    agents: AgentSettings = AgentSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    max_request_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_inline_state_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest state-version create body (Terraform 1.0 sends state inline, "
        "base64); newer clients upload through a streamed signed URL instead.",
    )
    signed_url_ttl_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    token_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs whose X-Forwarded-For is believed (comma-separated in the "
        "environment: TERRAPOD_TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("TERRAPOD_CONFIG_FILE")
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigFileMissing(config_file)
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @field_validator("secret_key", "admin_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("external_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("external_url must start with http:// or https://")
        return value.rstrip("/")

    @cached_property
    def database_url(self) -> str:
        """The async SQLAlchemy URL actually used."""
        url = self.database.url or f"sqlite:///{(self.data_dir / 'terrapod.db').resolve()}"
        scheme, rest = url.split(":", 1)
        scheme = {
            "sqlite": "sqlite+aiosqlite",
            "postgres": "postgresql+asyncpg",
            "postgresql": "postgresql+asyncpg",
        }.get(scheme, scheme)
        return f"{scheme}:{rest}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def storage_path(self) -> Path:
        return self.storage.path or self.data_dir / "objects"


class ConfigFileMissing(ValueError):
    def __init__(self, path: str) -> None:
        super().__init__(f"TERRAPOD_CONFIG_FILE names {path!r}, which does not exist")


def load_settings(**overrides: Any) -> Settings:
    """Build Settings; raises pydantic.ValidationError or ConfigFileMissing when invalid."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
