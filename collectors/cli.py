"""``postmarket collector``: what hospital IT runs and reviews.

``check FILE.dcm`` prints exactly the JSON that would leave the hospital for that file,
so it can be reviewed before anything is connected. Bad input is refused with one line
naming the file and the reason, and a non-zero exit; never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collectors.events import AIOutput
    from collectors.settings import AiSrMapping

collector_app = typer.Typer(
    help="The hospital-side collector: de-identify, pseudonymise, deliver without loss.",
    no_args_is_help=True,
)

EXIT_REJECTED = 2
EXIT_CONFIG = 3

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="collector.toml; POSTMARKET_SITE_ID and POSTMARKET_SITE_KEY (key file) override",
    ),
]


@collector_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="a DICOM file (only its header is read)")],
    ai_output: Annotated[
        Path | None,
        typer.Option(
            "--ai-output",
            help="the AI device's result for this study, JSON or a DICOM SR (read through "
            "[collector.ai_sr]): print the event",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the event JSON that would leave the hospital for FILE.

    With --ai-output, the complete prediction event (as sent to Kafka). Without it, the
    part the image contributes to that event: the case pseudonym and acquisition features.
    FILE itself must be the image: an AI result stored as a DICOM SR goes in --ai-output.
    """
    from collectors.deidentify import Deidentifier
    from collectors.dicom_input import RejectedFile, read_header
    from collectors.events import dicom_case, prediction_event
    from collectors.pseudonym import SiteKeyError
    from collectors.settings import CollectorConfigError, load_settings
    from collectors.sr_ai_output import is_structured_report
    from postmarket.authenticity import SigningKeyError
    from postmarket.contracts import encode

    try:
        settings = load_settings(config)
        key = settings.site_key()
    except (CollectorConfigError, SiteKeyError, SigningKeyError, OSError) as error:
        typer.echo(f"collector configuration: {_describe(error)}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        header = read_header(file)
        if is_structured_report(header):
            raise RejectedFile(
                file, "bad_ai_output", "is a DICOM SR (an AI result): pass it as --ai-output"
            )
        output = _ai_output(ai_output, settings.ai_sr) if ai_output is not None else None
        study_uid = str(header.get("StudyInstanceUID", "") or "").strip()
        if output is not None and study_uid and output.study_instance_uid != study_uid:
            raise RejectedFile(
                ai_output or "", "bad_ai_output", f"is for another study than {file}"
            )
        case = dicom_case(file, header, Deidentifier(key))
    except RejectedFile as rejected:
        typer.echo(f"rejected {rejected}", err=True)
        raise typer.Exit(EXIT_REJECTED) from None
    if case.burned_in_annotation:
        typer.echo(f"note: {file} has burned-in annotation; pixels are never sent", err=True)
    if output is None:
        typer.echo(case.as_json())
    else:
        typer.echo(encode(prediction_event(case, output, settings.site_id, key)).decode())


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


@collector_app.command("run")
def run(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            help="collector.toml; POSTMARKET_SITE_ID and POSTMARKET_SITE_KEY (key file) override",
        ),
    ],
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the collector until SIGTERM or Ctrl-C: inbox, C-STORE SCP, outbox, Kafka, /metrics.

    Files dropped in the inbox (DICOM, AI outputs, follow-ups) are read once and moved out;
    events wait in the outbox until Kafka acknowledges them, across restarts.
    """
    import logging
    import signal
    import threading

    from collectors.pseudonym import SiteKeyError
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
    except (CollectorConfigError, SiteKeyError, SigningKeyError, OSError) as error:
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
    POSTMARKET_SIGNING_KEY) to it. Send the printed public key to the manufacturer, who
    registers it with ``postmarket site-keys register``.
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
