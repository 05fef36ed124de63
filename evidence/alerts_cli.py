"""``postmarket alerts``: alerts and their lifecycle, open -> acknowledged -> resolved, the
re-baselining of an investigated drift, and the review decision that resolving a
claim-based alert publishes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Annotated

import typer

from evidence.cli_common import UrlOption, actor_or_login, fail, open_store, parse_day

if TYPE_CHECKING:
    from evidence.store import AlertView
    from postmarket.contracts.events import Alert, Rebaseline

alerts_app = typer.Typer(
    help="Alerts and their lifecycle: open -> acknowledged -> resolved.", no_args_is_help=True
)


ALERT_COLUMNS = (
    "ID", "STATUS", "SEVERITY", "DETECTOR", "DEVICE", "VERSION", "SITE", "TASK",
    "RAISED (UTC)", "RECURRED",
)  # fmt: skip
ALERT_ID_HELP = "the alert's id: its UUID, or its first 8 hex characters as `alerts list` shows"
BootstrapOption = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
]


def _alert_cells(view: AlertView) -> tuple[str, ...]:
    """One ``alerts list`` row, in :data:`ALERT_COLUMNS` order, with the short id."""
    from evidence.store import short_alert_id

    alert, stream = view.alert, view.alert.stream
    return (
        short_alert_id(alert.alert_id),
        view.status.value,
        alert.severity,
        alert.detector,
        stream.device_id,
        stream.device_version,
        stream.site_id,
        stream.task,
        f"{alert.raised_at:%Y-%m-%d %H:%M}",
        _recurred(view) or "-",
    )


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell, two spaces apart.

    >>> _table(("ID", "STATUS"), [("7b0c9a52", "open")])
    ['ID        STATUS', '7b0c9a52  open']
    """
    widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _alert_json(view: AlertView) -> dict[str, object]:
    """An alert as ``alerts list --json`` gives it: as raised (full id) plus its lifecycle."""
    return {
        **view.alert.model_dump(mode="json"),
        "status": view.status.value,
        "acknowledged_by": view.acknowledged_by,
        "acknowledged_at": _iso(view.acknowledged_at),
        "acknowledgement": view.acknowledgement,
        "resolved_by": view.resolved_by,
        "resolved_at": _iso(view.resolved_at),
        "resolution": view.resolution,
        "recurrences": view.recurrences,
        "last_recurred_at": _iso(view.last_recurred_at),
        "highest_severity": view.highest_severity,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _recurred(view: AlertView) -> str:
    """How often the alert recurred, when last, and how severe at most; empty if never."""
    if view.last_recurred_at is None:
        return ""
    return (
        f"recurred {view.recurrences}x, last {view.last_recurred_at:%Y-%m-%d %H:%M}, "
        f"up to {view.highest_severity}"
    )


def _recurrence_line(recurrence: Alert) -> str:
    return (
        f"  {recurrence.raised_at.isoformat()}  {recurrence.severity:<8} "
        f"statistic {recurrence.statistic:g}, threshold {recurrence.threshold:g}, cases "
        f"{recurrence.first_case_time.isoformat()} .. {recurrence.last_case_time.isoformat()}"
        f"  ({recurrence.alert_id})"
    )


@alerts_app.command("list")
def list_alerts(
    status: Annotated[
        str | None, typer.Option(help="only alerts with this status: open, acknowledged, resolved")
    ] = None,
    device: Annotated[str | None, typer.Option(help="only alerts of this device")] = None,
    site: Annotated[str | None, typer.Option(help="only alerts of this site")] = None,
    since: Annotated[
        str | None,
        typer.Option(metavar="DATE", help="only alerts raised on or after DATE (YYYY-MM-DD, UTC)"),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print one JSON array: each alert in full, lifecycle too"),
    ] = False,
    url: UrlOption = None,
) -> None:
    """List alerts, newest first, with their short ids (the first 8 hex characters of the
    alert id), which show, ack, resolve and rebaseline accept as well as the full id."""
    import json

    from evidence.lifecycle import AlertStatus

    try:
        wanted = AlertStatus(status) if status else None
    except ValueError:
        raise fail(f"unknown status {status!r}; use open, acknowledged or resolved") from None
    start = None if since is None else datetime.combine(parse_day("--since", since), time(), UTC)
    with open_store(url, read_only=True) as store:
        views = store.alerts(wanted, device_id=device, site_id=site, since=start)
    if as_json:
        typer.echo(json.dumps([_alert_json(view) for view in views], indent=2))
    elif not views:
        typer.echo("no alerts")
    else:
        typer.echo("\n".join(_table(ALERT_COLUMNS, [_alert_cells(view) for view in views])))


@alerts_app.command("show")
def show_alert(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    url: UrlOption = None,
) -> None:
    """Show one alert: its evidence, where a CUSUM places the change, message, lifecycle and
    recurrences."""
    from evidence.report_alerts import change_point_sentence
    from evidence.store import NotFound

    with open_store(url, read_only=True) as store:
        try:
            view = store.alert(alert_id)
        except NotFound as error:
            raise fail(str(error)) from None
        recurrences = store.alert_recurrences(alert_id)
    alert = view.alert
    lines = [
        f"alert        {alert.alert_id}",
        f"status       {view.status.value}",
        f"stream       {alert.stream.as_key()}",
        f"detector     {alert.detector} (statistic {alert.statistic:g}, "
        f"threshold {alert.threshold:g})",
        f"severity     {alert.severity}",
        f"cases        {alert.first_case_time.isoformat()} .. {alert.last_case_time.isoformat()}",
        f"evidence     {', '.join(f'{k}={v}' for k, v in sorted(alert.evidence.items()))}",
        f"raised at    {alert.raised_at.isoformat()}",
        f"message      {alert.message}",
    ]
    change = change_point_sentence(alert)
    if change is not None:
        lines.insert(-2, f"change       {change}")
    if view.acknowledged_at is not None:
        lines.append(
            f"acknowledged {view.acknowledged_at.isoformat()} by {view.acknowledged_by}: "
            f"{view.acknowledgement}"
        )
    if view.resolved_at is not None:
        lines.append(
            f"resolved     {view.resolved_at.isoformat()} by {view.resolved_by}: {view.resolution}"
        )
    if recurrences:
        lines.append(
            f"recurrences  {len(recurrences)}, highest severity {view.highest_severity} "
            "(signals of this stream and detector while the alert was unresolved):"
        )
        lines += [_recurrence_line(recurrence) for recurrence in recurrences]
    typer.echo("\n".join(lines))


@alerts_app.command("ack")
def acknowledge(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    note: Annotated[str, typer.Option("--note", help="what you will do about it")],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    url: UrlOption = None,
) -> None:
    """Acknowledge an open alert: you own it now."""
    from evidence.lifecycle import IllegalTransition
    from evidence.store import EvidenceError

    with open_store(url) as store:
        try:
            view = store.acknowledge_alert(alert_id, by=actor_or_login(by), note=note)
        except (EvidenceError, IllegalTransition) as error:
            raise fail(str(error)) from None
    typer.echo(f"alert {view.alert.alert_id} is {view.status.value}")


@alerts_app.command("resolve")
def resolve(
    alert_id: Annotated[str, typer.Argument(help=ALERT_ID_HELP)],
    resolution: Annotated[
        str, typer.Option("--resolution", help="root cause and fix, or why it was a false alarm")
    ],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    bootstrap: BootstrapOption = None,
    url: UrlOption = None,
) -> None:
    """Resolve an acknowledged alert, saying why.

    A claim-based alert of a site's stream (a CUSUM, a claims test, an estimate, the
    calibration test, site-vs-fleet) is resolved after review: a review decision goes to
    pms.rebaselines.v1 first, where the workers restart each claims test of the stream that
    rejected (a new test, within the fleet false-alarm budget) with the CUSUMs that alarmed
    since; the references and the claims are untouched. Then the resolution is recorded with
    a stream.review audit entry. If recording fails after publishing, run the command again:
    it publishes the same decision, which the workers skip. Any other alert is only recorded.
    """
    from evidence.lifecycle import AlertAction, IllegalTransition, next_status
    from evidence.rebaseline import (
        ReviewRefused,
        is_reviewed_on_its_stream,
        review_decision,
    )
    from evidence.store import EvidenceError
    from postmarket.contracts.events import utc_now

    with open_store(url) as store:
        try:
            view = store.alert(alert_id)
            if not is_reviewed_on_its_stream(view.alert.detector):
                view = store.resolve_alert(alert_id, by=actor_or_login(by), resolution=resolution)
                typer.echo(f"alert {view.alert.alert_id} is {view.status.value}")
                return
            decision = review_decision(view, actor_or_login(by), resolution, utc_now())
            next_status(view.status, AlertAction.RESOLVE)  # an open alert has no owner yet
        except (EvidenceError, ReviewRefused, IllegalTransition) as error:
            raise fail(str(error)) from None
        target = _publish(decision, bootstrap)
        _record(
            lambda: store.record_review(decision),
            f"review decision {decision.rebaseline_id}",
            "the resolution",
        )
    typer.echo(
        f"alert {decision.alert_id} is resolved after review (decision "
        f"{decision.rebaseline_id} on pms.rebaselines.v1 at {target}).\nOn stream "
        f"{decision.stream.as_key()}, the workers restart each claims test that rejected, as a"
        " new test within the fleet false-alarm budget, and the CUSUMs that alarmed since; "
        "with no claims test rejected, nothing changes (a CUSUM restarts by itself when it "
        "alarms). The references and the claims are untouched."
    )


def _publish(decision: Rebaseline, bootstrap: str | None) -> str:
    """Publish ``decision`` and wait for the broker's ack; the broker's address. Fails
    (nothing recorded yet) with what went wrong if it is not acknowledged."""
    from evidence.rebaseline import publish_rebaseline
    from postmarket.config import Settings

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    try:
        publish_rebaseline(decision, target, settings.kafka_security())
    except Exception as error:  # kafka-python raises many kinds; nothing is stored yet
        raise fail(
            f"publishing to {target} failed: {type(error).__name__}: {error}; nothing was recorded"
        ) from None
    return target


def _record(record: Callable[[], object], published: str, recorded: str) -> None:
    """Record a decision already published; if that fails, say how to finish (running the
    command again publishes the same decision, which the workers skip, and records it)."""
    try:
        record()
    except Exception as error:  # published already: whatever failed, the same way out
        raise fail(
            f"published {published} to pms.rebaselines.v1, but recording {recorded} failed: "
            f"{type(error).__name__}: {error}; run the command again (it publishes the same "
            "decision, which the workers skip, and records it)"
        ) from None


@alerts_app.command("rebaseline")
def rebaseline(
    alert_id: Annotated[str, typer.Argument(help=f"the acknowledged drift alert: {ALERT_ID_HELP}")],
    why: Annotated[
        str,
        typer.Option(
            "--why", help="what the investigation found and accepted, e.g. 'new scanner validated'"
        ),
    ],
    by: Annotated[str | None, typer.Option(help="who \\[default: your login name]")] = None,
    bootstrap: BootstrapOption = None,
    url: UrlOption = None,
) -> None:
    """Accept an investigated drift: the alert is resolved and the stream's next predictions
    become its new reference.

    Only for an acknowledged drift alert (score_drift, model_drift, kvp_band_drift or
    another acquisition drift). The decision goes to pms.rebaselines.v1, where the workers
    rebuild the stream's score and acquisition references from as many of its next
    predictions as formed its first reference; then it is recorded in the evidence store
    with an audit entry. The claims are never re-baselined: the CUSUMs, claims tests and
    label-free estimates keep testing them. If recording fails after publishing, run the
    command again: it publishes the same decision, which the workers skip.
    """
    from evidence.lifecycle import AlertAction, IllegalTransition, next_status
    from evidence.rebaseline import RebaselineRefused, rebaseline_decision
    from evidence.store import NotFound
    from postmarket.contracts.events import utc_now

    with open_store(url) as store:
        try:
            view = store.alert(alert_id)
            decision = rebaseline_decision(view, actor_or_login(by), why, utc_now())
        except (NotFound, RebaselineRefused) as error:
            raise fail(str(error)) from None
        try:
            next_status(view.status, AlertAction.RESOLVE)  # an open alert has no owner yet
        except IllegalTransition as error:
            raise fail(f"re-baselining resolves alert {decision.alert_id}; {error}") from None
        target = _publish(decision, bootstrap)
        _record(
            lambda: store.record_rebaseline(decision), f"decision {decision.rebaseline_id}", "it"
        )
    stream, detector = decision.stream.as_key(), view.alert.detector
    typer.echo(
        f"re-baselined stream {stream} after its {detector} alert (decision "
        f"{decision.rebaseline_id} on pms.rebaselines.v1 at {target}); alert {decision.alert_id}"
        " is resolved.\nThe workers rebuild its score and acquisition references from its next "
        "predictions, as many as formed its first reference; the claims are tested as before."
    )
