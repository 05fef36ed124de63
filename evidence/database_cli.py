"""``postmarket evidence``: the evidence database itself: migrations, the Kafka sink that
fills it, read-only access for regulators, and what it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evidence.cli_common import UrlOption, fail, open_store, store_url

if TYPE_CHECKING:
    from evidence.sink import SinkCounts
    from evidence.store import EvidenceStore

evidence_app = typer.Typer(
    help="The evidence database: migrations and read-only access for regulators.",
    no_args_is_help=True,
)


@evidence_app.command("upgrade")
def upgrade_database(url: UrlOption = None) -> None:
    """Create or migrate the evidence database to the newest schema."""
    with open_store(url) as store:
        from evidence.migrate import current_revision

        typer.echo(f"evidence store at revision {current_revision(store.engine)}")


@evidence_app.command("sink")
def sink(
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
    ] = None,
    group: Annotated[str, typer.Option(help="Kafka consumer group")] = "postmarket-evidence-sink",
    until_idle: Annotated[
        float | None,
        typer.Option(
            "--until-idle",
            metavar="SECONDS",
            help="stop once no record arrived for SECONDS (tests, demos); default: run on",
        ),
    ] = None,
    max_records: Annotated[int, typer.Option(help="records per poll and transaction")] = 500,
    url: UrlOption = None,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics/--no-metrics",
            help="serve /metrics (alerts by lifecycle status) at POSTMARKET_EVIDENCE_METRICS_HOST"
            ":POSTMARKET_EVIDENCE_METRICS_PORT",
        ),
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="/metrics port \\[default: POSTMARKET_EVIDENCE_METRICS_PORT]"
        ),
    ] = None,
    alerts_refresh: Annotated[
        float, typer.Option(min=1.0, metavar="SECONDS", help="how often alert counts are re-read")
    ] = 15.0,
    review_every: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="how often (after new records) to refresh weekly performance snapshots and "
            "compare each site with its fleet",
        ),
    ] = 60.0,
) -> None:
    """Write outcomes, predictions and alerts from Kafka into the evidence store.

    Long-running; SIGTERM or Ctrl-C stops it after the current batch. Offsets are
    committed only after the batch is in the database, and writes skip events already
    stored, so a crash or redelivery never loses or duplicates evidence. After new records
    it also reviews the store every --review-every seconds: weekly performance snapshots,
    and each site against its fleet (site-vs-fleet alerts). Its /metrics
    (loopback by default; TLS and basic auth as for the workers) counts the store's
    alerts by stream, detector, severity and lifecycle status.
    """
    import logging

    from kafka.errors import KafkaError

    from evidence.sink import EvidenceSink
    from postmarket.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    with open_store(url) as store:
        running = EvidenceSink(
            store,
            target,
            group=group,
            max_records=max_records,
            security=settings.kafka_security(),
            review_every_s=review_every,
        )
        running.install_signal_handlers()
        typer.echo(f"evidence sink: group {group} at {target}", err=True)
        exporter = (
            _serve_alert_metrics(store, metrics_port, alerts_refresh, running.counts)
            if metrics
            else None
        )
        try:
            counts = running.run(until_idle_s=until_idle)
        except KafkaError as error:
            raise fail(
                f"cannot consume from Kafka at {target}: {error}. Start the local stack "
                "(postmarket stack up) or give --bootstrap / POSTMARKET_KAFKA_BOOTSTRAP"
            ) from None
        finally:
            if exporter is not None:
                exporter()
    typer.echo(
        f"stored {counts.outcomes_new} outcomes, {counts.predictions_new} predictions, "
        f"{counts.alerts_new} alerts from {counts.records} records "
        f"({counts.duplicates} already stored, {counts.invalid} invalid); "
        f"{counts.snapshots} performance snapshots, {counts.fleet_alerts} site-vs-fleet alerts"
    )


def _serve_alert_metrics(
    store: EvidenceStore, port: int | None, refresh_s: float, counts: SinkCounts
) -> Callable[[], None]:
    """Serve the store's alert counts on /metrics; return what stops it.

    A sink started beside a local stack announces itself to the stack's Prometheus.
    """
    from prometheus_client import CollectorRegistry

    from evidence.metrics import EvidenceMetrics, PeriodicRefresh
    from postmarket.config import STACK_STATE_FILE, Settings
    from postmarket.metrics_endpoint import MetricsEndpointError, serve_metrics

    settings = Settings()
    registry = CollectorRegistry()
    refresh = PeriodicRefresh(EvidenceMetrics(registry, counts), store, refresh_s)
    try:
        endpoint = settings.metrics_endpoint(
            settings.evidence_metrics_host,
            settings.evidence_metrics_port if port is None else port,
        )
        server = serve_metrics(registry, endpoint)
    except (MetricsEndpointError, OSError) as error:
        raise fail(f"cannot serve /metrics: {error}") from None
    refresh.start()
    typer.echo(f"evidence sink metrics on {server.url}", err=True)
    if (settings.home / STACK_STATE_FILE).is_file():
        from postmarket.scrape_targets import (
            EVIDENCE_JOB,
            announce_scrape_target,
            local_stack_targets_dir,
        )

        targets = local_stack_targets_dir(settings.home, EVIDENCE_JOB)
        announce_scrape_target(targets, server.address)

    def stop() -> None:
        refresh.stop()
        server.close()

    return stop


@evidence_app.command("regulator-role")
def regulator_role(
    login: Annotated[
        str | None, typer.Option(help="also create this login role as a member")
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="file holding the login's password (never an argument)")
    ] = None,
    url: UrlOption = None,
) -> None:
    """Create the read-only PostgreSQL role postmarket_regulator (SELECT only) and grant it
    every evidence table; optionally a regulator's login in it."""
    from evidence.regulator import REGULATOR_ROLE, grant_regulator_read_access
    from postmarket.secrets import SecretFileError, read_secret_file

    try:
        secret = read_secret_file(password_file, "regulator password") if password_file else None
    except SecretFileError as error:
        raise fail(str(error)) from None
    password = secret.decode() if secret is not None else None
    _refuse_unless_postgresql(url)  # before opening: a SQLite store would be created first
    with open_store(url) as store:
        try:
            grant_regulator_read_access(store.engine, login=login, password=password)
        except ValueError as error:
            raise fail(str(error)) from None
    member = f"; login {login} is a member" if login else ""
    typer.echo(f"{REGULATOR_ROLE} may read the evidence store and change nothing{member}")


def _refuse_unless_postgresql(url: str | None) -> None:
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from postmarket.config import Settings

    target = store_url(url if url is not None else Settings().evidence_database_url)
    try:
        backend = make_url(target).get_backend_name()
    except ArgumentError:
        return  # open_store says what is wrong with it
    if backend != "postgresql":
        raise fail(
            f"read-only roles need PostgreSQL; {backend} has no roles (share a copy of the "
            "SQLite file or the report instead)"
        )


@evidence_app.command("contents")
def contents(url: UrlOption = None) -> None:
    """List the devices, versions and periods the store holds: what to ask `report` for.

    Read-only. Per device: each version's registration and, per task, its sites, outcomes
    and the first and last day of their predictions (UTC), with the report command that
    covers them.
    """
    from evidence.store_contents import contents_lines, store_contents

    with open_store(url, read_only=True) as store:
        holdings = store_contents(store)
    for line in contents_lines(holdings):
        typer.echo(line)
