"""What ``postmarket collector check`` verifies before anything runs, with ``run``'s own code.

:func:`load_secrets` is what :class:`~collectors.service.Collector` calls at start, so a
configuration ``check`` passes is one ``run`` accepts; inputs are decoded with the inbox's
own :func:`~collectors.watched_folder.read_input` and limits. Nothing here writes: no
outbox, no folder, no port. Every problem is one line naming the setting and the reason.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from collectors.batching import contract_topics
from collectors.deidentify import Deidentifier
from collectors.events import DicomCase, dicom_case
from collectors.mllp_listener import MllpEndpoint, MllpListenerError
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.settings import CollectorConfigError, CollectorSettings, InboxSettings
from collectors.settings_environment import secret_setting, setting_name
from collectors.watched_folder import InboxInput
from postmarket import topics
from postmarket.authenticity import SigningKey
from postmarket.metrics_endpoint import MetricsEndpointError, tls_context
from postmarket.secrets import SecretFileError, read_secret_file

KAFKA_CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CollectorSecrets:
    """Every secret the collector uses, read and checked at start."""

    pseudonym_key: PseudonymKey
    signer: SigningKey | None


def load_secrets(settings: CollectorSettings) -> CollectorSecrets:
    """Read every secret file now: a bad one refuses the start, not the first delivery.

    Raises ``PseudonymKeyError``, ``SigningKeyError`` or :class:`CollectorConfigError`, each
    naming the setting (and its variable) at fault, never a secret.
    """
    key = settings.pseudonym_key()
    try:
        settings.kafka_security().kafka_python_kwargs()  # reads the password file
    except SecretFileError as error:
        raise CollectorConfigError(f"{secret_setting('kafka_password_file')}: {error}") from None
    except ValueError as error:
        raise CollectorConfigError(f"Kafka: {error}") from None
    _check_metrics_secrets(settings)
    _check_mllp_secrets(settings)
    _check_stow_rs_secrets(settings)
    return CollectorSecrets(key, settings.signing_key())


def _check_metrics_secrets(settings: CollectorSettings) -> None:
    """The /metrics password and TLS key, read as ``serve_metrics`` will read them."""
    endpoint = settings.metrics_endpoint()
    if endpoint.basic_auth_password_file is not None:
        _read_secret(endpoint.basic_auth_password_file, "metrics password", "basic_auth_password")
    if endpoint.tls_cert_file is not None and endpoint.tls_key_file is not None:
        _read_secret(endpoint.tls_key_file, "metrics TLS key", "tls_key")
        try:
            tls_context(endpoint.tls_cert_file, endpoint.tls_key_file)
        except (SecretFileError, MetricsEndpointError) as error:
            setting = setting_name("metrics_tls_cert_file")
            raise CollectorConfigError(f"{setting}: {error}") from None


def _read_secret(path: Path, what: str, metrics_setting: str) -> None:
    """Read a /metrics secret file as the server will, naming its setting and variable."""
    try:
        read_secret_file(path, what)
    except SecretFileError as error:
        setting = secret_setting(f"metrics_{metrics_setting}_file")
        raise CollectorConfigError(f"{setting}: {error}") from None


def _check_mllp_secrets(settings: CollectorSettings) -> None:
    """The MLLP listener's TLS key and certificate, loaded as the listener will load them."""
    if settings.mllp_port is None:
        return
    try:
        MllpEndpoint.from_settings(settings).tls_context()
    except MllpListenerError as error:
        raise CollectorConfigError(f"mllp: {error}") from None


def _check_stow_rs_secrets(settings: CollectorSettings) -> None:
    """The STOW-RS bearer token (a 0600, non-empty file) and TLS key, read by the server's
    own constructor, which opens nothing until started: ``run`` builds it the same way."""
    if settings.stow_rs is None or settings.inbox is None:
        return
    from collectors.stow_rs import StowRSServer  # aiohttp, only for a site that uses it

    try:
        StowRSServer(settings.stow_rs, settings.inbox.path)
    except (ValueError, OSError) as error:  # SecretFileError, StowRSConfigError
        raise CollectorConfigError(f"[collector.stow_rs]: {error}") from None


def location_problems(settings: CollectorSettings) -> list[str]:
    """Files and folders ``run`` creates or writes that it could not, each named by its
    setting and variable."""
    places = {
        "outbox_path": settings.outbox_path.parent,
        "state_path": settings.case_index_path.parent,
    }
    if settings.inbox is not None:
        places |= {
            "inbox.path": settings.inbox.path,
            "inbox.processed": settings.inbox.processed_dir,
            "inbox.rejected": settings.inbox.rejected_dir,
        }
    problems = (unwritable(folder, setting_name(setting)) for setting, folder in places.items())
    return [problem for problem in problems if problem is not None]


def unwritable(folder: Path, setting: str) -> str | None:
    """Why ``run`` could not create or write ``folder``, or None if it can."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{setting}: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        action = "write in" if existing == folder else f"create {folder} in"
        return f"{setting}: cannot {action} {existing} (permission denied)"
    return None


def kafka_problem(
    settings: CollectorSettings, timeout_s: float = KAFKA_CHECK_TIMEOUT_S
) -> str | None:
    """Why the collector could not connect, authenticate and see the topics its input
    contract writes; None if it can.

    Connects with the producer's own security settings; sends nothing.
    """
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    where = f"Kafka {settings.kafka_bootstrap}"
    try:
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="postmarket-collector-check",
            bootstrap_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **settings.kafka_security().kafka_python_kwargs(),
        )
    except KafkaError as error:
        return (
            f"{where}: no broker accepted a connection within {timeout_s:g} s "
            f"({type(error).__name__}); check kafka_bootstrap and the firewall, and with "
            "SASL_SSL kafka_username, its password file and kafka_ca_file"
        )
    try:
        for topic in contract_topics(settings.input_contract):
            producer.partitions_for(topic)
    except KafkaError as error:
        hint = (
            '; are the central workers upgraded? Until they are, set input_contract = "v1"'
            if topic == topics.INPUTS
            else ""
        )
        return f"{where}: connected, but cannot see topic {topic} ({type(error).__name__}){hint}"
    finally:
        producer.close(timeout=1)
    return None


def inbox_limits(settings: CollectorSettings) -> InboxSettings:
    """The size limits ``run`` applies; the defaults when no inbox is configured."""
    return settings.inbox or InboxSettings(path=Path("inbox"))


@dataclass(frozen=True)
class InputPreview:
    """What one decoded input would become: a summary line, and for an image its case."""

    summary: str
    case: DicomCase | None = None
    refused_rows: tuple[str, ...] = ()


def preview_input(decoded: InboxInput, key: PseudonymKey) -> InputPreview:
    """A short human summary of one decoded input (raises ``RejectedFile`` like intake)."""
    if decoded.header is not None:
        case = dicom_case(decoded.path, decoded.header, Deidentifier(key))
        return InputPreview(f"{decoded.path}: DICOM image, {_acquisition(case)}", case)
    if decoded.ai_output is not None:
        output = decoded.ai_output
        pseudonym = case_pseudonym(key, output.study_instance_uid)
        source = "DICOM SR" if decoded.kind == "dicom" else "JSON"
        return InputPreview(
            f"{decoded.path}: AI output ({source}) of {output.device_id} "
            f"{output.device_version}, task {output.task}: {output.decision} (score "
            f"{output.score:g}, threshold {output.operating_threshold:g}) for case "
            f"{pseudonym}; sent once the collector has its image"
        )
    parsed = decoded.followups
    records = parsed.records if parsed is not None else []
    labels = Counter(record.label for record in records)
    waiting = sum(record.identifier_kind == "accession_number" for record in records)
    counts = ", ".join(f"{count} {label}" for label, count in sorted(labels.items()))
    summary = f"{decoded.path}: {decoded.kind.upper()} follow-ups, {len(records)} results"
    summary += f" ({counts})" if counts else ""
    if waiting:
        summary += f"; {waiting} named by accession number wait for their image"
    refused = tuple(str(problem) for problem in (parsed.rejected if parsed else []))
    return InputPreview(summary, refused_rows=refused)


def _acquisition(case: DicomCase) -> str:
    features = case.acquisition
    parts = [features.modality, features.manufacturer, features.model]
    described = " ".join(part for part in parts if part) or "no acquisition details"
    if features.slice_thickness_mm is not None:
        described += f", slice {features.slice_thickness_mm:g} mm"
    return f"{described}; case {case.case_pseudonym}"
