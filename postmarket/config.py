"""Configuration for every part of the pipeline: environment, TOML file, then loopback defaults.

Precedence, highest first: keyword arguments, ``POSTMARKET_*`` environment variables,
the TOML file named by ``POSTMARKET_CONFIG`` (default ``./postmarket.toml``), the
addresses written by a running local stack (``<home>/stack.json``), and the defaults
below, which all point at 127.0.0.1 so nothing listens beyond this machine unless
configured to. Secrets are never settings values: they are read from files named here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from postmarket.claim_levels import AcceptableRule
from postmarket.kafka_security import (
    DEFAULT_MECHANISM,
    KafkaSecurity,
    SaslMechanism,
    SecurityProtocol,
)

if TYPE_CHECKING:
    from postmarket.metrics_endpoint import MetricsEndpoint

ENV_PREFIX = "POSTMARKET_"
CONFIG_FILE_ENV = "POSTMARKET_CONFIG"
STACK_STATE_FILE = "stack.json"


def config_file() -> Path:
    """The TOML file settings are read from (it need not exist)."""
    return Path(os.environ.get(CONFIG_FILE_ENV, "postmarket.toml"))


def default_home() -> Path:
    """Where the local stack keeps its state, logs and caches."""
    return Path(os.environ.get(f"{ENV_PREFIX}HOME", ".postmarket")).absolute()


class Settings(BaseSettings):
    """Everything a collector, worker or operator command needs to find the others."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(default_factory=default_home, description="local stack state and logs")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap host:port")
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, or SASL_SSL for a broker with SCRAM and TLS"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(DEFAULT_MECHANISM, description="SCRAM variant")
    kafka_username: str = Field("", description="SCRAM principal of this client (SASL_SSL)")
    kafka_password_file: Path | None = Field(
        None, description="0600 file holding the SCRAM password (never the password itself)"
    )
    kafka_ca_file: Path | None = Field(None, description="PEM CA that signed the broker's cert")
    prometheus_url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL")
    evidence_url: str = Field(
        "", description="SQLAlchemy URL of the evidence store; empty means <home>/evidence.db"
    )
    worker_id: str = Field("postmarket-worker", description="Faust application id")
    worker_data_dir: Path | None = Field(
        None,
        description="where workers keep Faust's local data, one directory per worker_id; "
        "unset means <home>/workers",
    )
    worker_metrics_host: str = Field("127.0.0.1", description="worker /metrics bind address")
    worker_metrics_port: int = Field(9464, ge=0, le=65535, description="worker /metrics port")
    metrics_tls_cert_file: Path | None = Field(
        None, description="PEM certificate: serve worker and sink /metrics over HTTPS"
    )
    metrics_tls_key_file: Path | None = Field(
        None, description="0600 PEM private key of metrics_tls_cert_file"
    )
    metrics_basic_auth_user: str = Field("", description="user /metrics requires (basic auth)")
    metrics_basic_auth_password_file: Path | None = Field(
        None, description="0600 file holding the /metrics password (never the password itself)"
    )
    evidence_metrics_host: str = Field("127.0.0.1", description="evidence sink /metrics address")
    evidence_metrics_port: int = Field(
        9466, ge=0, le=65535, description="evidence sink /metrics port (alerts by status)"
    )
    topic_partitions: int = Field(4, ge=1, description="partitions of every pipeline topic")
    fleet_false_alarms_per_year: float = Field(
        10.0,
        gt=0.0,
        allow_inf_nan=False,
        description="the surveillance plan's budget: false alarms a year the whole fleet may "
        "raise while every site performs at or above its acceptable levels; every test on "
        "every stream gets an equal part, in its own units",
    )
    fleet_streams: int = Field(
        100, ge=1, description="streams (device, version, site, task) sharing the budget"
    )
    fleet_pooled_groups: int = Field(
        10,
        ge=0,
        description="(device, version, task) groups the pooled per-version stage tests across "
        "sites; its tests share the budget with the streams' (0: not counted)",
    )
    stream_predictions_per_year: float = Field(
        10_000.0,
        gt=0.0,
        allow_inf_nan=False,
        description="predictions a stream is planned to see a year (a busier stream raises "
        "proportionally more false alarms than planned)",
    )
    followup_completeness: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="planned share of predictions that reach ground truth",
    )
    planned_prevalence: float = Field(
        0.25,
        gt=0.0,
        lt=1.0,
        description="prevalence planned for a version that registered no reference prevalence",
    )
    acceptable_level: AcceptableRule = Field(
        "ci_lower",
        description="what every labelled chart and claims test treats as in control: "
        "performance at or above each claim's lower confidence bound (ci_lower: what the "
        "registration study demonstrated) or its point estimate (point_estimate)",
    )
    join_retention_days: float = Field(
        400.0,
        gt=0.0,
        description="event-time days a case waits for truth before it is dropped as expired",
    )
    join_dedupe_days: float = Field(
        3650.0,
        ge=0.0,
        description="event-time days a dropped case still remembers its event ids, so a "
        "resend or a second replay of its history is not counted again",
    )
    event_time_max_skew_hours: float = Field(
        24.0,
        gt=0.0,
        description="how far after its record was sent (its Kafka timestamp, or the worker's "
        "clock if earlier) an event may be dated: clock skew and time-zone mistakes; a later "
        "event is dead-lettered, so that no wrong clock moves the join's watermark",
    )
    event_time_max_age_days: float = Field(
        10950.0,
        gt=0.0,
        description="how far before its record was sent an event may be dated: the oldest "
        "history a backfill or replay may bring; an older event is dead-lettered",
    )
    join_sweep_interval_s: float = Field(
        60.0, ge=0.0, description="how often each partition's expired case files are dropped"
    )
    grafana_url: str = Field(
        "http://127.0.0.1:3000",
        description="Grafana base URL for `postmarket dashboards publish` without --url",
    )
    change_control_policy: str = Field(
        "nmpa-syzb",
        description="preset judging field versions: nmpa-syzb, strict-every-change, "
        "loose-major-only or fda-pccp",
    )
    event_authenticity: Literal["required", "off"] = Field(
        "required",
        description="required: workers dead-letter every case event not signed by a "
        "registered, unrevoked key of its own site; off: accept unsigned events",
    )
    gate_required_for: Literal["none", "registration", "deployment"] = Field(
        "none",
        description="which registry statuses need a passing standard test database gate "
        "(postmarket testdb run): none; registration: pending and registered; deployment: "
        "registered, the status that lets the fleet run a version",
    )
    gate_interval: Literal["wilson", "exact"] = Field(
        "wilson",
        description="the gate's interval of a proportion: wilson (as the report) or exact "
        "(Clopper-Pearson)",
    )
    gate_criterion: Literal["lower_bound", "estimate", "not_below"] = Field(
        "lower_bound",
        description="what the gate demands of every stratum of a claim against its acceptable "
        "level (acceptable_level): its interval's lower bound at or above it (lower_bound), "
        "its estimate (estimate), or only its upper bound (not_below: not significantly below)",
    )
    worker_session_timeout_s: float = Field(
        30.0,
        ge=6.0,
        le=300.0,
        description="how long the broker waits for a silent worker before moving its partitions",
    )

    def kafka_security(self) -> KafkaSecurity:
        """How this process authenticates to Kafka (secrets stay in their files)."""
        return KafkaSecurity.from_settings(self)

    def metrics_endpoint(self, host: str, port: int) -> MetricsEndpoint:
        """A /metrics endpoint at ``host:port`` with this process's TLS and basic auth."""
        from postmarket.metrics_endpoint import MetricsEndpoint

        return MetricsEndpoint(
            host=host,
            port=port,
            tls_cert_file=self.metrics_tls_cert_file,
            tls_key_file=self.metrics_tls_key_file,
            basic_auth_user=self.metrics_basic_auth_user,
            basic_auth_password_file=self.metrics_basic_auth_password_file,
        )

    @property
    def worker_data_path(self) -> Path:
        """This worker's Faust data directory: never the current directory, which Faust
        would otherwise fill with one ``<worker_id>-data`` directory per worker started."""
        return (self.worker_data_dir or self.home / "workers") / self.worker_id

    @property
    def evidence_database_url(self) -> str:
        """The evidence store URL, defaulting to a SQLite file in the stack home."""
        return self.evidence_url or f"sqlite:///{self.home / 'evidence.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
            StackStateSource(settings_cls),
        )


class StackStateSource(PydanticBaseSettingsSource):
    """Addresses of the local stack started by ``postmarket stack up`` (free ports)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        home = Path(os.environ.get(f"{ENV_PREFIX}HOME", "") or default_home())
        state_file = home / STACK_STATE_FILE
        if not state_file.is_file():
            return {}
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return {}
        addresses = state.get("settings", {})
        return {k: v for k, v in addresses.items() if k in Settings.model_fields}
