"""Bad input never loses or corrupts good data: malformed events through a real worker on
the real broker, signed by a registered site key like a broken collector's records.

Each kind here once did harm: an event dated year 9999 expired every open case of its
partition; an event without ``schema_version`` (or with ``true``) was counted and joined;
a 2 MB record crashed the join agent and was lost without a dead letter; a deeply nested
unsigned record was not counted as unauthentic. Then every field of both case contracts,
broken in every way its published JSON Schema refuses (tests/malformed_events.py), and the
simulator's bad events inside a correctly signed batch (simulator/malformed.py).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors.batching import BatchEntry
from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.authenticity import KEY_ID_HEADER, SIGNATURE_HEADER
from postmarket.contracts import DeadLetter, encode
from postmarket.contracts.batches import decode_batch
from simulator.malformed import BATCH_DEFECTS, assemble_batch, bad_batch_events
from streams.retention import case_partition
from tests.factories import make_followup, make_prediction
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    SignedProducer,
    metric_value,
    outcomes_of,
    read_all,
    read_topic,
    send_raw,
    unique_site,
    valid_events,
    wait_for_metric,
    wait_until_caught_up,
)
from tests.malformed_events import malformations

pytestmark = pytest.mark.integration
CASE_TOPICS = [topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS]


@pytest.fixture(scope="module")
def worker(kafka_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    """One worker of its own for this module, sweeping retention after every record."""
    home = tmp_path_factory.mktemp("bad-input")
    with own_worker(
        kafka_stack.settings, home, "bad-input", skip=CASE_TOPICS, join_sweep_interval_s=0.0
    ) as running:
        yield running


def _cases_on_one_partition(how_many: int, partitions: int) -> list[str]:
    first = f"c-{uuid.uuid4().hex}"
    wanted = case_partition(first, partitions)
    cases = [first]
    while len(cases) < how_many:
        case = f"c-{uuid.uuid4().hex}"
        if case_partition(case, partitions) == wanted:
            cases.append(case)
    return cases


def _dead_letters(bootstrap: str, originals: set[bytes]) -> dict[bytes, DeadLetter]:
    """The dead letter of each of ``originals`` (waiting until every one is there)."""

    def mine(records: list[Any]) -> dict[bytes, DeadLetter]:
        return {d.original: d for d in valid_events(records, DeadLetter) if d.original in originals}

    def all_there(records: list[Any]) -> bool:
        return len(mine(records)) >= len(originals)

    return mine(read_topic(bootstrap, topics.DEADLETTER, all_there, timeout_s=120.0))


def test_an_event_dated_year_9999_expires_no_other_case(worker: LocalWorker) -> None:
    settings = worker.settings
    bootstrap, site = settings.kafka_bootstrap, unique_site()
    *waiting, far_future, wrong_clock = _cases_on_one_partition(8, settings.topic_partitions)
    now = datetime.now(UTC)
    predictions = [
        make_prediction(case_pseudonym=case, site_id=site, event_time=now - timedelta(hours=1))
        for case in waiting
    ]
    refused = [
        make_prediction(
            case_pseudonym=far_future, site_id=site, event_time=datetime(9999, 12, 31, tzinfo=UTC)
        ),
        # A collector whose clock is three days fast stamps its records wrong too.
        make_prediction(
            case_pseudonym=wrong_clock, site_id=site, event_time=now + timedelta(days=3)
        ),
    ]
    with SignedProducer(bootstrap) as producer:
        producer.deliver([*predictions, *refused])
        letters = _dead_letters(bootstrap, {encode(p) for p in refused})
        # Only once the join has read the far-future events does the truth arrive.
        producer.deliver(
            [make_followup(case_pseudonym=case, site_id=site) for case in waiting]
            + [
                make_followup(case_pseudonym=case, site_id=site)
                for case in (far_future, wrong_clock)
            ]
        )

    outcomes = outcomes_of(bootstrap, {p.event_id for p in predictions}, len(waiting))
    assert len(outcomes) == len(waiting) == 6
    assert {letter.reason_code for letter in letters.values()} == {"impossible_value"}
    assert all("event_time" in letter.reason for letter in letters.values())
    wait_until_caught_up(bootstrap, settings.worker_id, CASE_TOPICS)
    url = worker.metrics_url
    assert metric_value(url, "postmarket_predictions_expired_total", site_id=site) == 0
    assert metric_value(url, "postmarket_predictions_total", site_id=site) == len(waiting)
    assert metric_value(url, "postmarket_followups_unmatched_total") == 0


def test_an_event_must_state_its_schema_version_as_an_integer(worker: LocalWorker) -> None:
    bootstrap, site = worker.settings.kafka_bootstrap, unique_site()
    case = f"c-{uuid.uuid4().hex}"
    valid = json.loads(encode(make_prediction(case_pseudonym=case, site_id=site)))
    unstated = {k: v for k, v in valid.items() if k != "schema_version"}
    bad = [
        {**unstated, "event_id": str(uuid.uuid4())},
        {**valid, "event_id": str(uuid.uuid4()), "schema_version": True},
        {**valid, "event_id": str(uuid.uuid4()), "schema_version": 10**30},
    ]
    originals = [json.dumps(event).encode() for event in bad]
    send_raw(bootstrap, topics.PREDICTIONS, [(case.encode(), value) for value in originals])
    with SignedProducer(bootstrap) as producer:
        producer.deliver([make_followup(case_pseudonym=case, site_id=site)])

    letters = _dead_letters(bootstrap, set(originals))
    codes = [letters[value].reason_code for value in originals]
    assert codes == ["schema", "schema", "unknown_schema_version"]
    assert all("schema_version" in letters[value].reason for value in originals)
    wait_until_caught_up(bootstrap, worker.settings.worker_id, CASE_TOPICS)
    assert metric_value(worker.metrics_url, "postmarket_predictions_total", site_id=site) == 0
    assert metric_value(worker.metrics_url, "postmarket_outcomes_total", site_id=site) == 0


def test_a_2_mb_record_is_dead_lettered_and_the_join_goes_on(worker: LocalWorker) -> None:
    bootstrap, site = worker.settings.kafka_bootstrap, unique_site()
    huge = json.dumps({"site_id": site, "padding": "x" * 2_000_000}).encode()
    # Compressed, it is within the broker's limits, as it was from the auditor's producer.
    send_raw(
        bootstrap,
        topics.PREDICTIONS,
        [(b"c-huge", huge)],
        compression_type="gzip",
        max_request_size=4 * 1024 * 1024,
    )
    prediction = make_prediction(case_pseudonym=f"c-{uuid.uuid4().hex}", site_id=site)
    with SignedProducer(bootstrap) as producer:
        producer.deliver(
            [prediction, make_followup(case_pseudonym=prediction.case_pseudonym, site_id=site)]
        )

    assert len(outcomes_of(bootstrap, {prediction.event_id}, 1)) == 1
    cut = huge[: 128 * 1024]
    letter = _dead_letters(bootstrap, {cut})[cut]
    assert (letter.reason_code, letter.original_size) == ("schema", len(huge))
    assert letter.original_sha256 == hashlib.sha256(huge).hexdigest()
    assert "exceeds" in letter.reason


FAILURES = ("unsigned", "unknown_key")


def test_deeply_nested_unsigned_and_forged_records_are_counted_unauthentic(
    worker: LocalWorker,
) -> None:
    bootstrap, url = worker.settings.kafka_bootstrap, worker.metrics_url
    nested = (
        b'{"site_id": '
        + b"[" * 20_000
        + b"]" * 20_000
        + b', "n": "'
        + uuid.uuid4().hex.encode()
        + b'"}'
    )
    forged = nested.replace(b'"n"', b'"m"')
    unauthentic = "postmarket_events_unauthentic_total"
    labels = {failure: {"reason": failure, "site_id": "unknown"} for failure in FAILURES}
    before = {failure: metric_value(url, unauthentic, **labels[failure]) for failure in FAILURES}
    send_raw(bootstrap, topics.PREDICTIONS, [(b"c-nested", nested)], signed=False)
    headers = [(KEY_ID_HEADER, b"ed25519-0000000000000000"), (SIGNATURE_HEADER, b"s" * 64)]
    send_raw(bootstrap, topics.FOLLOWUPS, [(b"c-nested", forged)], headers=headers)

    letters = _dead_letters(bootstrap, {nested, forged})
    assert {letter.reason_code for letter in letters.values()} == {"authenticity"}
    for failure in FAILURES:  # counted, under the bounded label of an unknown site
        wait_for_metric(url, unauthentic, before[failure] + 1, reason=failure, site_id="unknown")


def test_every_schema_breaking_field_is_dead_lettered_whole_and_counts_nowhere(
    worker: LocalWorker,
) -> None:
    """Each prediction broken one way, with a valid follow-up for its case; each follow-up
    broken one way, with a valid prediction for its case: no outcome may come of any."""
    bootstrap, site = worker.settings.kafka_bootstrap, unique_site()
    raw: list[tuple[str, bytes, bytes]] = []  # (topic, key, value)
    valid: list[Any] = []
    for topic, build, partner in (
        (topics.PREDICTIONS, make_prediction, make_followup),
        (topics.FOLLOWUPS, make_followup, make_prediction),
    ):
        for malformation in malformations(topic):
            case = f"c-{uuid.uuid4().hex}"
            event = json.loads(encode(build(case_pseudonym=case, site_id=site)))
            broken = json.dumps(malformation.apply(event)).encode()
            raw.append((topic, case.encode(), broken))
            valid.append(partner(case_pseudonym=case, site_id=site))
    for topic in CASE_TOPICS:
        send_raw(bootstrap, topic, [(key, value) for t, key, value in raw if t == topic])
    with SignedProducer(bootstrap) as producer:
        producer.deliver(valid)

    letters = _dead_letters(bootstrap, {value for _, _, value in raw})
    assert len(letters) == len(raw) > 200
    for topic, _, value in raw:
        letter = letters[value]  # byte for byte, from the topic it was read on
        assert letter.source_topic == topic
        assert letter.reason_code != "internal_error", letter.reason
    wait_until_caught_up(bootstrap, worker.settings.worker_id, CASE_TOPICS)
    url = worker.metrics_url
    partners = sum(1 for event in valid if not hasattr(event, "label"))
    assert metric_value(url, "postmarket_predictions_total", site_id=site) == partners
    assert metric_value(url, "postmarket_outcomes_total", site_id=site) == 0


def test_bad_events_inside_a_signed_batch_are_dead_lettered_at_their_place_and_the_rest_counts(
    worker: LocalWorker,
) -> None:
    """The simulator's malformed batch: four settled cases of the site with one bad event of
    every kind among them, signed by the site's registered key. Each refused event is
    dead-lettered alone with its index; the repeated event_id counts once; every case joins."""
    bootstrap, url, site = worker.settings.kafka_bootstrap, worker.metrics_url, unique_site()
    cases = [f"c-{uuid.uuid4().hex}" for _ in range(4)]
    predictions = [make_prediction(case_pseudonym=case, site_id=site) for case in cases]
    good: list[BatchEntry] = []
    for prediction in predictions:
        followup = make_followup(case_pseudonym=prediction.case_pseudonym, site_id=site)
        good.append(("prediction", str(prediction.event_id), encode(prediction)))
        good.append(("followup", str(followup.event_id), encode(followup)))
    bad = bad_batch_events(f"batch-{site}", site, unique_site(), len(good), datetime.now(UTC))
    value = assemble_batch(site, good, bad)
    refused = {b.value: b for b in bad if b.value is not None and b.expected_reason is not None}
    duplicate = "postmarket_events_duplicate_total"
    duplicates_before = metric_value(url, duplicate, topic=topics.INPUTS)
    send_raw(bootstrap, topics.INPUTS, [(site.encode(), value)])

    letters = _dead_letters(bootstrap, set(refused))
    assert len(letters) == len(BATCH_DEFECTS) - 1 == 4
    for original, expected in refused.items():
        letter = letters[original]
        assert (letter.source_topic, letter.source_index) == (topics.INPUTS, expected.index)
        assert letter.reason_code == expected.expected_reason, letter.reason
    outcomes = outcomes_of(bootstrap, {p.event_id for p in predictions}, len(cases))
    assert sorted(o.case_pseudonym for o in outcomes) == sorted(cases)
    wait_until_caught_up(bootstrap, worker.settings.worker_id, CASE_TOPICS)
    assert metric_value(url, "postmarket_predictions_total", site_id=site) == len(cases)
    assert metric_value(url, duplicate, topic=topics.INPUTS) >= duplicates_before + 1
    good_events = {encode(e.event) for e in decode_batch(value).elements if e.event is not None}
    from_this_batch = [
        d
        for d in valid_events(read_all(bootstrap, topics.DEADLETTER), DeadLetter)
        if d.original in good_events
    ]
    assert from_this_batch == []  # the repeat included: a resend is not refused
