"""``postmarket collector``: what hospital IT runs and reviews.

``check [FILE...]`` is the preflight: the configuration as ``run`` loads it (every secret
file read, every folder checked), and each input as the inbox reads it, printing exactly
the JSON that would leave the hospital, so it can be reviewed before anything is connected.
A problem is one line naming the setting or file and the reason, with exit 3 for the
configuration and 2 for a refused input; never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collectors.events import AIOutput
    from collectors.pseudonym import PseudonymKey
    from collectors.settings import AiSrMapping, CollectorSettings

collector_app = typer.Typer(
    help="The hospital-side collector: de-identify, pseudonymise, deliver without loss.",
    no_args_is_help=True,
)

EXIT_REJECTED = 2
EXIT_CONFIG = 3
EXIT_KAFKA = 4

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="collector.toml (optional: every setting but the mapping tables may come from "
        "its POSTMARKET_... variable, which overrides the file; docs/hospital-it.md)",
    ),
]


@collector_app.command("check")
def check(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="inputs to preview, of any kind the inbox takes: DICOM images (only the "
            "header is read), AI outputs (JSON, DICOM SR), follow-ups (CSV, HL7, FHIR)",
            show_default=False,
        ),
    ] = None,
    ai_output: Annotated[
        Path | None,
        typer.Option(
            "--ai-output",
            help="the AI device's result for the one DICOM image given: print the complete "
            "prediction event",
        ),
    ] = None,
    config: ConfigOption = None,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka", help="also connect and authenticate to Kafka as `run` will (sends nothing)"
        ),
    ] = False,
    kafka_timeout: Annotated[
        float, typer.Option("--kafka-timeout", help="seconds to wait for the broker", min=0.1)
    ] = 10.0,
) -> None:
    """Preflight: check the configuration as `run` loads it, and preview each input.

    Every secret file is read (and refused, as `run` refuses it) and every folder `run`
    writes is checked; nothing is written, and nothing connected without --kafka. Each
    FILE is read as the inbox reads it, with the same size limits and mappings: stderr
    gets one line per file (a summary, or why it would be refused), stdout the JSON that
    would leave the hospital.
    Exit 3: the configuration is invalid; 4: Kafka (with --kafka) refused or did not
    answer; 2: an input (or a row of one) would be refused.
    """
    from collectors.batching import contract_topics, describe_contract
    from collectors.preflight import kafka_problem, load_secrets, location_problems
    from collectors.pseudonym import PseudonymKeyError
    from collectors.settings import CollectorConfigError, load_settings
    from postmarket.authenticity import SigningKeyError

    try:
        settings = load_settings(config)
        secrets = load_secrets(settings)
    except (CollectorConfigError, PseudonymKeyError, SigningKeyError, OSError) as error:
        typer.echo(f"collector configuration: {_describe(error)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    problems = location_problems(settings)
    for problem in problems:
        typer.echo(f"collector configuration: {problem}", err=True)
    if problems:
        raise typer.Exit(EXIT_CONFIG)
    signing = (
        f"events signed with key {secrets.signer.key_id}"
        if secrets.signer is not None
        else "no signing_key_file: events would leave unsigned and workers that require "
        "authenticity dead-letter them"
    )
    sends = describe_contract(settings.input_contract)
    typer.echo(f"configuration ok: site {settings.site_id}; {signing}; sends {sends}", err=True)
    if kafka:
        unreachable = kafka_problem(settings, kafka_timeout)
        if unreachable is not None:
            typer.echo(unreachable, err=True)
            raise typer.Exit(EXIT_KAFKA)
        visible = ", ".join(contract_topics(settings.input_contract))
        typer.echo(
            f"Kafka {settings.kafka_bootstrap}: connected, input topics visible ({visible})",
            err=True,
        )
    if ai_output is not None:
        code = _check_prediction(files or [], ai_output, settings, secrets.pseudonym_key)
    else:
        code = max(
            (_check_input(f, settings, secrets.pseudonym_key) for f in files or []), default=0
        )
    if code:
        raise typer.Exit(code)


def _check_input(path: Path, settings: CollectorSettings, key: PseudonymKey) -> int:
    """Preview one input as the inbox would take it; the exit code it calls for."""
    from collectors.dicom_input import RejectedFile
    from collectors.followups import followup_event
    from collectors.preflight import inbox_limits, preview_input
    from collectors.pseudonym import case_pseudonym
    from collectors.watched_folder import read_input
    from postmarket.contracts import encode

    try:
        decoded = read_input(path, inbox_limits(settings), settings.followups, settings.ai_sr)
        preview = preview_input(decoded, key)
    except RejectedFile as rejected:
        typer.echo(f"refused {rejected}", err=True)
        return EXIT_REJECTED
    typer.echo(f"ok {preview.summary}", err=True)
    if preview.case is not None:
        typer.echo(preview.case.as_json())
        if preview.case.burned_in_annotation:
            typer.echo(f"note: {path} has burned-in annotation; pixels are never sent", err=True)
    for record in decoded.followups.records if decoded.followups is not None else []:
        if record.identifier_kind == "study_instance_uid":
            pseudonym = case_pseudonym(key, record.identifier)
            event = followup_event(record, pseudonym, settings.site_id, key)
            typer.echo(encode(event).decode())
    for row in preview.refused_rows:
        typer.echo(f"refused {row}", err=True)
    return EXIT_REJECTED if preview.refused_rows else 0


def _check_prediction(
    files: list[Path], ai_output: Path, settings: CollectorSettings, key: PseudonymKey
) -> int:
    """Print the prediction event one image and its AI result give; the exit code."""
    from collectors.deidentify import Deidentifier
    from collectors.dicom_input import RejectedFile, read_header
    from collectors.events import dicom_case, prediction_event
    from collectors.sr_ai_output import is_structured_report
    from postmarket.contracts import encode

    if len(files) != 1:
        typer.echo("--ai-output needs exactly one FILE: the DICOM image of its study", err=True)
        return EXIT_REJECTED
    file = files[0]
    try:
        header = read_header(file)
        if is_structured_report(header):
            raise RejectedFile(
                file, "bad_ai_output", "is a DICOM SR (an AI result): pass it as --ai-output"
            )
        output = _ai_output(ai_output, settings.ai_sr)
        study_uid = str(header.get("StudyInstanceUID", "") or "").strip()
        if study_uid and output.study_instance_uid != study_uid:
            raise RejectedFile(ai_output, "bad_ai_output", f"is for another study than {file}")
        case = dicom_case(file, header, Deidentifier(key))
    except RejectedFile as rejected:
        typer.echo(f"refused {rejected}", err=True)
        return EXIT_REJECTED
    if case.burned_in_annotation:
        typer.echo(f"note: {file} has burned-in annotation; pixels are never sent", err=True)
    typer.echo(encode(prediction_event(case, output, settings.site_id, key)).decode())
    return 0


def _ai_output(path: Path, mapping: AiSrMapping | None) -> AIOutput:
    """An AI result from its JSON file, or from a DICOM SR through ``[collector.ai_sr]``."""
    from collectors.dicom_input import RejectedFile, read_header
    from collectors.events import read_ai_output
    from collectors.sr_ai_output import ai_output_from_sr, is_structured_report

    if path.suffix.lower() == ".json":
        return read_ai_output(path)
    header = read_header(path)
    if not is_structured_report(header):
        raise RejectedFile(path, "bad_ai_output", "is neither AI output JSON nor a DICOM SR")
    if mapping is None:
        raise RejectedFile(path, "bad_ai_output", "a DICOM SR, and [collector.ai_sr] is not set")
    return ai_output_from_sr(path, header, mapping)


@collector_app.command("status")
def status(config: ConfigOption = None) -> None:
    """What waits in the outbox, what waits for its study, the last delivery and error, and
    what the collector sends (its input contract).

    Read from the collector's files, read-only: works whether it is running or not.
    """
    from datetime import UTC, datetime

    from collectors.batching import describe_contract
    from collectors.settings import CollectorConfigError, load_settings
    from collectors.status import StatusError, read_status, status_lines

    try:
        settings = load_settings(config)
        found = read_status(settings.outbox_path, settings.case_index_path)
    except (CollectorConfigError, StatusError, OSError) as error:
        typer.echo(f"collector status: {_describe(error)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for line in status_lines(found, datetime.now(UTC), settings.outbox_max_bytes):
        typer.echo(line)
    typer.echo(f"sends {describe_contract(settings.input_contract)}")


@collector_app.command("run")
def run(
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the collector until SIGTERM or Ctrl-C: inbox, C-STORE SCP, outbox, Kafka, /metrics.

    Files dropped in the inbox (DICOM, AI outputs, follow-ups) are read once and moved out;
    events wait in the outbox until Kafka acknowledges them, across restarts.
    """
    import logging
    import signal
    import threading

    from collectors.pseudonym import PseudonymKeyError
    from collectors.service import Collector
    from collectors.settings import CollectorConfigError, load_settings
    from postmarket.authenticity import SigningKeyError

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        settings = load_settings(config)
        collector = Collector(settings)
    except (CollectorConfigError, PseudonymKeyError, SigningKeyError, OSError) as error:
        typer.echo(f"collector configuration: {_describe(error)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logging.getLogger("collectors").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        collector.run(stop)
    except OSError as error:  # the metrics or DICOM port is taken, the inbox unwritable...
        typer.echo(f"collector: {_describe(error)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError):
        return f"{error.filename or ''}: {error.strerror or error}".lstrip(": ")
    return str(error)


@collector_app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="where to write the private key (0600)")],
    site: Annotated[
        str, typer.Option("--site", help="this site's id, for the registration command printed")
    ] = "SITE",
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing key file")] = False,
) -> None:
    """Create this site's Ed25519 event-signing key; print its public half for registration.

    The private key stays in OUT (mode 0600); set ``signing_key_file`` (or
    POSTMARKET_SIGNING_KEY_FILE, its path) to it. Send the printed public key to the
    manufacturer, who registers it with ``postmarket site-keys register``.
    """
    from postmarket.authenticity import SigningKey

    if out.exists() and not force:
        typer.echo(f"{out} exists; keep it, or pass --force to replace it", err=True)
        raise typer.Exit(EXIT_CONFIG)
    key = SigningKey.generate()
    key.write(out)
    typer.echo(f"private key written to {out} (mode 600); it never leaves this machine")
    typer.echo(f"key id:     {key.key_id}")
    typer.echo(f"public key: {key.public_key_base64}")
    typer.echo(
        "register:   postmarket site-keys register "
        f"--site {site} --public-key {key.public_key_base64}"
    )
