"""``postmarket registry``: devices, versions, registered claims and change records.

Every write goes through the store's change control and audit trail; a refusal (unknown
device, illegal status change, a claim no chart could monitor) is one line and exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from evidence.cli_common import (
    ActorOption,
    ClaimTaskArgument,
    DeviceArgument,
    PolicyOption,
    UrlOption,
    VersionArgument,
    actor_or_login,
    change_control_policy,
    fail,
    open_store,
    parse_day,
    refused,
)

if TYPE_CHECKING:
    from pydantic import ValidationError

    from evidence.store import EvidenceStore
    from postmarket.contracts.events import Claim

registry_app = typer.Typer(
    help="Device registry: devices, versions, registered claims and change records.",
    no_args_is_help=True,
)

REFERENCE_PREVALENCE_HELP = (
    "prevalence, strictly between 0 and 1, of the reference/validation population at which "
    "the version's scores are calibrated; workers adjust their label-free estimate to each "
    "site's prevalence from it"
)

RegisteredOnOption = Annotated[str | None, typer.Option(help="date of registration, YYYY-MM-DD")]


@contextmanager
def _registry_refusal() -> Iterator[None]:
    """What the registry refuses (the store's rules, a malformed version): one line, exit 1."""
    from evidence.store import EvidenceError
    from postmarket.versions import VersionError

    with refused(EvidenceError, VersionError):
        yield


@registry_app.command("add-device")
def add_device(
    device_id: Annotated[str, typer.Argument(help="device identifier, as collectors report it")],
    task: Annotated[
        list[str] | None, typer.Option("--task", help="a task the device performs (repeatable)")
    ] = None,
    name: Annotated[str, typer.Option(help="product name")] = "",
    manufacturer: Annotated[str, typer.Option(help="manufacturer")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a device and its tasks to the registry."""
    from evidence.store import EvidenceError

    with open_store(url) as store:
        with refused(EvidenceError):
            store.add_device(
                device_id,
                name=name,
                manufacturer=manufacturer,
                tasks=task or [],
                actor=actor_or_login(actor),
            )
    typer.echo(f"added device {device_id}")


@registry_app.command("add-version")
def add_version(
    device_id: DeviceArgument,
    version: VersionArgument,
    status: Annotated[
        str, typer.Option(help="registered, pending, unregistered or withdrawn")
    ] = "registered",
    regulator: Annotated[str, typer.Option(help="e.g. NMPA, FDA")] = "",
    reference: Annotated[str, typer.Option(help="registration certificate or submission no.")] = "",
    registered_on: RegisteredOnOption = None,
    reference_prevalence: Annotated[
        float | None,
        typer.Option(
            "--reference-prevalence",
            metavar="P",
            help=REFERENCE_PREVALENCE_HELP + " \\[default: unknown, not adjusted]",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a version of a device with its registration status."""
    day = parse_day("--registered-on", registered_on) if registered_on else None
    with open_store(url) as store:
        with _registry_refusal():
            parsed = store.add_version(
                device_id,
                version,
                status=status,
                regulator=regulator,
                reference=reference,
                registered_on=day,
                reference_prevalence=reference_prevalence,
                actor=actor_or_login(actor),
            )
    typer.echo(f"added {device_id} {parsed} ({status})")


@registry_app.command("set-reference-prevalence")
def set_reference_prevalence(
    device_id: DeviceArgument,
    version: VersionArgument,
    prevalence: Annotated[
        float | None,
        typer.Argument(metavar="[P]", help=REFERENCE_PREVALENCE_HELP, show_default=False),
    ] = None,
    unknown: Annotated[
        bool, typer.Option("--unknown", help="forget the stored value (published as unknown)")
    ] = False,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Set the reference prevalence of a version in the registry (or forget it: --unknown)."""
    if prevalence is None and not unknown:
        raise fail("give the prevalence P, or --unknown to forget the stored one")
    if prevalence is not None and unknown:
        raise fail("give the prevalence P or --unknown, not both")
    with open_store(url) as store:
        with _registry_refusal():
            store.set_reference_prevalence(
                device_id, version, prevalence, actor=actor_or_login(actor)
            )
    shown = "unknown" if prevalence is None else f"{prevalence:g}"
    typer.echo(f"set the reference prevalence of {device_id} {version} to {shown}")


@registry_app.command("add-claim")
def add_claim(
    device_id: DeviceArgument,
    version: VersionArgument,
    task: ClaimTaskArgument,
    metric: Annotated[str, typer.Option(help="sensitivity, specificity, ppv, npv or auc")],
    value: Annotated[float, typer.Option(help="claimed value, 0-1")],
    ci_lower: Annotated[float, typer.Option(help="lower bound of the claim's CI")],
    ci_upper: Annotated[float, typer.Option(help="upper bound of the claim's CI")],
    test_database: Annotated[str, typer.Option(help="the (standard) test database it was on")],
    acquisition: Annotated[
        list[str] | None,
        typer.Option(help="intended acquisition, e.g. 'CT 1-2 mm' (repeatable)"),
    ] = None,
    population: Annotated[
        list[str] | None, typer.Option(help="intended population (repeatable)")
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Record a registered performance claim (with CI) for a version and task."""
    from pydantic import ValidationError

    from postmarket.contracts import Claim

    try:
        claim = Claim.model_validate(
            {
                "task": task,
                "metric": metric,
                "value": value,
                "ci_lower": ci_lower,
                "ci_upper": ci_upper,
                "test_database": test_database,
            }
        )
    except ValidationError as error:
        raise fail(f"invalid claim: {_problems(error)}") from None
    _check_chartable(claim)
    with open_store(url) as store:
        _check_test_database(store, claim.test_database)
        with _registry_refusal():
            store.add_claim(
                device_id,
                version,
                claim,
                intended_acquisitions=acquisition or [],
                intended_populations=population or [],
                actor=actor_or_login(actor),
            )
    typer.echo(f"added claim {metric} {value} [{ci_lower}, {ci_upper}] to {device_id} {version}")


def _check_test_database(store: EvidenceStore, named: str) -> None:
    """A claim naming its database as ``NAME@VERSION`` must name a version the store holds
    (``postmarket testdb``); other text (a database kept elsewhere) is taken as written."""
    from evidence.testdb_store import TestDatabaseError, load_version

    name, at, version = named.rpartition("@")
    if not (at and name and version) or store.has_test_database(name, version):
        return
    try:  # not there: its refusal names the versions there are
        load_version(store, name, version)
    except TestDatabaseError as error:
        raise fail(f"--test-database {named}: {error}") from None


def _check_chartable(claim: Claim) -> None:
    """Refuse a sensitivity or specificity claim no labelled chart could monitor under the
    configured acceptable level (a stream would otherwise run without one)."""
    from postmarket.claim_levels import LevelPolicy, UnmonitorableClaim, chart_levels
    from postmarket.config import Settings

    if claim.metric not in ("sensitivity", "specificity"):
        return
    policy = LevelPolicy(Settings().acceptable_level)
    try:
        chart_levels(claim.metric, claim.value, claim.ci_lower, policy)
    except UnmonitorableClaim as reason:
        raise fail(f"claim refused, no chart could monitor it: {reason}") from None


@registry_app.command("add-change")
def add_change(
    device_id: DeviceArgument,
    version: Annotated[str, typer.Argument(help="the version the change produced")],
    kind: Annotated[str, typer.Option(help="algorithm_framework, training_database or bug_fix")],
    fraction: Annotated[
        float | None,
        typer.Option(help="fraction (0-1) of the training database changed (training_database)"),
    ] = None,
    description: Annotated[str, typer.Option(help="what changed and why")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Record what changed to make a version (its change record)."""
    from postmarket.versions import ChangeKind, ChangeRecord, PolicyError

    try:
        record = ChangeRecord(ChangeKind(kind), description, fraction)
    except ValueError as error:
        message = str(error)
        if not isinstance(error, PolicyError):
            message = f"unknown kind {kind!r}; use {', '.join(k.value for k in ChangeKind)}"
        raise fail(message) from None
    with open_store(url) as store:
        with _registry_refusal():
            store.add_change(device_id, version, record, actor=actor_or_login(actor))
    typer.echo(f"added {kind} change record to {device_id} {version}")


WhyOption = Annotated[
    str,
    typer.Option(
        "--why",
        help="why the registered record changes (kept in the audit trail), e.g. "
        "'NMPA approval 2026-03-02' or 'value mistyped from the certificate'",
    ),
]


def _reason(why: str) -> str:
    """``--why`` as given, refused when blank: every change to the registry says why."""
    if not why.strip():
        raise fail("--why is empty: say why the registry changes (the audit trail keeps it)")
    return why.strip()


@registry_app.command("add-task")
def add_task(
    device_id: DeviceArgument,
    task: Annotated[str, typer.Argument(help="the task, as collectors report it")],
    why: WhyOption,
    description: Annotated[str, typer.Option(help="what the task is")] = "",
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a task to a device already in the registry (then add-claim its claims)."""
    from evidence.store import EvidenceError

    reason = _reason(why)
    with open_store(url) as store:
        with refused(EvidenceError):
            store.add_task(
                device_id, task, description=description, why=reason, actor=actor_or_login(actor)
            )
    typer.echo(f"added task {task} to {device_id}")


@registry_app.command("set-status")
def set_status(
    device_id: DeviceArgument,
    version: VersionArgument,
    status: Annotated[str, typer.Argument(help="pending, registered, unregistered or withdrawn")],
    why: WhyOption,
    reference: Annotated[
        str, typer.Option(help="submission or registration certificate number")
    ] = "",
    regulator: Annotated[str, typer.Option(help="e.g. NMPA, FDA \\[default: as on record]")] = "",
    registered_on: RegisteredOnOption = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Change a version's registration status, under change control.

    unregistered -> pending (submitted) or registered; pending -> registered (approved) or
    unregistered (refused or retracted); registered -> withdrawn, never back to pending or
    unregistered. A withdrawn version returns to pending or registered only as a new
    registration entry: with a new --reference, not the withdrawn one. Registered needs a
    --reference, given now or on record. The audit trail keeps the old status, reference
    and date beside the new ones, with --actor and --why. Publish to tell the workers.
    """
    reason = _reason(why)
    day = parse_day("--registered-on", registered_on) if registered_on else None
    with open_store(url) as store:
        refusal = _gate_refusal(store, device_id, version, status)
        if refusal is not None:
            raise fail(refusal)
        with _registry_refusal():
            previous = store.set_registration_status(
                device_id,
                version,
                status,
                reference=reference,
                regulator=regulator,
                registered_on=day,
                why=reason,
                actor=actor_or_login(actor),
            )
    typer.echo(f"{device_id} {version}: {previous} -> {status}")


def _gate_refusal(store: EvidenceStore, device_id: str, version: str, status: str) -> str | None:
    """Why the ``gate_required_for`` policy refuses ``status`` without a passing standard
    test database gate (``postmarket testdb run``), or None."""
    from evidence.testdb_gate_store import GateError, gate_refusal
    from postmarket.config import Settings

    try:
        return gate_refusal(store, device_id, version, status, Settings().gate_required_for)
    except GateError as error:
        return str(error)


@registry_app.command("amend-claim")
def amend_claim(
    device_id: DeviceArgument,
    version: VersionArgument,
    task: ClaimTaskArgument,
    metric: Annotated[str, typer.Option(help="the claimed metric to amend")],
    why: WhyOption,
    value: Annotated[float | None, typer.Option(help="claimed value, 0-1")] = None,
    ci_lower: Annotated[float | None, typer.Option(help="lower bound of the claim's CI")] = None,
    ci_upper: Annotated[float | None, typer.Option(help="upper bound of the claim's CI")] = None,
    test_database: Annotated[
        str | None, typer.Option(help="the (standard) test database it was on")
    ] = None,
    acquisition: Annotated[
        list[str] | None,
        typer.Option(help="intended acquisition (repeatable; replaces the old list)"),
    ] = None,
    population: Annotated[
        list[str] | None,
        typer.Option(help="intended population (repeatable; replaces the old list)"),
    ] = None,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Correct a claim of a version: what is given replaces the old, the rest is kept.

    The amended claim must pass add-claim's checks (a claim no chart could monitor is
    refused). A withdrawn version's claims are never changed; a registered version's only
    with --why, and the audit trail keeps the old claim beside the new. To correct the task
    or metric itself, withdraw-claim and add-claim.
    """
    from pydantic import ValidationError

    from postmarket.contracts import Claim

    reason = _reason(why)
    changes = {
        "value": value,
        "ci_lower": ci_lower,
        "ci_upper": ci_upper,
        "test_database": test_database,
    }
    given = {name: new for name, new in changes.items() if new is not None}
    if not given and acquisition is None and population is None:
        raise fail(
            "nothing to amend: give --value, --ci-lower, --ci-upper, --test-database, "
            "--acquisition or --population"
        )
    with open_store(url) as store:
        if test_database is not None:
            _check_test_database(store, test_database)
        with _registry_refusal():
            old = store.claim(device_id, version, task, metric)
        try:
            claim = Claim.model_validate({**old.model_dump(), **given})
        except ValidationError as error:
            raise fail(f"invalid claim: {_problems(error)}") from None
        _check_chartable(claim)
        with _registry_refusal():
            store.amend_claim(
                device_id,
                version,
                claim,
                intended_acquisitions=acquisition,
                intended_populations=population,
                why=reason,
                actor=actor_or_login(actor),
            )
    typer.echo(
        f"amended {device_id} {version} {task} {metric}: {old.value} [{old.ci_lower}, "
        f"{old.ci_upper}] -> {claim.value} [{claim.ci_lower}, {claim.ci_upper}]"
    )


@registry_app.command("withdraw-claim")
def withdraw_claim(
    device_id: DeviceArgument,
    version: VersionArgument,
    task: ClaimTaskArgument,
    metric: Annotated[str, typer.Option(help="the claimed metric to withdraw")],
    why: WhyOption,
    url: UrlOption = None,
    actor: ActorOption = None,
) -> None:
    """Withdraw a (mistyped) claim from a version; publish to stop the workers testing it.

    Under amend-claim's rules: never on a withdrawn version, with --why on a registered one.
    The claim stays in the registry, marked withdrawn with when, who and why (list --all
    shows it), and the audit trail keeps it whole.
    """
    reason = _reason(why)
    with open_store(url) as store:
        with _registry_refusal():
            old = store.withdraw_claim(
                device_id, version, task, metric, why=reason, actor=actor_or_login(actor)
            )
    typer.echo(
        f"withdrew {device_id} {version} {task} {metric} {old.value} "
        f"[{old.ci_lower}, {old.ci_upper}]"
    )


def _problems(error: ValidationError) -> str:
    """A pydantic error as one line: each field (if one is to blame) and what is wrong."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"]
        for e in error.errors()
    )


@registry_app.command("list")
def list_registry(
    policy: PolicyOption = "nmpa-syzb",
    url: UrlOption = None,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="also each version's withdrawn claims, with when, who and why"),
    ] = False,
) -> None:
    """List devices and versions with status, change, claims and registration verdict.

    An unregistered version is judged under POLICY: may it run, or does it need registration?
    Withdrawn claims are the registry's record but not monitored: --all shows them.
    """
    from postmarket.versions import registration_required

    active = change_control_policy(policy)
    with open_store(url, read_only=True) as store:
        devices = store.devices()
    if not devices:
        typer.echo("the registry is empty")
    for device in devices:
        typer.echo(f"{device.device_id}  {device.name}  {device.manufacturer}".rstrip())
        typer.echo(f"  tasks: {', '.join(device.tasks) or '-'}")
        registered = [v.version for v in device.versions if v.registration_status == "registered"]
        for view in device.versions:
            line = f"  {view.version!s:<14} {view.registration_status:<12}"
            if view.reference_prevalence is not None:
                line += f" reference prevalence: {view.reference_prevalence:g}"
            if view.change is not None:
                line += f" change: {view.change.kind.value}"
            if view.claims:
                claims = ", ".join(
                    f"{c.task} {c.metric} {c.value:.3f} [{c.ci_lower:.3f}, {c.ci_upper:.3f}]"
                    for c in view.claims
                )
                line += f" claims: {claims}"
            if show_all:
                line += "".join(
                    f"\n    withdrawn claim: {w.claim.task} {w.claim.metric} "
                    f"{w.claim.value:.3f} [{w.claim.ci_lower:.3f}, {w.claim.ci_upper:.3f}], "
                    f"withdrawn {w.withdrawn_at:%Y-%m-%d %H:%M} UTC by {w.withdrawn_by}: {w.why}"
                    for w in view.withdrawn_claims
                )
            if view.registration_status == "withdrawn":
                line += "\n    WITHDRAWN: its registration was withdrawn; it must not run"
            elif view.registration_status != "registered":
                base = max((v for v in registered if v <= view.version), default=None)
                decision = registration_required(base, view.version, view.change, active)
                verdict = "NEEDS REGISTRATION" if decision.required else "may run"
                line += f"\n    {verdict} under {active.name}: {decision.reason}"
            typer.echo(line)


@registry_app.command("publish")
def publish(
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Kafka bootstrap host:port \\[default: POSTMARKET_KAFKA_BOOTSTRAP]"),
    ] = None,
    reference_prevalence: Annotated[
        list[str] | None,
        typer.Option(
            "--reference-prevalence",
            metavar="DEVICE[@VERSION]=P",
            help="override the stored prevalence (strictly between 0 and 1) of the "
            "reference/validation population at which a device's scores are calibrated, for "
            "all its versions or one (repeatable; DEVICE@VERSION wins over DEVICE, both over "
            "the store) \\[default: each version's stored value, else unknown]",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = None,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            metavar="SECONDS",
            help="how long to wait for the broker to answer before giving up",
        ),
    ] = 5.0,
) -> None:
    """Publish every device version (status, change class, claims, reference prevalence)
    to pms.registry.v1.

    Workers read claims and registration status from that compacted topic; publishing
    again is harmless (the newest entry per device|version is kept). Each version carries
    the reference prevalence stored with it (add-version, set-reference-prevalence) unless
    --reference-prevalence overrides it; a version with neither is published as unknown.
    """
    from evidence.registry_topic import (
        parse_reference_prevalence,
        publish_registry,
        registry_entries,
    )
    from postmarket.config import Settings

    try:
        prevalences = parse_reference_prevalence(reference_prevalence or [])
    except ValueError as error:
        raise fail(f"--reference-prevalence: {error}") from None
    with open_store(url, read_only=True) as store:
        devices = store.devices()
    try:
        entries = registry_entries(devices, reference_prevalence=prevalences)
    except ValueError as error:
        raise fail(f"--reference-prevalence: {error}") from None
    if not entries:
        typer.echo("the registry is empty: nothing to publish")
        return
    from postmarket import topics
    from postmarket.preflight import ServiceProblem, check_kafka, describe_error, exit_for

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    security = settings.kafka_security()
    try:  # seconds, not kafka-python's 30 s timeouts, when the broker is not there
        check_kafka(target, security, connect_timeout, topics=[topics.REGISTRY])
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    try:
        sent = publish_registry(entries, target, security)
    except Exception as error:  # kafka-python raises many kinds; say which and stop
        raise fail(f"publishing to {target} failed: {describe_error(error)}") from None
    typer.echo(f"published {sent} registry entries to pms.registry.v1 at {target}")
