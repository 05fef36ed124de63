"""Collector configuration: ``collector.toml`` and the environment, secrets only by file.

Precedence: every setting but the mapping tables has a ``POSTMARKET_...`` variable which, set
and not blank, overrides the TOML file; everything else has loopback defaults. A variable
naming a secret's file ends in ``_FILE`` and holds the file's *path*, never the secret. A
variable of a table (``[collector.inbox]``, ``[collector.scp]``, ``[collector.stow_rs]``) sets
that table, which its switch variable turns on when the file has none. A bad value from the
environment is refused naming its variable, never showing a secret (the variables and their
rules: :mod:`collectors.settings_environment`). The keys themselves are read by
:class:`~collectors.pseudonym.PseudonymKey` and :class:`~postmarket.authenticity.SigningKey`,
which refuse a file others can read and never show a key in a message; an error about a
secret file names its setting and variable.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from collectors.batching import DEFAULT_INPUT_CONTRACT, InputContract
from collectors.pseudonym import PseudonymKey, PseudonymKeyError
from collectors.settings_environment import (
    PSEUDONYM_KEY_ENV,
    SECTION_SWITCH_ENV,
    SITE_ID_ENV,
    STOW_RS_ENV,
    STOW_TOKEN_ENV,
    apply_environment,
    renamed_variable_problem,
    secret_setting,
    setting_name,
    take_deprecated_names,
    variable_at,
)
from collectors.settings_environment import CollectorConfigError as CollectorConfigError
from postmarket.authenticity import SigningKey, SigningKeyError
from postmarket.contracts.events import Identifier, Label, ReadRound, TruthSource
from postmarket.kafka_security import (
    DEFAULT_MECHANISM,
    KafkaSecurity,
    SaslMechanism,
    SecurityProtocol,
)
from postmarket.metrics_endpoint import MetricsEndpoint, MetricsEndpointError
from postmarket.secrets import SecretFileError, read_secret_file

StudyIdentifierKind = Literal["study_instance_uid", "accession_number"]
"""How a follow-up names its study: the DICOM Study Instance UID or the RIS accession."""


DEFAULT_ROUNDS: dict[str, ReadRound] = {
    "1": "first",
    "2": "second",
    "adjudication": "adjudication",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InboxSettings(_Section):
    """The watched folder: DICOM files, AI outputs (JSON) and follow-ups (CSV, FHIR, HL7).

    A file is read once it has not changed for ``settle_seconds``, then moved to
    ``processed`` (or deleted, with ``processed_action = "delete"``) or to ``rejected``
    with a ``.reason.txt`` beside it, so it is never read twice.
    """

    path: Path
    processed: Path | None = None
    rejected: Path | None = None
    processed_action: Literal["move", "delete"] = "move"
    poll_seconds: float = Field(1.0, gt=0.0, le=3600.0)
    settle_seconds: float = Field(0.5, ge=0.0, le=3600.0)
    max_dicom_bytes: int = Field(4 * 1024**3, gt=0)
    """Larger DICOM files are refused unread (only headers are read, but a multi-frame
    study of several GiB is normal; a bigger file is not a study)."""
    max_ai_output_bytes: int = Field(1024**2, gt=0)
    """An AI output JSON is a few hundred bytes; it is parsed whole, so it is bounded."""
    max_followup_bytes: int = Field(64 * 1024**2, gt=0)
    """A CSV, FHIR or HL7 follow-up file is read into memory whole: bounded too."""

    @property
    def processed_dir(self) -> Path:
        return self.processed or self.path.parent / f"{self.path.name}-processed"

    @property
    def rejected_dir(self) -> Path:
        return self.rejected or self.path.parent / f"{self.path.name}-rejected"


class StoreSCPSettings(_Section):
    """The DICOM C-STORE SCP: only the listed calling AE titles may send."""

    host: str = "127.0.0.1"
    port: int = Field(11112, ge=0, le=65535)
    ae_title: Annotated[str, Field(min_length=1, max_length=16)] = "POSTMARKET"
    allowed_calling_ae_titles: tuple[Annotated[str, Field(min_length=1, max_length=16)], ...] = (
        Field(min_length=1)
    )


class StowRSSettings(_Section):
    """DICOMweb STOW-RS (PS3.18 10.5): an AI platform or PACS POSTs instances over HTTP(S).

    A request must come from ``allowed_peers`` (addresses or networks) and/or carry the
    bearer token held in ``token_file`` (mode 0600): at least one is required, and when both
    are set a request needs both. The token is read from the file, never a value. Each
    setting has its variable (:data:`STOW_RS_ENV`); ``POSTMARKET_STOW_PORT`` turns the
    endpoint on without the TOML table.
    """

    host: str = "127.0.0.1"
    port: int = Field(8104, ge=0, le=65535)
    allowed_peers: tuple[IPvAnyNetwork, ...] = ()
    token_file: Path | None = None
    tls_cert_file: Path | None = None
    """PEM certificate chain: serve HTTPS (with ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """0600 PEM private key of ``tls_cert_file``."""
    max_request_bytes: int = Field(8 * 1024**3, gt=0)
    """A whole request body (every instance in it, spooled to disk, never to memory);
    each instance is also bounded by ``[collector.inbox] max_dicom_bytes``."""

    @model_validator(mode="after")
    def _guarded(self) -> StowRSSettings:
        if not self.allowed_peers and self.token_file is None:
            raise ValueError(
                "set allowed_peers, token_file or both "
                f"({STOW_RS_ENV['stow_rs.allowed_peers']}, {STOW_TOKEN_ENV}): anyone could send"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                f"TLS needs both tls_cert_file ({STOW_RS_ENV['stow_rs.tls_cert_file']}) and "
                f"tls_key_file ({STOW_RS_ENV['stow_rs.tls_key_file']})"
            )
        return self

    def bearer_token(self) -> bytes | None:
        """The token a request must carry, read now (None without ``token_file``).

        Raises ``SecretFileError`` naming the setting and its variable, never the token.
        """
        if self.token_file is None:
            return None
        try:
            return read_secret_file(self.token_file, "STOW-RS token")
        except SecretFileError as error:
            raise SecretFileError(f"{secret_setting('token_file')}: {error}") from None


class CsvFollowUpMapping(_Section):
    """Which column of a RIS/pathology CSV export means what, and how values map.

    ``label_values`` maps the export's words (compared case-insensitively, trimmed) to
    ``positive``/``negative``; a value not listed rejects its row. ``source`` is fixed for
    the export, or read from ``source_column`` through ``source_values``.
    """

    identifier_column: str
    identifier_kind: StudyIdentifierKind = "accession_number"
    label_column: str
    label_values: dict[str, Label] = Field(min_length=1)
    date_column: str
    date_format: str = "%Y-%m-%d"
    timezone: str = "UTC"
    source: TruthSource | None = None
    source_column: str | None = None
    source_values: dict[str, TruthSource] = Field(default_factory=dict)
    reader_column: str | None = None
    round_column: str | None = None
    round_values: dict[str, ReadRound] = Field(default_factory=lambda: dict(DEFAULT_ROUNDS))
    blinded: bool = True
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    encoding: str = "utf-8-sig"

    @field_validator("label_values", "source_values", "round_values")
    @classmethod
    def _normalise_keys(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        return {key.strip().casefold(): value for key, value in mapping.items()}

    @model_validator(mode="after")
    def _one_source(self) -> CsvFollowUpMapping:
        if (self.source is None) == (self.source_column is None):
            raise ValueError("set exactly one of source and source_column")
        return self


class FhirFollowUpMapping(_Section):
    """``DiagnosticReport.conclusionCode`` codings (``system|code``) to labels."""

    identifier_kind: StudyIdentifierKind = "accession_number"
    identifier_system: str | None = None
    """``identifier.system`` holding the study identifier; by default the ACSN type."""
    label_codes: dict[str, Label] = Field(min_length=1)
    source: TruthSource = "pathology"
    blinded: bool = True


class Hl7FollowUpMapping(_Section):
    """ORU^R01: where the study identifier sits, and OBX-5 values to labels."""

    identifier_field: Annotated[str, Field(pattern=r"^(OBR|PID|ORC)-\d{1,2}$")] = "OBR-3"
    identifier_kind: StudyIdentifierKind = "accession_number"
    observation_id: str | None = None
    """Only OBX segments whose OBX-3 code is this (all OBX when unset)."""
    label_values: dict[str, Label] = Field(min_length=1)
    source: TruthSource = "pathology"
    timezone: str = "UTC"
    blinded: bool = True

    @field_validator("label_values")
    @classmethod
    def _normalise_keys(cls, mapping: dict[str, Label]) -> dict[str, Label]:
        return {key.strip().casefold(): value for key, value in mapping.items()}


class AiSrMapping(_Section):
    """AI results as DICOM SR (TID 1500 measurement reports): which content items mean what.

    Concepts are ``scheme|code`` (``DCM|122157`` is "Probability"). The score is the
    highest matching NUM item (the most suspicious finding decides the case); the
    decision comes from ``decision_concept`` CODE items through ``decision_values``, or,
    when that is unset, from the score against ``operating_threshold``. The device
    version is the SR's Software Versions, which must read S.Y.Z.B.
    """

    device_id: Identifier
    task: Identifier
    score_concept: str = "DCM|122157"
    decision_concept: str | None = None
    decision_values: dict[str, Label] = Field(default_factory=dict)
    operating_threshold: float = Field(0.5, ge=0.0, le=1.0)
    timezone: str = "UTC"
    study_design: Literal["prospective", "retrospective"] = "prospective"


class FollowUpMappings(_Section):
    csv: CsvFollowUpMapping | None = None
    fhir: FhirFollowUpMapping | None = None
    hl7: Hl7FollowUpMapping | None = None


class CollectorSettings(BaseModel):
    """Everything one site's collector needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_id: Identifier
    pseudonym_key_file: Path = Field(description="0600 file holding the site's HMAC key")
    signing_key_file: Path | None = Field(
        None,
        description="0600 PEM file of the site's Ed25519 event-signing key "
        "(`postmarket collector keygen`); without it events go unsigned and workers that "
        "require authenticity dead-letter them",
    )
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    """SASL_SSL on a broker with SCRAM and TLS (``postmarket stack up --secure``)."""
    kafka_sasl_mechanism: SaslMechanism = DEFAULT_MECHANISM
    kafka_username: str = ""
    """This site's Kafka principal, ``site-<site_id>``: it may only write the input topics."""
    kafka_password_file: Path | None = None
    """0600 file holding the principal's password (``postmarket stack add-site`` writes one)."""
    kafka_ca_file: Path | None = None
    """PEM certificate of the CA that signed the broker's certificate."""
    input_contract: InputContract = DEFAULT_INPUT_CONTRACT
    """``v2``: signed batches of this site's events on ``pms.inputs.v2`` (keyed by site);
    ``v1``: one record per event on ``pms.predictions.v1``/``pms.followups.v1``, for a fleet
    whose central workers do not read v2 yet. Events waiting in the outbox leave in
    whichever is set when they are sent."""
    outbox_path: Path = Path("collector-outbox.db")
    outbox_max_bytes: int = Field(1024**3, gt=0)
    outbox_warn_fraction: float = Field(0.8, gt=0.0, le=1.0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9465, ge=0, le=65535)
    metrics_tls_cert_file: Path | None = None
    """PEM certificate: serve /metrics over HTTPS (with ``metrics_tls_key_file``)."""
    metrics_tls_key_file: Path | None = None
    """0600 PEM private key of ``metrics_tls_cert_file``."""
    metrics_basic_auth_user: str = ""
    """The user a scrape must authenticate as (with ``metrics_basic_auth_password_file``)."""
    metrics_basic_auth_password_file: Path | None = None
    """0600 file holding the /metrics password (never the password itself)."""
    mllp_host: str = "127.0.0.1"
    mllp_port: int | None = Field(None, ge=0, le=65535)
    """Receive ORU^R01 results over MLLP on this port (off when unset; 2575 is HL7's
    registered port); the results are read through ``[collector.followups.hl7]``."""
    mllp_allowed_peers: tuple[str, ...] = ("127.0.0.1", "::1")
    """Addresses or networks (``10.20.0.0/24``) of the interface engines that may send; a
    connection from any other peer is closed at once, unread, logged and counted."""
    mllp_max_message_bytes: int = Field(8 * 1024**2, gt=0)
    """A larger message is refused (AR) and skipped; a result with an embedded PDF report
    (OBX of type ED) runs to a few MiB, and each connection buffers one message."""
    mllp_max_connections: int = Field(16, gt=0, le=1024)
    """At most this many MLLP connections at once; one more is closed at once, logged and
    counted (``postmarket_collector_mllp_connections_refused_total``). Each connection may
    buffer up to ``mllp_max_message_bytes``, so the cap bounds the listener's memory
    (16 x 8 MiB by default); an interface engine opens one connection per channel."""
    mllp_idle_timeout_s: float = Field(300.0, gt=0.0, le=86400.0)
    """A connection that completes no message (or reads no acknowledgement) for this long
    is closed, logged and counted (``postmarket_collector_mllp_connections_closed_total``),
    so a silent peer or a message that never ends holds no connection slot; the engine
    reconnects when it next has a message. The clock restarts after each acknowledgement."""
    mllp_tls_cert_file: Path | None = None
    """PEM certificate: accept MLLP over TLS only (with ``mllp_tls_key_file``)."""
    mllp_tls_key_file: Path | None = None
    """0600 PEM private key of ``mllp_tls_cert_file``."""
    state_path: Path | None = None
    """SQLite file of the local case index (pseudonyms only); beside the outbox by default."""
    waiting_expiry_days: float = Field(30.0, gt=0.0, le=3650.0)
    """An AI output or follow-up still waiting for the study it names after this long is
    dropped and counted (``postmarket_collector_waiting_expired_total``): its study is not
    coming through this collector."""
    metrics_targets_dir: Path | None = None
    """A directory Prometheus reads scrape targets from (``file_sd_configs``): /metrics is
    announced there on start, as a JSON file naming this collector's address and site."""
    stack_home: Path | None = None
    """Deprecated: use ``metrics_targets_dir``. A local stack's home, whose Prometheus
    targets directory is then announced to."""
    inbox: InboxSettings | None = None
    scp: StoreSCPSettings | None = None
    stow_rs: StowRSSettings | None = None
    followups: FollowUpMappings = FollowUpMappings()
    ai_sr: AiSrMapping | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CollectorSettings:
        for section, configured in (("scp", self.scp), ("stow_rs", self.stow_rs)):
            if configured is not None and self.inbox is None:
                raise ValueError(
                    f"[collector.{section}] stores into the inbox: configure [collector.inbox] "
                    f"(or {SECTION_SWITCH_ENV['inbox']})"
                )
        for mapping in (self.followups.csv, self.followups.hl7, self.ai_sr):
            if mapping is not None:
                try:
                    ZoneInfo(mapping.timezone)
                except (ZoneInfoNotFoundError, ValueError):
                    raise ValueError(f"unknown timezone {mapping.timezone!r}") from None
        return self

    @field_validator("mllp_allowed_peers")
    @classmethod
    def _peer_networks(cls, peers: tuple[str, ...]) -> tuple[str, ...]:
        """Each entry as a network (an address is a /32 or /128), refused if it is none."""
        try:
            return tuple(str(ipaddress.ip_network(peer.strip(), strict=False)) for peer in peers)
        except ValueError as error:
            raise ValueError(f"not an IP address or network ({error})") from None

    @model_validator(mode="after")
    def _endpoints_consistent(self) -> CollectorSettings:
        if self.mllp_port is not None and self.followups.hl7 is None:
            raise ValueError(
                f"{setting_name('mllp_port')} receives HL7 results: "
                "configure [collector.followups.hl7]"
            )
        for first, second, what in (
            ("metrics_tls_cert_file", "metrics_tls_key_file", "TLS needs a certificate and a key"),
            (
                "metrics_basic_auth_user",
                "metrics_basic_auth_password_file",
                "basic auth needs a user and a password",
            ),
        ):
            if (not getattr(self, first)) != (not getattr(self, second)):
                raise ValueError(
                    f"metrics {what} file: set both {setting_name(first)} and "
                    f"{setting_name(second)}"
                )
        if (self.mllp_tls_cert_file is None) != (self.mllp_tls_key_file is None):
            raise ValueError(
                f"MLLP TLS needs both {setting_name('mllp_tls_cert_file')} and "
                f"{setting_name('mllp_tls_key_file')}"
            )
        return self

    @property
    def case_index_path(self) -> Path:
        return self.state_path or self.outbox_path.with_name(self.outbox_path.stem + "-cases.db")

    def pseudonym_key(self) -> PseudonymKey:
        """The pseudonym key (raises ``PseudonymKeyError`` naming the setting if unusable)."""
        try:
            return PseudonymKey.from_file(self.pseudonym_key_file)
        except PseudonymKeyError as error:
            raise PseudonymKeyError(f"{secret_setting('pseudonym_key_file')}: {error}") from None

    def metrics_endpoint(self) -> MetricsEndpoint:
        """Where /metrics is served: loopback unless configured, TLS and auth if set."""
        try:
            return MetricsEndpoint(
                host=self.metrics_host,
                port=self.metrics_port,
                tls_cert_file=self.metrics_tls_cert_file,
                tls_key_file=self.metrics_tls_key_file,
                basic_auth_user=self.metrics_basic_auth_user,
                basic_auth_password_file=self.metrics_basic_auth_password_file,
            )
        except MetricsEndpointError as error:
            raise CollectorConfigError(str(error)) from None

    def kafka_security(self) -> KafkaSecurity:
        """How the producer authenticates (the password stays in its file until connect)."""
        return KafkaSecurity.from_settings(self)

    def signing_key(self) -> SigningKey | None:
        """The key every record is signed with (raises ``SigningKeyError`` if unusable)."""
        if self.signing_key_file is None:
            return None
        try:
            return SigningKey.from_file(self.signing_key_file)
        except SigningKeyError as error:
            raise SigningKeyError(f"{secret_setting('signing_key_file')}: {error}") from None


def load_settings(
    config: Path | None = None, environ: Mapping[str, str] | None = None
) -> CollectorSettings:
    """Settings from ``config`` (optional TOML) overlaid by the environment."""
    env = os.environ if environ is None else environ
    renamed = renamed_variable_problem(env)
    if renamed is not None:
        raise CollectorConfigError(renamed)
    values: dict[str, Any] = {}
    if config is not None:
        try:
            document = tomllib.loads(config.read_text())
        except OSError as error:
            raise CollectorConfigError(f"{config}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise CollectorConfigError(f"{config}: not valid TOML ({error})") from None
        table = document.get("collector", document)
        if not isinstance(table, dict):
            raise CollectorConfigError(f"{config}: [collector] must be a table")
        values.update(table)
    env = take_deprecated_names(values, env)
    if config is not None:
        _resolve_paths(values, config.parent)
    apply_environment(values, env)
    missing = [
        f"{name} ({variable} or [collector] {name} in --config)"
        for name, variable in (("site_id", SITE_ID_ENV), ("pseudonym_key_file", PSEUDONYM_KEY_ENV))
        if name not in values
    ]
    if missing:
        raise CollectorConfigError("missing " + "; ".join(missing))
    try:
        return CollectorSettings(**values)
    except ValidationError as error:
        problems = "; ".join(_problem(e["loc"], e["msg"], e["type"], env) for e in error.errors())
        raise CollectorConfigError(f"invalid collector settings: {problems}") from None


def _problem(
    location: tuple[int | str, ...], message: str, kind: str, env: Mapping[str, str]
) -> str:
    """One validation problem, naming the variable when the environment set the value (or
    could set a missing one).

    Pydantic's messages describe the constraint, not the value; only a peer address that is
    none is quoted, and a peer is no secret. A secret file's path is validated only when
    read (:func:`~postmarket.secrets.read_secret_file`), which never shows a secret."""
    where = ".".join(map(str, location))
    variable = variable_at(location)
    if variable is not None and (env.get(variable, "").strip() or kind == "missing"):
        where = f"{where} ({variable})"
    return f"{where}: {message}" if where else message


def _resolve_paths(values: dict[str, Any], base: Path) -> None:
    """Paths in the file are relative to the file, like most tools do."""
    for name in (
        "pseudonym_key_file",
        "signing_key_file",
        "kafka_password_file",
        "kafka_ca_file",
        "outbox_path",
        "state_path",
        "stack_home",
        "metrics_targets_dir",
        "metrics_tls_cert_file",
        "metrics_tls_key_file",
        "metrics_basic_auth_password_file",
        "mllp_tls_cert_file",
        "mllp_tls_key_file",
    ):
        if isinstance(values.get(name), str):
            values[name] = base / Path(values[name]).expanduser()
    inbox = values.get("inbox")
    if isinstance(inbox, dict):
        for name in ("path", "processed", "rejected"):
            if isinstance(inbox.get(name), str):
                inbox[name] = base / Path(inbox[name]).expanduser()
    stow_rs = values.get("stow_rs")
    if isinstance(stow_rs, dict):
        for name in ("token_file", "tls_cert_file", "tls_key_file"):
            if isinstance(stow_rs.get(name), str):
                stow_rs[name] = base / Path(stow_rs[name]).expanduser()
