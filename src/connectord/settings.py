"""Settings: one pydantic-settings class read from ``CONNECTORD_*`` variables."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from connectord.errors import ConfigurationError


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "connectord"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of connectord; the README has the table."""

    model_config = SettingsConfigDict(env_prefix="CONNECTORD_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder of the embedded SQLite database and its secret key file.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:pass@host/db for a shared store; unset means SQLite in data_dir.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key ring: comma-separated [id:]base64 32-byte keys, newest last. "
        "Required with PostgreSQL; without it the embedded default keeps a key file in data_dir.",
    )
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs the egress policy lets probes reach although they are in a denied range.",
    )
    file_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Local folders that file and SQLite connectors may use (comma-separated); "
        "{tenant} in a root is replaced by the tenant's id, giving each tenant its own.",
    )
    probe_timeout: float = Field(default=10.0, gt=0, description="Default probe timeout in seconds.")
    probe_timeout_max: float = Field(
        default=60.0, gt=0, description="Upper bound for a connector's own timeout, in seconds."
    )
    host: str = Field(default="127.0.0.1", description="Address `connectord serve` listens on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port `connectord serve` listens on.")
    workers: int = Field(default=1, ge=1, description="Server worker processes.")
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    log_level: str = Field(default="INFO", description="Log level.")
    max_body_bytes: int = Field(default=65536, gt=0, description="Largest request body accepted.")
    test_rate_per_minute: int = Field(
        default=600, ge=1, description="Connector tests a tenant may start per minute."
    )
    test_concurrency: int = Field(default=16, ge=1, description="Connector tests a tenant may run at once.")
    secret_ref_env: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Environment variables env: secret references may read (comma-separated; NAME, PREFIX*).",
    )
    secret_ref_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Folders file: secret references may read (comma-separated; {tenant} allowed).",
    )
    secret_ref_aws_sm: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="AWS Secrets Manager names or ARNs aws-sm: references may read "
        "(comma-separated; NAME or PREFIX*; {tenant} allowed).",
    )
    secret_ref_ttl: float = Field(
        default=30.0, ge=0, description="Seconds a resolved secret reference is kept in memory."
    )
    secret_ref_aws_endpoint_url: str | None = Field(
        default=None, description="Secrets Manager endpoint URL (a VPC endpoint; unset: AWS's own)."
    )
    secret_ref_aws_region: str | None = Field(
        default=None, description="Secrets Manager region (unset: the AWS SDK's default chain)."
    )
    drain_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a stopping server (SIGTERM) lets in-flight requests and tests finish.",
    )
    db_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one PostgreSQL operation may take (connect, queries, commit); then 503.",
    )
    failure_threshold: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed tests after which connector.down is sent "
        "(a connector's own failure_threshold overrides it).",
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client has to send a request's headers (then 408)."
    )
    body_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a client has to send a request's body (then 408)."
    )
    key_cache_ttl: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="Seconds a looked-up API key is trusted without asking the store again: the bound "
        "within which a key revoked elsewhere (another replica, the CLI) is refused (0: no cache).",
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, description="Seconds an idle keep-alive connection stays open."
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Open connections per worker; more are answered 503 and closed."
    )
    # --- webhooks (docs/webhooks.md) ---
    webhooks: Literal["on", "off"] = Field(
        default="on", description="Whether this process delivers webhooks (the outbox waits if none does)."
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds one webhook delivery attempt may take."
    )
    webhook_max_attempts: int = Field(
        default=16, ge=1, le=100, description="Attempts of one delivery before it is marked failed."
    )
    webhook_backoff: float = Field(
        default=10.0,
        gt=0,
        description="Seconds before the first retry; each further retry waits twice as long "
        "(with jitter, at most an hour).",
    )
    webhook_poll_interval: float = Field(
        default=1.0, gt=0, le=60, description="Seconds between looks at the outbox when it is empty."
    )
    # --- health scheduler and history retention (docs/health.md) ---
    scheduler: Literal["on", "off"] = Field(
        default="on",
        description="Whether this process runs scheduled checks and history retention "
        "(on SQLite one process of the data dir does).",
    )
    check_interval: float = Field(
        default=300.0,
        ge=0.1,
        description="Seconds between scheduled checks of a connector without its own check_interval "
        "(below 1 s is meant for tests).",
    )
    scheduler_concurrency: int = Field(
        default=64, ge=1, le=10_000, description="Scheduled checks this process runs at once."
    )
    scheduler_tenant_concurrency: int = Field(
        default=16, ge=1, le=10_000, description="Scheduled checks of one tenant this process runs at once."
    )
    scheduler_lease: float | None = Field(
        default=None,
        gt=0,
        description="Seconds a claimed check is leased to a process before another may take it over "
        "(on PostgreSQL sooner when the process died); more than CONNECTORD_PROBE_TIMEOUT_MAX "
        "(unset: that maximum plus 30 s).",
    )
    history_max_per_connector: int = Field(
        default=1000, ge=0, description="Test results kept per connector, newest first (0: no bound)."
    )
    history_max_age_days: float = Field(
        default=90.0, ge=0, description="Days a test result is kept (0: no bound)."
    )

    # --- the HTTP proxy (docs/use.md) ---
    proxy_max_body: int = Field(
        default=1_048_576, gt=0, description="Largest request body the proxy forwards, in bytes (then 413)."
    )
    proxy_max_answer: int = Field(
        default=16_777_216,
        gt=0,
        description="Largest answer body the proxy passes back, in bytes (then 502, or the stream is cut).",
    )
    proxy_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds the proxy waits for an upstream's headers, and between two reads of its "
        "body, unless the connector's own timeout is set (bounded by CONNECTORD_PROBE_TIMEOUT_MAX).",
    )
    proxy_rate: int = Field(
        default=6000, ge=1, description="Proxied requests one API key may start per minute (then 429)."
    )
    proxy_concurrency: int = Field(
        default=64, ge=1, description="Proxied requests one API key may have in flight at once (then 429)."
    )

    # --- the MCP gateway (docs/use.md) ---
    gateway_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a gateway call (tools/call, resources/read, prompts/get) may take in all, "
        "unless the connector's own timeout is set (bounded by CONNECTORD_PROBE_TIMEOUT_MAX).",
    )

    @field_validator(
        "egress_allow", "file_roots", "secret_ref_env", "secret_ref_dirs", "secret_ref_aws_sm", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("egress_allow")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"not a CIDR: {cidr!r}") from exc
        return value

    @property
    def uses_postgres(self) -> bool:
        """True when the store is a shared PostgreSQL database."""
        return self.database_url is not None

    @property
    def sqlite_path(self) -> Path:
        """The embedded database file."""
        return self.data_dir / "connectord.db"

    @property
    def lease_seconds(self) -> float:
        """How long a scheduled check is leased: longer than any probe may take."""
        return self.scheduler_lease if self.scheduler_lease is not None else self.probe_timeout_max + 30.0

    def check_safe(self) -> None:
        """Refuse unsafe combinations at start (a shared store needs a real key)."""
        if self.uses_postgres and self.secret_key is None:
            raise ConfigurationError(
                "CONNECTORD_SECRET_KEY is required with CONNECTORD_DATABASE_URL: "
                "replicas sharing a database must share the key ring"
            )
        if self.probe_timeout > self.probe_timeout_max:
            raise ConfigurationError("CONNECTORD_PROBE_TIMEOUT exceeds CONNECTORD_PROBE_TIMEOUT_MAX")
        if self.lease_seconds <= self.probe_timeout_max:
            # A lease that ends before the probe may would let a second replica run the check.
            raise ConfigurationError(
                "CONNECTORD_SCHEDULER_LEASE must exceed CONNECTORD_PROBE_TIMEOUT_MAX "
                f"({self.lease_seconds:g} <= {self.probe_timeout_max:g} s)"
            )
        data = self.data_dir.resolve()
        for root in self.file_roots:
            # The part before {tenant}: every tenant's root lies under it.
            fixed = Path(str(root).split("{tenant}", 1)[0] or "/").resolve()
            if data == fixed or fixed in data.parents:
                raise ConfigurationError(
                    f"CONNECTORD_FILE_ROOTS: {root} holds the data directory; "
                    "tenants' file connectors would reach the store and the key file"
                )
