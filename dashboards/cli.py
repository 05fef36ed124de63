"""``postmarket dashboards``: build the dashboard JSON, or publish it to a running Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from postmarket.preflight import CONNECT_TIMEOUT_S, ConnectTimeoutOption

dashboards_app = typer.Typer(
    help="Grafana dashboards as code: build the JSON, publish it to Grafana.",
    no_args_is_help=True,
)


@dashboards_app.command("build")
def build(
    output: Annotated[
        Path | None, typer.Option(help="directory for the JSON (default: dashboards/generated)")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; fail if the JSON is out of date")
    ] = False,
) -> None:
    """Render every dashboard to JSON (what Grafana's file provisioning loads), and the alert
    rules as the Kubernetes PrometheusRule (deploy/kubernetes/prometheus-rules.yaml)."""
    from dashboards import prometheus_rule
    from dashboards.build import GENERATED_DIR, stale_files, write_all

    directory = output or GENERATED_DIR
    if check:
        stale = stale_files(directory)
        if not prometheus_rule.is_current():
            stale.append(str(prometheus_rule.MANIFEST))
        if stale:
            typer.echo(
                f"out of date in {directory}: {', '.join(stale)}; run: postmarket dashboards build",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"{directory}: up to date")
        return
    for path in write_all(directory):
        typer.echo(path)
    typer.echo(prometheus_rule.write())


@dashboards_app.command("publish")
def publish(
    token_file: Annotated[
        Path,
        typer.Option(
            "--token-file",
            help="file, private to its owner (mode 600), holding a Grafana service-account "
            "token (never printed)",
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Grafana base URL, e.g. https://grafana:3000 (default: the grafana_url "
            "setting, POSTMARKET_GRAFANA_URL or postmarket.toml, else http://127.0.0.1:3000)",
            show_default=False,
        ),
    ] = None,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Upload every dashboard into the "Post-market surveillance" folder of a Grafana.

    Without --url, Grafana is at the grafana_url setting (POSTMARKET_GRAFANA_URL, or
    grafana_url in postmarket.toml), by default http://127.0.0.1:3000.
    Exit 1: a bad --url, grafana_url or token file; 5: Grafana not reachable; 6: it refused
    the token (HTTP 401/403); 8: it answered HTTP 5xx.
    """
    from dashboards.publish import GrafanaTarget, check_grafana, grafana_url, read_token
    from dashboards.publish import publish as publish_all
    from postmarket.preflight import ServiceProblem, exit_for

    try:
        target = GrafanaTarget(grafana_url(url), read_token(token_file), connect_timeout)
        check_grafana(target)
        published = publish_all(target)
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    for dashboard_url in published:
        typer.echo(dashboard_url)
