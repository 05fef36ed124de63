"""``postmarket stack up|status|down``: the local stack from the command line.

Mounted by ``launcher/cli.py`` as ``postmarket stack``. Failures print one ``error:``
line (plus the log excerpt that explains it) and exit non-zero, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.status import Status
from rich.table import Table

from launcher.stack import health, manager
from launcher.stack.processes import StackError
from launcher.stack.security import SiteQuota
from postmarket.config import Settings
from postmarket.kafka_security import KafkaSecurityError
from postmarket.secrets import SecretFileError
from postmarket.topic_admin import TopicAdminError

stack_app = typer.Typer(
    name="stack",
    help=(
        "Run the local stack on 127.0.0.1: Apache Kafka (KRaft), Prometheus and, on request, "
        "PostgreSQL. State and logs live in POSTMARKET_HOME (default ./.postmarket)."
    ),
    no_args_is_help=True,
    add_completion=False,
)

console = Console()
error_console = Console(stderr=True)
T = TypeVar("T")
_DEFAULT_QUOTA = SiteQuota()
ByteRateOption = Annotated[
    int,
    typer.Option(
        "--site-byte-rate",
        min=1024,
        help="Quota: bytes/s each site principal may produce.",
    ),
]
RequestShareOption = Annotated[
    float,
    typer.Option(
        "--site-request-percentage",
        min=1.0,
        help="Quota: share of one broker request thread (percent) each site may use.",
    ),
]


class RichProgress:
    """Shows each service's current step on one spinner line, and a tick when it is done."""

    def __init__(self, status: Status) -> None:
        self._status = status

    def begin(self, service: str, action: str) -> None:
        """Replace the spinner text with the step now in progress."""
        self._status.update(f"[bold]{service}[/]: {action}")

    def done(self, service: str, summary: str) -> None:
        """Print a finished line above the spinner."""
        console.print(f"[green]✓[/] [bold]{service}[/]: {summary}")


@contextmanager
def _spinner(message: str) -> Iterator[RichProgress]:
    with console.status(message) as status:
        yield RichProgress(status)


def _run(action: Callable[[], T]) -> T:
    """Run ``action``; turn an expected failure into one error line and exit code 1."""
    try:
        return action()
    except (
        StackError,
        TopicAdminError,
        ValidationError,
        OSError,
        KafkaSecurityError,
        SecretFileError,
    ) as error:
        headline, _, details = str(error).partition("\n")
        error_console.print(f"[red]error:[/] {headline}", highlight=False, soft_wrap=True)
        if details:
            error_console.print(details, style="dim", highlight=False, markup=False)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        error_console.print("[red]interrupted[/]")
        raise typer.Exit(code=130) from None


@stack_app.command()
def up(
    postgres: Annotated[
        bool,
        typer.Option("--postgres", help="Also start PostgreSQL and use it as the evidence store."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds to wait for each service to become ready.", min=1),
    ] = manager.DEFAULT_TIMEOUT,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Run Kafka with TLS, SCRAM principals, ACLs and per-site quotas "
            "(credentials in <home>/secure).",
        ),
    ] = False,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site", help="With --secure: create a write-only principal for this site id."
        ),
    ] = None,
    site_byte_rate: ByteRateOption = _DEFAULT_QUOTA.producer_byte_rate,
    site_request_percentage: RequestShareOption = _DEFAULT_QUOTA.request_percentage,
) -> None:
    """Start Kafka and Prometheus (and PostgreSQL with --postgres); create the topics.

    Safe to repeat: services already running are reported, not started twice.

    The chosen addresses go to <home>/stack.json, where every postmarket command finds them.
    """
    if site and not secure:
        error_console.print("[red]error:[/] --site needs --secure")
        raise typer.Exit(code=2)

    def start() -> manager.UpResult:
        settings = Settings()
        with _spinner("starting the local stack") as progress:
            return manager.up(
                settings,
                with_postgres=postgres,
                progress=progress,
                timeout=timeout,
                secure=secure,
                sites=site or (),
                quota=SiteQuota(site_byte_rate, site_request_percentage),
            )

    result = _run(start)
    table = Table(title=f"local stack in {result.settings.home}", show_header=False)
    table.add_row("kafka_bootstrap", result.settings.kafka_bootstrap)
    table.add_row("prometheus_url", result.settings.prometheus_url)
    table.add_row("evidence_url", result.settings.evidence_database_url)
    table.add_row("kafka", f"{result.kafka_version} (cluster {result.cluster_id})")
    if result.secure:
        table.add_row("kafka security", "SASL_SSL (SCRAM-SHA-512), ACLs, site quotas")
        table.add_row("kafka CA", str(result.settings.kafka_ca_file))
        table.add_row("principals", ", ".join(result.principals))
    console.print(table)


@stack_app.command("add-site")
def add_site(
    site_id: Annotated[str, typer.Argument(help="The site id its collector sends as.")],
    site_byte_rate: ByteRateOption = _DEFAULT_QUOTA.producer_byte_rate,
    site_request_percentage: RequestShareOption = _DEFAULT_QUOTA.request_percentage,
) -> None:
    """Create a write-only Kafka principal for one more site on the running secure stack.

    Prints the principal and its password file (0600); give both to that site's collector
    (POSTMARKET_KAFKA_USERNAME, POSTMARKET_KAFKA_PASSWORD_FILE) with the CA file.
    """
    quota = SiteQuota(site_byte_rate, site_request_percentage)
    principal, password_file = _run(lambda: manager.add_site(Settings(), site_id, quota))
    console.print(f"[green]✓[/] principal [bold]{principal}[/]: write-only on the input topics")
    console.print(f"password file: {password_file}", highlight=False)


@stack_app.command("remove-site")
def remove_site(
    site_id: Annotated[str, typer.Argument(help="The site whose principal is removed.")],
) -> None:
    """Remove one site's Kafka principal from the running secure stack: its ACLs, quota,
    SCRAM credential and password file.

    Its collector is refused at once, even on a connection already open. To stop counting
    records it already sent, revoke its signing keys too (`postmarket site-keys revoke`).
    """
    principal = _run(lambda: manager.remove_site(Settings(), site_id))
    console.print(f"[green]✓[/] principal [bold]{principal}[/] removed: no ACL, no quota, no login")


@stack_app.command()
def status() -> None:
    """Show each service, Kafka's version and cluster id, and Prometheus' scrape targets.

    Exits with code 1 if any expected service is not running or not answering.
    """
    report = _run(lambda: health.status(Settings()))
    services = Table(title=f"local stack in {report.home}")
    for column in ("service", "state", "pid", "address"):
        services.add_column(column, no_wrap=True)
    services.add_column("detail", overflow="fold")
    for service in report.services:
        if service.running and service.ready:
            state = "[green]running[/]"
        elif service.running:
            state = "[yellow]not ready[/]"
        else:
            state = "[red]stopped[/]"
        pid = str(service.pid) if service.pid is not None else "-"
        services.add_row(service.name, state, pid, service.address or "-", service.detail)
    console.print(services)
    if report.cluster_id:
        console.print(f"Kafka {report.kafka_version}, cluster id {report.cluster_id}")
    if report.secure:
        sites = ", ".join(report.sites) or "none yet (stack add-site SITE)"
        console.print(f"security: SASL_SSL, ACLs, site quotas; sites: {sites}")
    if report.targets:
        targets = Table(title="Prometheus scrape targets")
        for column in ("job", "url", "health"):
            targets.add_column(column)
        for target in report.targets:
            colour = {"up": "green", "down": "red"}.get(target.health, "yellow")
            targets.add_row(target.job, target.url, f"[{colour}]{target.health}[/]")
        console.print(targets)
    if not report.healthy:
        raise typer.Exit(code=1)


@stack_app.command()
def down() -> None:
    """Stop every service `stack up` started (Kafka gets time for a clean shutdown).

    Only processes recorded in <home>/stack.json and running from that home are stopped.
    """

    def stop() -> manager.DownResult:
        settings = Settings()
        with _spinner("stopping the local stack") as progress:
            return manager.down(settings, progress=progress)

    result = _run(stop)
    if not result.stopped:
        console.print("nothing was running")
