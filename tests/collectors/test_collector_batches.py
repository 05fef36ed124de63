"""The collector sends v2 signed batches: bounded by count and bytes, one signature each,
resent identically, acknowledged whole; and v1, one record per event, when set."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.batching import (
    BatchEntry,
    BatchRefused,
    batch_bytes,
    batch_records,
    contract_topics,
    cut_batches,
)
from collectors.delivery import DeliveryLoop
from collectors.outbox import Outbox, PendingEvent
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from collectors.settings import CollectorConfigError, load_settings
from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from postmarket.contracts import FollowUp, Prediction, encode
from postmarket.contracts.batches import MAX_BATCH_BYTES, encode_batch
from postmarket.contracts.events import MAX_BATCH_EVENTS
from tests.collectors.batch_records import batch_events
from tests.collectors.test_collector_outbox import FakeBroker
from tests.factories import make_followup, make_prediction

SITE = "site-a"
SIGNING = SigningKey.from_seed(bytes(range(32)))


class RecordingBroker(FakeBroker):
    """A :class:`FakeBroker` that also keeps every attempt, acknowledged or not."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__(failures)
        self.attempts: list[list[EncodedEvent]] = []

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        self.attempts.append(list(records))
        return super().deliver_encoded(records)


def fill(outbox: Outbox, count: int, site_id: str = SITE) -> list[Prediction | FollowUp]:
    """``count`` events of ``site_id``, predictions and follow-ups alternating."""
    events: list[Prediction | FollowUp] = [
        make_prediction(site_id=site_id, case_pseudonym=f"c-{i:04d}")
        if i % 2 == 0
        else make_followup(site_id=site_id, case_pseudonym=f"c-{i:04d}")
        for i in range(count)
    ]
    for event in events:
        outbox.put(event)
    return events


def carried_ids(records: Sequence[EncodedEvent]) -> list[list[str]]:
    """The event ids each batch record carries, in order (decoded as a worker would)."""
    return [
        [str(event.event_id) for event in batch_events(record.key, record.value)]
        for record in records
    ]


def entry(pending: PendingEvent) -> BatchEntry:
    kind = "prediction" if pending.record.topic == topics.PREDICTIONS else "followup"
    return kind, pending.event_id, pending.record.value


def entries(count: int, size: int = 300) -> list[BatchEntry]:
    return [("prediction", f"e-{i}", b'{"x":"' + b"a" * size + b'"}') for i in range(count)]


# --- planning: bounds -------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["prediction", "followup"]), st.binary(max_size=200)),
        min_size=1,
        max_size=20,
    )
)
def test_the_planned_size_is_the_encoded_size(parts: list[tuple[str, bytes]]) -> None:
    batch: list[BatchEntry] = [
        ("prediction" if kind == "prediction" else "followup", f"e-{i}", raw)
        for i, (kind, raw) in enumerate(parts)
    ]
    assert batch_bytes(SITE, batch) == len(encode_batch(SITE, batch))


def test_a_batch_holds_at_most_max_batch_events() -> None:
    groups = cut_batches(SITE, entries(MAX_BATCH_EVENTS + 1, 10), MAX_BATCH_EVENTS, 10**9)
    assert [len(group) for group in groups] == [MAX_BATCH_EVENTS, 1]


def test_exactly_max_batch_events_fit_in_one_batch() -> None:
    groups = cut_batches(SITE, entries(MAX_BATCH_EVENTS, 10), MAX_BATCH_EVENTS, 10**9)
    assert [len(group) for group in groups] == [MAX_BATCH_EVENTS]


def test_a_batch_of_exactly_the_byte_bound_is_one_batch() -> None:
    events = entries(7)
    bound = len(encode_batch(SITE, events[:5]))
    assert [len(g) for g in cut_batches(SITE, events, MAX_BATCH_EVENTS, bound)] == [5, 2]
    assert [len(g) for g in cut_batches(SITE, events, MAX_BATCH_EVENTS, bound - 1)] == [4, 3]


def test_every_batch_stays_within_the_default_byte_bound() -> None:
    big = entries(MAX_BATCH_EVENTS, 4000)
    groups = cut_batches(SITE, big, MAX_BATCH_EVENTS, MAX_BATCH_BYTES)
    assert len(groups) > 1 and sum(map(len, groups)) == MAX_BATCH_EVENTS
    assert all(len(encode_batch(SITE, group)) <= MAX_BATCH_BYTES for group in groups)
    assert len(encode_batch(SITE, groups[0] + groups[1][:1])) > MAX_BATCH_BYTES


def test_an_event_larger_than_the_bound_alone_is_refused() -> None:
    with pytest.raises(BatchRefused, match="alone"):
        cut_batches(SITE, entries(1, 2000), MAX_BATCH_EVENTS, 1000)


# --- planning: which events, which site -------------------------------------------------------


def pending_of(events: Sequence[Prediction | FollowUp]) -> list[PendingEvent]:
    topic = {Prediction: topics.PREDICTIONS, FollowUp: topics.FOLLOWUPS}
    return [
        PendingEvent(
            str(e.event_id),
            EncodedEvent(topic[type(e)], e.case_pseudonym.encode(), encode(e)),
            0.0,
            0,
        )
        for e in events
    ]


def test_a_batch_is_keyed_by_site_and_carries_each_event_with_its_kind() -> None:
    events: list[Prediction | FollowUp] = [
        make_prediction(site_id=SITE),
        make_followup(site_id=SITE),
    ]
    [outgoing] = batch_records(pending_of(events), SITE, more_waiting=False)
    assert (outgoing.record.topic, outgoing.record.key) == (topics.INPUTS, SITE.encode())
    assert batch_events(outgoing.record.key, outgoing.record.value) == events
    assert [p.event_id for p in outgoing.events] == [str(e.event_id) for e in events]


def test_an_event_of_another_site_is_refused() -> None:
    events = [make_prediction(site_id=SITE), make_prediction(site_id="site-b")]
    with pytest.raises(BatchRefused, match="site-b"):
        batch_records(pending_of(events), SITE, more_waiting=False)


def test_without_a_configured_site_the_oldest_events_site_is_every_events_site() -> None:
    events = [make_prediction(site_id="site-b"), make_prediction(site_id=SITE)]
    with pytest.raises(BatchRefused, match="one outbox serves one site"):
        batch_records(pending_of(events), None, more_waiting=False)


def test_a_row_that_is_not_an_event_is_refused() -> None:
    row = PendingEvent("x", EncodedEvent(topics.PREDICTIONS, b"k", b"\x00not json"), 0.0, 0)
    with pytest.raises(BatchRefused, match="not a JSON event"):
        batch_records([row], SITE, more_waiting=False)


def test_a_backlog_leaves_a_last_partial_batch_for_the_next_round() -> None:
    events = pending_of([make_prediction(site_id=SITE) for _ in range(10)])
    bound = len(encode_batch(SITE, [("prediction", "x", events[0].record.value)] * 4))
    backlog = batch_records(events, SITE, more_waiting=True, max_bytes=bound)
    live = batch_records(events, SITE, more_waiting=False, max_bytes=bound)
    assert [len(r.events) for r in backlog] == [4, 4]
    assert [len(r.events) for r in live] == [4, 4, 2]


def test_each_contract_names_the_topics_it_writes() -> None:
    assert contract_topics("v2") == (topics.INPUTS,)
    assert contract_topics("v1") == (topics.PREDICTIONS, topics.FOLLOWUPS)


# --- the delivery loop ------------------------------------------------------------------------


def test_a_live_collector_sends_what_is_pending_at_once(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        events = fill(outbox, 3)
        assert DeliveryLoop(outbox, lambda: broker, site_id=SITE).send_batch() == 3
    assert carried_ids(broker.received) == [[str(e.event_id) for e in events]]


def test_a_backlog_leaves_in_full_batches(tmp_path: Path) -> None:
    broker = FakeBroker()
    count = 2 * MAX_BATCH_EVENTS + 1
    with Outbox(tmp_path / "o.db") as outbox:
        events = fill(outbox, count)
        assert DeliveryLoop(outbox, lambda: broker, site_id=SITE).drain() == count
        assert outbox.depth() == 0
    carried = carried_ids(broker.received)
    assert [len(ids) for ids in carried] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 1]
    assert [i for ids in carried for i in ids] == [str(e.event_id) for e in events]


def test_a_backlog_bounded_by_bytes_leaves_in_batches_full_to_the_bound(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        fill(outbox, 25)
        # Exactly the first 7 events fit (the events' lengths repeat every two: predictions
        # and follow-ups alternate, and their ids and pseudonyms have fixed lengths).
        bound = batch_bytes(SITE, [entry(p) for p in outbox.pending(7)])
        loop = DeliveryLoop(outbox, lambda: broker, batch_size=10, site_id=SITE)
        loop.max_batch_bytes = bound
        assert loop.drain() == 25
    assert [len(ids) for ids in carried_ids(broker.received)] == [7, 7, 7, 4]
    assert all(len(record.value) <= bound for record in broker.received)


def test_every_event_of_a_batch_is_audited_with_the_batch_record(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        events = fill(outbox, 4)
        DeliveryLoop(outbox, lambda: broker, site_id=SITE).drain()
        audit = outbox.audit_entries()
    assert {a.event_id for a in audit} == {str(e.event_id) for e in events}
    assert {(a.topic, a.partition, a.offset) for a in audit} == {(topics.INPUTS, 0, 0)}
    assert {a.case_pseudonym for a in audit} == {e.case_pseudonym for e in events}


def test_a_batch_is_signed_once_over_its_record(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        fill(outbox, 5)
        DeliveryLoop(outbox, lambda: broker, signer=SIGNING, site_id=SITE).drain()
    [record] = broker.received
    assert [name for name, _ in record.headers] == ["pms-key-id", "pms-signature"]
    keyring = SiteKeyring([SIGNING.registration(SITE)])
    assert keyring.verify(record.headers, record.topic, record.key, record.value).site_id == SITE


def test_a_failed_delivery_leaves_every_event_of_the_batch_pending(tmp_path: Path) -> None:
    broker = FakeBroker(failures=1)
    with Outbox(tmp_path / "o.db") as outbox:
        events = fill(outbox, 6)
        loop = DeliveryLoop(outbox, lambda: broker, site_id=SITE)
        with pytest.raises(DeliveryError, match="6 events not delivered"):
            loop.send_batch()
        pending = outbox.pending()
        assert [p.event_id for p in pending] == [str(e.event_id) for e in events]
        assert {p.attempts for p in pending} == {1}
        assert outbox.audit_entries() == []


def test_a_resent_batch_is_the_same_record_even_if_events_arrived_meanwhile(
    tmp_path: Path,
) -> None:
    broker = RecordingBroker(failures=1)
    with Outbox(tmp_path / "o.db") as outbox:
        fill(outbox, 3)
        loop = DeliveryLoop(outbox, lambda: broker, signer=SIGNING, site_id=SITE)
        with pytest.raises(DeliveryError):
            loop.send_batch()
        fill(outbox, 2)
        assert loop.send_batch() == 3
        assert loop.send_batch() == 2
    failed, resent, later = broker.attempts
    assert resent == failed and len(failed) == 1
    assert broker.received == [*failed, *later]


def test_after_a_restart_the_same_pending_events_make_the_same_record(tmp_path: Path) -> None:
    broker = RecordingBroker(failures=1)
    with Outbox(tmp_path / "o.db") as outbox:
        fill(outbox, 3)
        with pytest.raises(DeliveryError):
            DeliveryLoop(outbox, lambda: broker, signer=SIGNING, site_id=SITE).send_batch()
        DeliveryLoop(outbox, lambda: broker, signer=SIGNING, site_id=SITE).drain()
    assert broker.attempts[0] == broker.attempts[1] == broker.received


def test_events_of_another_site_are_refused_loudly_and_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox, caplog.at_level(logging.ERROR):
        fill(outbox, 2, site_id="site-b")
        loop = DeliveryLoop(outbox, lambda: broker, site_id=SITE)
        with pytest.raises(DeliveryError, match="site-b"):
            loop.send_batch()
        assert outbox.depth() == 2
    assert broker.received == []
    assert "site-b" in caplog.text and "site_id" in caplog.text


def test_the_v1_contract_sends_each_event_as_it_is_stored(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        fill(outbox, 3)
        stored = [p.record for p in outbox.pending()]
        DeliveryLoop(outbox, lambda: broker, input_contract="v1").drain()
    assert broker.received == stored
    assert [r.topic for r in stored] == [topics.PREDICTIONS, topics.FOLLOWUPS, topics.PREDICTIONS]


def test_waiting_v1_rows_leave_as_a_batch_after_the_upgrade(tmp_path: Path) -> None:
    """Rows stored by a v1 collector are the same rows: an upgraded one batches them."""
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        events = fill(outbox, 2)
        v1 = DeliveryLoop(outbox, lambda: FakeBroker(failures=1), input_contract="v1")
        with pytest.raises(DeliveryError):
            v1.send_batch()
        DeliveryLoop(outbox, lambda: broker, site_id=SITE).drain()
    assert carried_ids(broker.received) == [[str(e.event_id) for e in events]]


# --- the setting ------------------------------------------------------------------------------


def _config(tmp_path: Path, body: str = "") -> Path:
    config = tmp_path / "collector.toml"
    config.write_text('[collector]\nsite_id = "s"\npseudonym_key_file = "k"\n' + body)
    return config


def test_collectors_send_v2_batches_by_default(tmp_path: Path) -> None:
    assert load_settings(_config(tmp_path), environ={}).input_contract == "v2"


def test_the_contract_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    config = _config(tmp_path, 'input_contract = "v1"\n')
    assert load_settings(config, environ={}).input_contract == "v1"
    environ = {"POSTMARKET_INPUT_CONTRACT": "v2"}
    assert load_settings(config, environ=environ).input_contract == "v2"


def test_an_unknown_contract_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(CollectorConfigError, match="input_contract"):
        load_settings(_config(tmp_path, 'input_contract = "v3"\n'), environ={})
