"""Signed batches (``pms.inputs.v2``) through a real worker on the real broker: each event
counts once or is dead-lettered alone, and v1 and v2 collectors sending the same site's
cases at once give the outcomes an all-v2 fleet gives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.contracts import DeadLetter, FollowUp, Prediction, encode
from postmarket.contracts.batches import EventKind, encode_batch
from tests.factories import make_followup, make_prediction
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    SignedProducer,
    metric_value,
    outcomes_of,
    read_topic,
    send_raw,
    signers,
    unique_site,
    valid_events,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration
CASE_TOPICS = [topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS]


@pytest.fixture(scope="module")
def worker(kafka_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    home = tmp_path_factory.mktemp("signed-batches")
    with own_worker(kafka_stack.settings, home, "batches", skip=CASE_TOPICS) as running:
        yield running


def entries(*events: Prediction | FollowUp) -> list[tuple[EventKind, str, bytes]]:
    return [
        ("prediction" if isinstance(e, Prediction) else "followup", str(e.event_id), encode(e))
        for e in events
    ]


def send_batches(bootstrap: str, site: str, *batches: list[tuple[EventKind, str, bytes]]) -> None:
    """Each batch as one record keyed by its site, signed by the site's registered key."""
    send_raw(bootstrap, topics.INPUTS, [(site.encode(), encode_batch(site, b)) for b in batches])


def dead_letters_of(bootstrap: str, site_records: int, originals: set[bytes]) -> list[DeadLetter]:
    def mine(records: list[Any]) -> list[DeadLetter]:
        return [d for d in valid_events(records, DeadLetter) if d.original in originals]

    found = read_topic(
        bootstrap, topics.DEADLETTER, lambda r: len(mine(r)) >= site_records, timeout_s=120.0
    )
    return mine(found)


def test_a_batch_with_a_foreign_a_malformed_and_a_duplicate_event_counts_the_good_ones_once(
    worker: LocalWorker,
) -> None:
    bootstrap, site = worker.settings.kafka_bootstrap, unique_site()
    cases = [f"c-{uuid.uuid4().hex}" for _ in range(6)]
    predictions = [make_prediction(case_pseudonym=c, site_id=site) for c in cases]
    followups = [make_followup(case_pseudonym=c, site_id=site) for c in cases]
    # Of another site, inside this site's batch: a collector cannot vouch for it.
    foreign = make_prediction(case_pseudonym=f"c-{uuid.uuid4().hex}", site_id=unique_site())
    malformed = orjson.loads(encode(make_prediction(case_pseudonym=cases[0], site_id=site)))
    malformed["score"] = 1.7
    bad_bytes = orjson.dumps(malformed)
    first = [*entries(*predictions[:3]), ("prediction", "bad", bad_bytes), *entries(foreign)]
    # The second batch repeats a prediction of the first (a resend in another grouping).
    second = [*entries(predictions[2], *predictions[3:]), *entries(*followups)]
    send_batches(bootstrap, site, first, second)

    outcomes = outcomes_of(bootstrap, {p.event_id for p in predictions}, len(cases))
    assert sorted(o.case_pseudonym for o in outcomes) == sorted(cases)
    letters = dead_letters_of(bootstrap, 2, {bad_bytes, encode(foreign)})
    assert sorted((d.source_index, d.reason_code) for d in letters) == [
        (3, "impossible_value"),
        (4, "impossible_value"),
    ]
    assert {d.source_topic for d in letters} == {topics.INPUTS}
    wait_until_caught_up(bootstrap, worker.settings.worker_id, CASE_TOPICS)
    url = worker.metrics_url
    assert metric_value(url, "postmarket_predictions_total", site_id=site) == len(cases)
    assert metric_value(url, "postmarket_events_duplicate_total", topic=topics.INPUTS) >= 1


def test_a_batch_signed_by_another_sites_key_is_refused_whole(worker: LocalWorker) -> None:
    bootstrap, site, impostor = worker.settings.kafka_bootstrap, unique_site(), unique_site()
    prediction = make_prediction(case_pseudonym=f"c-{uuid.uuid4().hex}", site_id=site)
    value = encode_batch(site, entries(prediction))
    headers = signers(bootstrap).register(impostor).sign(topics.INPUTS, site.encode(), value)
    send_raw(bootstrap, topics.INPUTS, [(site.encode(), value)], headers=headers)

    [letter] = dead_letters_of(bootstrap, 1, {value})
    assert (letter.reason_code, letter.source_index) == ("authenticity", None)


def test_v1_and_v2_collectors_of_one_site_at_once_give_every_case_one_outcome(
    worker: LocalWorker,
) -> None:
    """Half the cases' predictions through v1 and their follow-ups through v2, the other
    half the other way round: the join sees every event of the site in one partition."""
    bootstrap, site = worker.settings.kafka_bootstrap, unique_site()
    cases = [f"c-{uuid.uuid4().hex}" for _ in range(40)]
    predictions = [make_prediction(case_pseudonym=c, site_id=site) for c in cases]
    followups = [
        make_followup(case_pseudonym=c, site_id=site, label="positive" if i % 3 else "negative")
        for i, c in enumerate(cases)
    ]
    half = len(cases) // 2
    with SignedProducer(bootstrap) as producer:
        producer.deliver([*predictions[:half], *followups[half:]])
    send_batches(bootstrap, site, entries(*predictions[half:], *followups[:half]))

    outcomes = outcomes_of(bootstrap, {p.event_id for p in predictions}, len(cases))
    by_case = {o.case_pseudonym: o for o in outcomes}
    assert len(outcomes) == len(by_case) == len(cases)
    assert {c: by_case[c].label for c in cases} == {f.case_pseudonym: f.label for f in followups}
    wait_until_caught_up(bootstrap, worker.settings.worker_id, CASE_TOPICS)
    url = worker.metrics_url
    assert metric_value(url, "postmarket_predictions_total", site_id=site) == len(cases)
