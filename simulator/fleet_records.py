"""Every record a simulated fleet sends, in arrival order: each site's live cases and
follow-ups, retrospective backfills, and the malformed injections (raw v1 records, and
v2 batches holding bad events among good ones)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from simulator.fleet import (
    SECONDS_PER_DAY,
    CaseContext,
    MalformedBatchRecord,
    MalformedRecord,
    Sequenced,
    SimulatedCase,
    SimulatedFollowUp,
    SimulatedRecord,
    poisson,
    silence_day,
    simulate_case,
    simulate_followups,
)
from simulator.heterogeneity import site_performance
from simulator.malformed import bad_batch_events
from simulator.scenario import (
    Backfill,
    MalformedBatch,
    MalformedBurst,
    Scenario,
    Site,
)


def site_records(scenario: Scenario, site: Site) -> Iterator[SimulatedRecord]:
    """The live cases and follow-ups of one site over the scenario, day by day."""
    rng = random.Random(f"{scenario.seed}|site|{site.id}")  # noqa: S311 - simulation
    counters = dict.fromkeys(site.daily_cases, 0)
    contexts = {
        device_id: CaseContext(
            scenario,
            site,
            scenario.device(device_id),
            f"{site.id}|{device_id}",
            "prospective",
            site_performance(scenario, site, scenario.device(device_id)),
        )
        for device_id in site.daily_cases
    }
    for day in range(scenario.days):
        day_start = scenario.start + timedelta(days=day)
        for device_id, mean in sorted(site.daily_cases.items()):
            context = contexts[device_id]
            device = context.device
            seconds = sorted(rng.randrange(SECONDS_PER_DAY) for _ in range(poisson(rng, mean)))
            for second in seconds:
                counters[device_id] += 1
                time = day_start + timedelta(seconds=second)
                case = simulate_case(rng, context, counters[device_id], day, time)
                yield case
                yield from simulate_followups(rng, case, device.ground_truth, scenario.start)


def backfill_records(scenario: Scenario, backfill: Backfill) -> Iterator[SimulatedRecord]:
    """A site's retrospective cases of [from_day, to_day), all arriving at the upload."""
    rng = random.Random(f"{scenario.seed}|backfill|{backfill.name}")  # noqa: S311
    site, device = scenario.site(backfill.site), scenario.device(backfill.device)
    upload = scenario.start + timedelta(days=backfill.day, hours=12)
    context = CaseContext(
        scenario,
        site,
        device,
        f"{site.id}|{device.id}|{backfill.name}",
        "retrospective",
        site_performance(scenario, site, device),
        upload,
    )
    number = 0
    for day in range(backfill.from_day, backfill.to_day):
        day_start = scenario.start + timedelta(days=day)
        count = poisson(rng, site.daily_cases.get(device.id, 0.0))
        for second in sorted(rng.randrange(SECONDS_PER_DAY) for _ in range(count)):
            number += 1
            case = simulate_case(rng, context, number, day, day_start + timedelta(seconds=second))
            yield replace(case, injections=(*case.injections, backfill.name))
            yield from simulate_followups(rng, case, device.ground_truth, scenario.start, upload)


def malformed_records(scenario: Scenario, burst: MalformedBurst) -> Iterator[MalformedRecord]:
    """``burst.count`` invalid records, cycling through the ways input goes wrong."""
    from simulator.malformed import malformed_value

    start = scenario.start + timedelta(days=burst.day, hours=12)
    for index in range(burst.count):
        time = start + timedelta(seconds=index)
        defect, value = malformed_value(index, burst.site, time)
        yield MalformedRecord(
            site_id=burst.site,
            topic=burst.topic,
            key=f"malformed-{burst.name}-{index}".encode(),
            value=value,
            defect=defect,
            injection=burst.name,
            event_time=time,
            arrival_time=time,
            day=burst.day,
        )


def malformed_batch_records(
    scenario: Scenario, injection: MalformedBatch
) -> Iterator[MalformedBatchRecord]:
    """``injection.count`` batches of ``injection.site``, an hour apart from noon of its day,
    each of ``injection.good_cases`` in-control cases of the site's device (drawn as its live
    cases are, from a generator of the injection's own) with one bad event of every kind."""
    site = scenario.site(injection.site)
    device = scenario.device(injection.device or sorted(site.daily_cases)[0])
    rng = random.Random(f"{scenario.seed}|malformed-batch|{injection.name}")  # noqa: S311
    context = CaseContext(
        scenario,
        site,
        device,
        f"{site.id}|{injection.name}",
        "prospective",
        site_performance(scenario, site, device),
    )
    other_site = next((s.id for s in scenario.sites if s.id != site.id), f"{site.id}-other")
    noon = scenario.start + timedelta(days=injection.day, hours=12)
    good = injection.good_cases
    for number in range(injection.count):
        sent = noon + timedelta(hours=number)
        times = [sent - timedelta(minutes=2 * (good - i)) for i in range(good)]
        cases = tuple(
            simulate_case(rng, context, number * good + i + 1, injection.day, time)
            for i, time in enumerate(times)
        )
        followups = tuple(_decisive_followup(case, scenario.start, sent) for case in cases)
        record = MalformedBatchRecord(
            site_id=site.id,
            injection=injection.name,
            number=number,
            cases=cases,
            followups=followups,
            bad=(),
            event_time=sent,
            arrival_time=sent,
            day=injection.day,
        )
        yield replace(
            record,
            bad=bad_batch_events(
                f"{scenario.seed}|{record.name}", site.id, other_site, 2 * good, sent
            ),
        )


def _decisive_followup(case: SimulatedCase, start: datetime, sent: datetime) -> SimulatedFollowUp:
    """Pathology for a positive case, follow-up imaging for a negative one: final on arrival."""
    return SimulatedFollowUp(
        site_id=case.site_id,
        study_uid=case.study_uid,
        event_time=case.event_time + timedelta(minutes=1),
        arrival_time=sent,
        day=(sent - start).days,
        label=case.label,
        source="pathology" if case.label == "positive" else "follow_up_imaging",
        study_design=case.study_design,
    )


def fleet_records(scenario: Scenario) -> list[SimulatedRecord]:
    """Every record the fleet sends, in arrival order (event order for live data)."""
    sequenced: list[Sequenced] = []

    def add(records: Iterator[SimulatedRecord]) -> None:
        for record in records:
            silent_from = silence_day(scenario, record.site_id)
            if silent_from is not None and record.arrival_time >= scenario.start + timedelta(
                days=silent_from
            ):
                continue
            if record.arrival_time >= scenario.start + timedelta(days=scenario.days):
                continue  # the run ends; later follow-ups never arrive within it
            sequenced.append(
                Sequenced(record.arrival_time, record.event_time, len(sequenced), record)
            )

    for site in scenario.sites:
        add(site_records(scenario, site))
    for injection in scenario.injections:
        if isinstance(injection, Backfill):
            add(backfill_records(scenario, injection))
        elif isinstance(injection, MalformedBurst):
            add(malformed_records(scenario, injection))
        elif isinstance(injection, MalformedBatch):
            add(malformed_batch_records(scenario, injection))
    sequenced.sort(key=Sequenced.key)
    return [item.record for item in sequenced]
