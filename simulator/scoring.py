"""Scoring a run: was each injected change detected, by what, how late; what else fired.

Pure functions over the ground truth document (:mod:`simulator.ground_truth`), facts
about the simulated fleet (each stream's cases in arrival order, each burst's bytes) and
what the pipeline emitted: alerts (``pms.alerts.v1``), dead letters
(``pms.deadletter.v1``) and the predictions it accepted. Each expected signal maps to
what the pipeline really emits for it:

``performance_drift`` / ``performance_below_claims``
    an alert of a stream detector (CUSUM, claims test, score drift) on an affected stream,
    at or after the change's first affected case in that stream; or an alert of the pooled
    per-version stage (:mod:`streams.pooled`) on the version and task of an affected
    stream, raised on counts that include an affected case;
``unregistered_version``
    the ``unregistered_change`` alert on an affected stream;
``dead_letters``
    every malformed record of the burst on the dead-letter topic, bytes for bytes;
``dead_letters_in_batch``
    every bad event of each malformed batch dead-lettered alone, bytes for bytes, from
    ``pms.inputs.v2`` at its place in the batch (``source_index``) with its reason; a
    repeated event_id dead-lettered nowhere (a resend counts once); and every good event of
    the batch counted: its prediction accepted, none of them dead-lettered, and, when the
    outcomes are given, every good case's outcome out;
``retrospective_data``
    every backfilled case accepted and marked retrospective;
``site_silent``
    the collector-silence rule (``PostmarketCollectorSilent`` in deploy/prometheus) in
    event time: a site from which no case arrived for :data:`SILENCE_AFTER` of simulated
    time while the fleet went on. The rule itself compares wall-clock receipt times, which
    a simulation compressing weeks into minutes cannot exercise; this applies it to the
    accepted cases' event times instead.

A change's detection is its first alert in simulated time, on whichever affected stream.
Delay in cases counts that stream's cases from its first affected one up to and including
the one at which the detector fired; delay in days is the simulated time from the change's
first affected case (in any stream) to that case. A label-free detector fired at the
prediction count it recorded (``stream_predictions``); a labelled one at the latest case it
had charted (``last_case_time``): the stream agent may have counted predictions far ahead
of outcomes on a simulation compressing weeks into minutes, and that lead is the worker's,
not the detector's. The wait for ground truth is therefore not in a labelled detector's
delay; it is in the scenario's follow-up delays.

A pooled alert is placed at its last case time (the latest case any contributing site had
charted); its delay in cases is that of the affected site that had contributed most by then
(comparable with a stream's, and with the same bound), and the cases across all affected
sites are in its detail. The score reports the first per-site and the first pooled detection
in days side by side.

An alert no injected change explains is a false alarm: a stream detector on a stream no
performance change touched (or before the change reached it), an unregistered-change
alert where every version was registered, a silence at a site that kept sending.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from postmarket import topics
from postmarket.contracts import Alert, DeadLetter, Outcome, Prediction
from simulator.fleet import MalformedBatchRecord, MalformedRecord, SimulatedRecord
from simulator.ground_truth import arriving_cases, stream_key
from streams.detector_design import is_label_free
from streams.pooled import POOLED_SITE

PERFORMANCE_SIGNALS = frozenset({"performance_drift", "performance_below_claims"})
UNREGISTERED_DETECTOR = "unregistered_change"
SILENCE_DETECTOR = "site_silence"
SILENCE_AFTER = timedelta(days=1)
"""Simulated time without a case after which a site counts as silent. The Prometheus rule
waits 6 hours of wall-clock time; the demo's sites see 15-60 cases a day, so a day keeps
their ordinary gaps well clear of it."""


@dataclass(frozen=True)
class Bound:
    """The latest a change of one kind must be detected: in affected cases and in days."""

    cases: int | None
    days: float

    def holds(self, delay_cases: int | None, delay_days: float | None) -> bool:
        if delay_days is None or delay_days > self.days:
            return False
        return self.cases is None or (delay_cases is not None and delay_cases <= self.cases)

    def __str__(self) -> str:
        days = f"{self.days:g} d"
        return days if self.cases is None else f"{self.cases} cases, {days}"


BOUNDS: dict[str, Bound] = {
    "performance_drift": Bound(cases=600, days=15.0),
    "performance_below_claims": Bound(cases=600, days=15.0),
    "unregistered_version": Bound(cases=None, days=1.0),
    "dead_letters": Bound(cases=None, days=0.0),
    "dead_letters_in_batch": Bound(cases=None, days=0.0),
    "retrospective_data": Bound(cases=None, days=0.0),
    "site_silent": Bound(cases=None, days=SILENCE_AFTER / timedelta(days=1)),
}
"""Per expected signal, the bound the end-to-end test holds each detection to.

Performance changes: the demo's drops (sensitivity 0.87 to about 0.6 on the new camera,
0.74 in the regressed version) take a CUSUM designed for a 7-point drop some 40-80
charted positives at the demo's in-control ARL (about 114,000 cases), i.e. a few hundred
stream cases at 24 % prevalence, plus the median 4 days' wait for adjudicated reads. Five
runs detected the camera in 403-438 cases (10.5-11.3 days) and the regression in 69-311
cases (1.6-8.0 days); the bounds leave about 35 % above the slowest. The version check
fires on the first case of a version the worker sees; a collector delivers a simulated
day at a time and the worker takes its partitions in any order, so that is a case of the
version's first day. Dead letters and retrospective marking happen on arrival; silence
is seen :data:`SILENCE_AFTER` after the last case."""


GoodEvent = tuple[str, str, datetime]
"""A good event of a batch as scoring finds it whatever the site's keys: (kind, site,
event time); the simulator gives a batch's events distinct times."""


@dataclass(frozen=True)
class FleetFacts:
    """What the simulator knows about its own records that the ground truth file omits."""

    stream_case_times: Mapping[str, Sequence[datetime]]
    """Per stream key, its cases' event times in arrival order (ordinal 1 first)."""
    malformed: Mapping[str, frozenset[bytes]]
    """Per malformed-burst injection, the bytes of its records."""
    batch_bad: Mapping[str, frozenset[tuple[int, bytes, str]]] = field(default_factory=dict)
    """Per malformed-batch injection, (place in its batch, bytes, reason) of every event
    the workers must dead-letter."""
    batch_good: Mapping[str, frozenset[GoodEvent]] = field(default_factory=dict)
    """Per malformed-batch injection, its good events (the repeat of one is not another)."""


def fleet_facts(records: Iterable[SimulatedRecord]) -> FleetFacts:
    """The facts scoring needs, from the records in arrival order (as ``fleet_records``)."""
    records = list(records)
    times: dict[str, list[datetime]] = defaultdict(list)
    malformed: dict[str, set[bytes]] = defaultdict(set)
    batch_bad: dict[str, set[tuple[int, bytes, str]]] = defaultdict(set)
    batch_good: dict[str, set[GoodEvent]] = defaultdict(set)
    for case in arriving_cases(records):
        times[stream_key(case)].append(case.event_time)
    for record in records:
        if isinstance(record, MalformedRecord):
            malformed[record.injection].add(record.value)
        elif isinstance(record, MalformedBatchRecord):
            for bad in record.bad:
                if bad.value is not None and bad.expected_reason is not None:
                    batch_bad[record.injection].add((bad.index, bad.value, bad.expected_reason))
            batch_good[record.injection].update(
                ("prediction", c.site_id, c.event_time) for c in record.cases
            )
            batch_good[record.injection].update(
                ("followup", f.site_id, f.event_time) for f in record.followups
            )
    return FleetFacts(
        dict(times),
        {name: frozenset(v) for name, v in malformed.items()},
        {name: frozenset(v) for name, v in batch_bad.items()},
        {name: frozenset(v) for name, v in batch_good.items()},
    )


@dataclass(frozen=True)
class PipelineOutput:
    """What the pipeline emitted over the run."""

    alerts: Sequence[Alert]
    dead_letters: Sequence[DeadLetter] = ()
    predictions: Sequence[Prediction] = ()
    """The valid predictions it accepted (for silence and retrospective marking)."""
    outcomes: Sequence[Outcome] | None = None
    """The outcomes it emitted, when read (None: not read, so not scored)."""


@dataclass(frozen=True)
class Finding:
    """One signal of the pipeline, placed in its stream."""

    where: str
    detector: str
    detected_at: datetime
    ordinal: int | None = None


@dataclass(frozen=True)
class ChangeScore:
    """How one injected change was detected."""

    name: str
    kind: str
    expected_signal: str
    detected: bool
    detectors: tuple[str, ...]
    streams_detected: int
    streams_affected: int
    delay_cases: int | None
    delay_days: float | None
    bound: Bound
    detail: str = ""
    site_delay_days: float | None = None
    """The first detection by a per-site stream's detector, in simulated days."""
    pooled_delay_days: float | None = None
    """The first detection by the pooled per-version stage, in simulated days."""

    @property
    def within_bound(self) -> bool:
        return self.detected and self.bound.holds(self.delay_cases, self.delay_days)


@dataclass(frozen=True)
class FalseAlarm:
    """A signal no injected change explains."""

    where: str
    detector: str
    detected_at: datetime
    untouched: bool
    """True when no injected change touched the stream (or the site) at all."""


@dataclass(frozen=True)
class Scorecard:
    changes: tuple[ChangeScore, ...]
    false_alarms: tuple[FalseAlarm, ...]
    alerts: int

    @property
    def false_alarms_on_untouched(self) -> tuple[FalseAlarm, ...]:
        return tuple(alarm for alarm in self.false_alarms if alarm.untouched)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _days(delta: timedelta) -> float:
    return round(delta / timedelta(days=1), 2)


def alert_ordinal(alert: Alert, case_times: Sequence[datetime]) -> int:
    """Which case of its stream (1 = first, in arrival order) the alert fired at.

    A label-free detector (:func:`streams.detector_design.is_label_free`) fires on a prediction
    and is placed by the prediction count it recorded. Any other alert (labelled detectors,
    the version check) is placed after the last case with an event time not later than the
    alert's last case: the latest case it had charted, which does not depend on how far the
    worker had counted the stream's predictions by then (on a compressed simulation they
    can run far ahead).
    """
    seen = alert.evidence.get("stream_predictions")
    if seen is not None and is_label_free(alert.detector):
        return max(1, seen)
    return max(1, sum(1 for time in case_times if time <= alert.last_case_time))


def _case_time(case_times: Sequence[datetime], ordinal: int, fallback: datetime) -> datetime:
    if not case_times:
        return fallback
    return case_times[min(ordinal, len(case_times)) - 1]


def is_pooled(alert: Alert) -> bool:
    """Whether the pooled per-version stage raised ``alert`` (on all of a version's sites)."""
    return alert.stream.site_id == POOLED_SITE


def _group(stream_key: str) -> str:
    device, version, _site, task = stream_key.split("|")
    return f"{device}|{version}|{task}"


def _pooled_findings(
    entry: Mapping[str, Any], alerts: Sequence[Alert], facts: FleetFacts
) -> list[tuple[Alert, int, datetime, int]]:
    """(alert, affected cases at the site that contributed most, time, affected cases at all
    sites) of each pooled alert the change explains: on an affected version and task, with
    at least one affected case in its counts."""
    hits = []
    affected = entry["affected_streams"]
    groups = {_group(stream["stream_key"]) for stream in affected}
    for alert in alerts:
        if not is_pooled(alert) or alert.detector == UNREGISTERED_DETECTOR:
            continue
        key = alert.stream.as_key()
        if _group(key) not in groups:
            continue
        per_site = []
        for stream in affected:
            if _group(stream["stream_key"]) != _group(key):
                continue
            times = facts.stream_case_times.get(stream["stream_key"], ())
            ordinal = alert_ordinal(alert, times)
            per_site.append(max(0, ordinal - stream["first_case_ordinal"] + 1))
        if not any(per_site):
            continue
        hits.append((alert, max(per_site), alert.last_case_time, sum(per_site)))
    return hits


def _stream_findings(
    entry: Mapping[str, Any], alerts: Sequence[Alert], facts: FleetFacts, performance: bool
) -> tuple[list[tuple[Alert, int, datetime]], int]:
    """(alert, delay in its stream's cases, simulated time) of each alert the change explains."""
    hits = []
    affected = entry["affected_streams"]
    for stream in affected:
        key, first = stream["stream_key"], stream["first_case_ordinal"]
        times = facts.stream_case_times.get(key, ())
        for alert in alerts:
            if alert.stream.as_key() != key:
                continue
            if (alert.detector == UNREGISTERED_DETECTOR) == performance:
                continue
            ordinal = alert_ordinal(alert, times)
            if ordinal < first:
                continue
            hits.append(
                (alert, ordinal - first + 1, _case_time(times, ordinal, alert.last_case_time))
            )
    return hits, len(affected)


def _score_alerted(
    entry: Mapping[str, Any], alerts: Sequence[Alert], facts: FleetFacts, explained: set[str]
) -> ChangeScore:
    """The change's first detection in simulated time, on whichever stream it came."""
    signal = entry["expected_signal"]
    performance = signal in PERFORMANCE_SIGNALS
    site_hits, affected = _stream_findings(entry, alerts, facts, performance)
    pooled_hits = _pooled_findings(entry, alerts, facts) if performance else []
    hits = site_hits + [(alert, cases, time) for alert, cases, time, _ in pooled_hits]
    explained.update(str(alert.alert_id) for alert, _, _ in hits)
    first = min(hits, key=lambda hit: (hit[2], hit[1]), default=None)
    began = min((_time(s["first_case_time"]) for s in entry["affected_streams"]), default=None)

    def delay(found: Sequence[tuple[Alert, int, datetime]]) -> float | None:
        earliest = min((hit[2] for hit in found), default=None)
        if earliest is None or began is None:
            return None
        return max(0.0, _days(earliest - began))

    detail = f"first by {first[0].detector} on {first[0].stream.as_key()}" if first else ""
    if first is not None and is_pooled(first[0]):
        across = next(hit[3] for hit in pooled_hits if hit[0] is first[0])
        detail += f" ({across} affected cases across sites)"
    return ChangeScore(
        name=entry["name"],
        kind=entry["kind"],
        expected_signal=signal,
        detected=first is not None,
        detectors=tuple(sorted({alert.detector for alert, _, _ in hits})),
        streams_detected=len(
            {alert.stream.as_key() for alert, _, _ in site_hits}
            | {
                stream["stream_key"]
                for alert, _, _, _ in pooled_hits
                for stream in entry["affected_streams"]
                if f"site:{stream['stream_key'].split('|')[2]}" in alert.evidence
            }
        ),
        streams_affected=affected,
        delay_cases=first[1] if first else None,
        delay_days=delay([first]) if first else None,
        bound=BOUNDS[signal],
        detail=detail,
        site_delay_days=delay(site_hits),
        pooled_delay_days=delay([(a, c, t) for a, c, t, _ in pooled_hits]),
    )


def _score_dead_letters(
    entry: Mapping[str, Any], output: PipelineOutput, facts: FleetFacts
) -> ChangeScore:
    burst = facts.malformed.get(entry["name"], frozenset())
    lettered = {letter.original for letter in output.dead_letters} & burst
    detected = bool(burst) and lettered == burst
    return ChangeScore(
        name=entry["name"],
        kind=entry["kind"],
        expected_signal=entry["expected_signal"],
        detected=detected,
        detectors=("dead_letter",) if lettered else (),
        streams_detected=0,
        streams_affected=0,
        delay_cases=None,
        delay_days=0.0 if detected else None,
        bound=BOUNDS[entry["expected_signal"]],
        detail=f"{len(lettered)} of {len(burst)} records dead-lettered",
    )


def _good_event(original: bytes) -> GoodEvent | None:
    """(kind, site, event time) of a dead-lettered event, if it reads as one."""
    try:
        event = orjson.loads(original)
        kind = "prediction" if "score" in event or "decision" in event else "followup"
        return kind, str(event["site_id"]), datetime.fromisoformat(event["event_time"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _score_batch(
    entry: Mapping[str, Any], output: PipelineOutput, facts: FleetFacts
) -> ChangeScore:
    """Each bad event dead-lettered alone at its place, every good event of its batches
    counted (accepted, not dead-lettered, its outcome out when outcomes are given)."""
    bad = facts.batch_bad.get(entry["name"], frozenset())
    good = facts.batch_good.get(entry["name"], frozenset())
    from_batches = [d for d in output.dead_letters if d.source_topic == topics.INPUTS]
    lettered = {
        (d.source_index, d.original, d.reason_code)
        for d in from_batches
        if d.source_index is not None
    }
    placed = bad & lettered
    good_lettered = {_good_event(d.original) for d in from_batches} & good
    accepted = {("prediction", p.site_id, p.event_time) for p in output.predictions} & good
    good_predictions = {event for event in good if event[0] == "prediction"}
    checks = [bool(bad), placed == bad, accepted == good_predictions, not good_lettered]
    detail = (
        f"{len(placed)} of {len(bad)} bad events dead-lettered at their place; "
        f"{len(accepted)} of {len(good_predictions)} good predictions accepted, "
        f"{len(good_lettered)} good events dead-lettered"
    )
    if output.outcomes is not None:
        joined = {("prediction", o.stream.site_id, o.prediction_time) for o in output.outcomes}
        checks.append(good_predictions <= joined)
        detail += f", {len(good_predictions & joined)} good cases' outcomes out"
    detected = all(checks)
    return ChangeScore(
        name=entry["name"],
        kind=entry["kind"],
        expected_signal=entry["expected_signal"],
        detected=detected,
        detectors=("dead_letter",) if placed else (),
        streams_detected=0,
        streams_affected=0,
        delay_cases=None,
        delay_days=0.0 if detected else None,
        bound=BOUNDS[entry["expected_signal"]],
        detail=detail,
    )


def _score_backfill(entry: Mapping[str, Any], output: PipelineOutput) -> ChangeScore:
    begin, end = (_time(t) for t in entry["window"])
    marked = {
        p.event_id
        for p in output.predictions
        if p.site_id == entry["site"]
        and p.device_id == entry["device"]
        and p.study_design == "retrospective"
        and begin <= p.event_time < end
    }
    expected = int(entry["cases"])
    detected = expected > 0 and len(marked) >= expected
    return ChangeScore(
        name=entry["name"],
        kind=entry["kind"],
        expected_signal=entry["expected_signal"],
        detected=detected,
        detectors=("study_design",) if marked else (),
        streams_detected=len(entry["affected_streams"]) if detected else 0,
        streams_affected=len(entry["affected_streams"]),
        delay_cases=None,
        delay_days=0.0 if detected else None,
        bound=BOUNDS[entry["expected_signal"]],
        detail=f"{len(marked)} of {expected} cases accepted as retrospective",
    )


def silences(predictions: Sequence[Prediction], start: datetime) -> list[Finding]:
    """Every gap of at least :data:`SILENCE_AFTER` in a site's accepted cases from ``start``
    to the fleet's latest case, as the silence rule would have seen it in event time."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for prediction in predictions:
        if prediction.event_time >= start:
            times[prediction.site_id].append(prediction.event_time)
    if not times:
        return []
    now = max(max(site_times) for site_times in times.values())
    found = []
    for site, site_times in sorted(times.items()):
        ordered = [start, *sorted(site_times), now]
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after - before > SILENCE_AFTER:
                found.append(Finding(site, SILENCE_DETECTOR, before + SILENCE_AFTER))
    return found


def _score_silence(
    entry: Mapping[str, Any], found: list[Finding], explained: set[int]
) -> ChangeScore:
    began = _time(entry["time"])
    matches = [
        (i, finding)
        for i, finding in enumerate(found)
        if finding.where == entry["site"] and finding.detected_at >= began
    ]
    explained.update(i for i, _ in matches)
    first = min(matches, key=lambda match: match[1].detected_at, default=None)
    return ChangeScore(
        name=entry["name"],
        kind=entry["kind"],
        expected_signal=entry["expected_signal"],
        detected=first is not None,
        detectors=(SILENCE_DETECTOR,) if first else (),
        streams_detected=len(entry.get("silenced_streams", {})) if first else 0,
        streams_affected=len(entry.get("silenced_streams", {})),
        delay_cases=None,
        delay_days=_days(first[1].detected_at - began) if first else None,
        bound=BOUNDS[entry["expected_signal"]],
        detail=f"silent from {first[1].detected_at - SILENCE_AFTER:%Y-%m-%d %H:%M}"
        if first
        else "",
    )


def score_run(truth: Mapping[str, Any], facts: FleetFacts, output: PipelineOutput) -> Scorecard:
    """Score every injected change of a run, and list the signals none of them explains."""
    alerts = list({alert.alert_id: alert for alert in output.alerts}.values())
    explained: set[str] = set()
    found = silences(output.predictions, _time(truth["start"]))
    silences_explained: set[int] = set()
    scores = []
    for entry in truth["injections"]:
        signal = entry["expected_signal"]
        if signal in PERFORMANCE_SIGNALS or signal == "unregistered_version":
            scores.append(_score_alerted(entry, alerts, facts, explained))
        elif signal == "dead_letters":
            scores.append(_score_dead_letters(entry, output, facts))
        elif signal == "dead_letters_in_batch":
            scores.append(_score_batch(entry, output, facts))
        elif signal == "retrospective_data":
            scores.append(_score_backfill(entry, output))
        elif signal == "site_silent":
            scores.append(_score_silence(entry, found, silences_explained))
        else:
            raise ValueError(f"injection {entry['name']}: no scoring for signal {signal!r}")
    touched = {s["stream_key"] for s in truth["streams"] if s["injections"]}
    touched_sites = {key.split("|")[2] for key in touched}
    touched_groups = {_group(key) for key in touched}
    alarms = [
        FalseAlarm(
            alert.stream.as_key(),
            alert.detector,
            alert.last_case_time,
            untouched=_group(alert.stream.as_key()) not in touched_groups
            if is_pooled(alert)
            else alert.stream.as_key() not in touched,
        )
        for alert in alerts
        if str(alert.alert_id) not in explained
    ]
    alarms += [
        FalseAlarm(f.where, f.detector, f.detected_at, untouched=f.where not in touched_sites)
        for i, f in enumerate(found)
        if i not in silences_explained
    ]
    return Scorecard(
        tuple(scores),
        tuple(sorted(alarms, key=lambda a: (a.detected_at, a.where))),
        alerts=len(alerts),
    )
