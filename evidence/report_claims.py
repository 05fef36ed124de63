"""Registered claims against the field: the anytime-valid beta-binomial claims test per
version, task and metric; and the claims withdrawn from a version, shown but never tested."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from detectors import BetaBinomialConfidenceSequence
from evidence.report_outcomes import (
    METRICS,
    DesignCounts,
    Proportion,
    group_outcomes,
    proportion,
    success_of,
    version_order,
)
from evidence.store import (
    OutcomeRecord,
    VersionView,
)
from evidence.views import WithdrawnClaim
from postmarket.contracts.events import Claim

CLAIMS_ALPHA = 0.05


@dataclass(frozen=True)
class ClaimCheck:
    """One registered claim of one version against what the field shows in the window."""

    version: str
    task: str
    metric: str
    claim: Claim | None
    observed: Proportion
    verdict: str
    """``below claim``, ``consistent``, ``no registered claim`` or ``no cases``."""
    decided_at_case: int | None
    decided_at: datetime | None
    log_evidence: float | None
    design: DesignCounts


def claims_test(
    claimed: float, metric: str, outcomes: Sequence[OutcomeRecord]
) -> tuple[str, int | None, datetime | None, float | None]:
    """Run the anytime-valid claims test over ``outcomes`` in time order.

    Returns the verdict, the case number and time at which the claim was rejected (if it
    was), and the final log e-value against the claim.
    """
    test = BetaBinomialConfidenceSequence(1.0 - claimed, CLAIMS_ALPHA)
    decided_at_case: int | None = None
    decided_at: datetime | None = None
    statistic: float | None = None
    n = 0
    for outcome in outcomes:
        hit = success_of(metric, outcome)
        if hit is None:
            continue
        n += 1
        result = test.update(0 if hit else 1)
        statistic = result.statistic
        if result.fired:
            decided_at_case, decided_at = n, outcome.prediction_time
    if n == 0:
        return "no cases", None, None, None
    return test.verdict, decided_at_case, decided_at, statistic


def claim_checks(
    versions: Sequence[VersionView], outcomes: Sequence[OutcomeRecord]
) -> list[ClaimCheck]:
    """Claims vs observed per version, task and metric (registered claims and observed ones)."""
    by_version_task = group_outcomes(outcomes, lambda o: (o.stream.device_version, o.stream.task))
    checks: list[ClaimCheck] = []
    keys = set(by_version_task) | {
        (str(v.version), c.task) for v in versions for c in v.claims if c.metric in METRICS
    }
    claims = {(str(v.version), c.task, c.metric): c for v in versions for c in v.claims}
    for version, task in sorted(keys, key=lambda k: (version_order(k[0]), k[1])):
        group = by_version_task.get((version, task), [])
        for metric in ("sensitivity", "specificity", "ppv", "npv"):
            claim = claims.get((version, task, metric))
            observed = proportion(metric, group)
            if claim is None and metric in ("ppv", "npv"):
                continue  # shown only where claimed: they depend on prevalence
            if claim is None:
                verdict, case, when, statistic = "no registered claim", None, None, None
            else:
                verdict, case, when, statistic = claims_test(claim.value, metric, group)
            checks.append(
                ClaimCheck(
                    version, task, metric, claim, observed, verdict, case, when, statistic,
                    DesignCounts.of(group),
                )
            )  # fmt: skip
    return checks


@dataclass(frozen=True)
class WithdrawnClaimRow:
    """A claim withdrawn from a version's registration: the registration's record, which a
    regulator reads beside the claims tested, and which no computation of the report uses."""

    version: str
    withdrawn: WithdrawnClaim


def withdrawn_claims(versions: Sequence[VersionView], stop: datetime) -> list[WithdrawnClaimRow]:
    """The claims withdrawn before ``stop`` (a period's end), by version, then in the order
    they were withdrawn: a claim withdrawn after the period was current throughout it."""
    rows = [
        WithdrawnClaimRow(str(v.version), withdrawn)
        for v in versions
        for withdrawn in v.withdrawn_claims
        if withdrawn.withdrawn_at < stop
    ]
    return sorted(
        rows,
        key=lambda r: (version_order(r.version), r.withdrawn.withdrawn_at, r.withdrawn.claim.task,
                       r.withdrawn.claim.metric),
    )  # fmt: skip
