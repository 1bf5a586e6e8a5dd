"""The server's settings: defaults < YAML config file < ``LRSERVE_*`` environment < explicit arguments.

.. code-block:: yaml

    # lrserve.yaml (``lrserve serve --config lrserve.yaml``, or ``LRSERVE_CONFIG=lrserve.yaml``)
    store: postgresql+psycopg://lrserve@db/lrserve
    host: 0.0.0.0
    port: 8000
    tokens:                       # `lrserve token new NAME --scopes read,train` prints an entry
      - {name: trainer, sha256: 9f86d08..., scopes: [train]}
      - {name: alice, sha256: 2c26b46..., scopes: [admin]}
    presets:                      # PUT /v1/runs/{id} {"preset": "resnet", "overrides": {...}}
      resnet: {schedule: {type: StepLR, step_size: 30, gamma: 0.1}}
    limits: {max_body_bytes: 1048576, max_lease: 100000, max_curve_points: 1000000}

Environment variables override the file: ``LRSERVE_STORE``, ``LRSERVE_PORT``, ``LRSERVE_LIMITS__MAX_LEASE``
(nested fields joined by ``__``), ``LRSERVE_TOKENS='[{"name": ..., "sha256": ..., "scopes": [...]}]'`` (JSON).
Only sha256 digests of tokens are stored; every replica reads the same file, so they accept the same tokens.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from lrserve.schemas.wire import MAX_CURVE_POINTS, MAX_LEASE
from lrserve.service.budget import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_MAX_APPLIED_STEPS,
    DEFAULT_MAX_PREVIEW_METRICS,
    DEFAULT_MAX_VALUES,
    DEFAULT_MAX_WORK,
    Budget,
)
from lrserve.service.logs import LogFormat

Scope = Literal["read", "train", "admin"]
CONFIG_ENV = "LRSERVE_CONFIG"


class TokenConfig(BaseModel):
    """One API token: its name (recorded as the actor of writes), the sha256 of the secret, its scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 digest of the token (lowercase)")
    scopes: list[Scope] = Field(min_length=1)


class Limits(BaseModel):
    """Bounds on what one request may ask for; beyond them: 413 (body) or 422 (the parameter named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(1 << 20, ge=1024, description="request bodies above this are refused (413)")
    max_lease: int = Field(MAX_LEASE, ge=1, le=MAX_LEASE, description="largest `count` of GET .../lr")
    max_curve_points: int = Field(MAX_CURVE_POINTS, ge=1, le=MAX_CURVE_POINTS, description="points per curve")
    max_page: int = Field(1000, ge=1, le=100_000, description="largest `limit` of list and event pages")
    max_values: int = Field(
        DEFAULT_MAX_VALUES, ge=1, description="values (steps x groups, x2 with momentum) in one answer (422 over)"
    )
    max_work: int = Field(
        DEFAULT_MAX_WORK, ge=1, description="estimated element-operations of one evaluation (service.budget; 422 over)"
    )
    max_preview_metrics: int = Field(
        DEFAULT_MAX_PREVIEW_METRICS, ge=0, description="metrics a curve preview may simulate plateau over"
    )
    max_applied_steps: int = Field(DEFAULT_MAX_APPLIED_STEPS, ge=1, description="steps one /applied report may cover")
    cache_bytes: int = Field(
        DEFAULT_CACHE_BYTES, ge=0, description="bytes of evaluated windows kept for frozen reads (LRU, all runs)"
    )

    def budget(self) -> Budget:
        return Budget(
            max_values=self.max_values,
            max_work=self.max_work,
            max_preview_metrics=self.max_preview_metrics,
            max_applied_steps=self.max_applied_steps,
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LRSERVE_", env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    config: Path | None = Field(None, description="the YAML file these settings were read from")
    store: str = Field("sqlite:///./lrserve.db", description="database URL: sqlite:///path or postgresql+psycopg://")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    tokens: list[TokenConfig] = Field(default_factory=list)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict, description="name -> partial RunSpec")
    limits: Limits = Field(default_factory=Limits)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: LogFormat = Field("json", description="json: one JSON object per line; text: for a terminal")
    request_log: bool = Field(
        True, description="one line per request on the 'lrserve.request' logger (at INFO; off at log_level warning)"
    )
    metrics: bool = Field(True, description="serve GET /metrics (Prometheus) and count requests for it")
    shutdown_timeout: float = Field(
        30, ge=0, le=3600, description="seconds SIGTERM waits for requests in flight before cancelling them"
    )
    replica_staleness: float = Field(
        1.0,
        gt=0,
        le=60,
        description="PostgreSQL replicas: the longest a replica answers a served step from memory after another "
        "replica deleted, re-created or resumed the run (run notifications with a self-ping every quarter of it)",
    )
    allow_open_non_loopback: bool = Field(
        False, description="serve without tokens on a non-loopback address (anyone who can reach it may write)"
    )

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: list[TokenConfig]) -> list[TokenConfig]:
        names = [t.name for t in tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"token names must be unique; repeated: {dupes}")
        return tokens

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's path is itself a setting (argument, then environment), so it is looked up before the
        # sources are assembled; the file ranks below both.
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        path = init_kwargs.get("config") or os.environ.get(CONFIG_ENV)
        if not path:
            return (init_settings, env_settings)
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=Path(path)))

    @property
    def is_open(self) -> bool:
        """No tokens configured: every request is allowed, with no actor recorded."""
        return not self.tokens

    def bind_problem(self) -> str | None:
        """Why ``lrserve serve`` must not start on ``host`` as configured, or None. This judges the setting only, at
        start; what holds however the server was started (``uvicorn --factory`` with its own ``--host``, a socket
        from a process manager) is ``api.middleware.LoopbackOnly``: an open server answers loopback clients only."""
        if self.is_open and not is_loopback(self.host) and not self.allow_open_non_loopback:
            return (
                f"no API tokens are configured, so the server would be open to anyone who can reach "
                f"{self.host}; listen on 127.0.0.1, configure tokens (`lrserve token new NAME`), or set "
                f"allow_open_non_loopback: true (LRSERVE_ALLOW_OPEN_NON_LOOPBACK=1)"
            )
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from ``config`` (or ``$LRSERVE_CONFIG``), the environment, and ``overrides`` (None values skipped)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        values["config"] = Path(config)
    return Settings(**values)
