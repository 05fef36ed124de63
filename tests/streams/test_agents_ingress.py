"""The ingress agent: each v1 record forwarded once, as it is, keyed by its site; a record
that claims no site is dead-lettered there with its reason, and the next one goes on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator

import pytest

from postmarket import topics
from postmarket.contracts import DeadLetter, decode, encode
from streams import app as worker
from streams import authentication
from streams.agents import ingress
from streams.channels import SITE_INPUTS
from streams.rekeying import Origin, origin_of
from tests.factories import make_followup, make_prediction
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    # Settings default to "required"; signatures are tested in test_agents_join.py and the
    # integration tests.
    monkeypatch.setattr(authentication, "AUTHENTICITY_REQUIRED", False)
    ingress.unacked.take()
    yield recording
    ingress.unacked.take()


def run_ingress(scenario: Callable[[Feed], Awaitable[None]]) -> None:
    async def main() -> None:
        async with ingress.rekey_by_site.test_context() as agent:
            await scenario(Feed(agent))

    asyncio.run(main())


def test_a_v1_record_is_forwarded_as_it_is_keyed_by_its_site(producer: RecordingProducer) -> None:
    prediction = make_prediction(case_pseudonym="c-1", site_id="site-b")
    signature = [("pms-key-id", b"k1"), ("pms-signature", b"sig")]

    async def scenario(feed: Feed) -> None:
        record = await feed.put(
            topics.PREDICTIONS, b"c-1", encode(prediction), partition=2, headers=signature
        )
        await wait_until(settled(ingress.unacked, [record]), "the record forwarded")
        assert not record.message.acked  # until the flush
        await ingress.flush_forwarded()
        assert record.message.acked

    run_ingress(scenario)
    [forwarded] = producer.to(SITE_INPUTS)
    assert (forwarded.key, forwarded.value) == (b"site-b", encode(prediction))
    assert forwarded.partition is None  # the producer's key hash, as for every keyed record
    assert forwarded.headers[:2] == signature
    assert origin_of(forwarded.headers) == Origin(topics.PREDICTIONS, 2, 0, b"c-1")


@pytest.mark.parametrize(
    ("value", "reason_code", "reason_names"),
    [
        (b"{not json", "not_json", "<payload>"),
        (b'{"case_pseudonym": "c-bad"}', "schema", "site_id"),
        (b'{"site_id": "site a"}', "schema", "site_id"),
        (None, "not_json", "<payload>"),
    ],
    ids=["not-json", "no-site", "site-not-an-identifier", "no-value"],
)
def test_a_record_without_a_site_is_dead_lettered_and_the_next_one_forwarded(
    producer: RecordingProducer, value: bytes | None, reason_code: str, reason_names: str
) -> None:
    followup = make_followup(case_pseudonym="c-1")

    async def scenario(feed: Feed) -> None:
        records = [
            await feed.put(topics.FOLLOWUPS, b"c-bad", value, headers=[("signature", b"s")]),
            await feed.put(topics.FOLLOWUPS, b"c-1", encode(followup)),
        ]
        await wait_until(settled(ingress.unacked, records), "both records handled")

    run_ingress(scenario)
    [record] = producer.to(topics.DEADLETTER)
    letter = decode(DeadLetter, record.value or b"")
    assert (letter.source_topic, letter.source_offset) == (topics.FOLLOWUPS, 0)
    assert (letter.reason_code, reason_names in letter.reason) == (reason_code, True)
    assert letter.original == (value or b"")
    assert record.headers == [("signature", b"s")]
    [forwarded] = producer.to(SITE_INPUTS)
    assert forwarded.value == encode(followup)


def test_a_huge_record_is_dead_lettered_cut_short_with_its_size_and_hash(
    producer: RecordingProducer,
) -> None:
    """Refused by the ingress, which would otherwise forward a copy too large for the
    broker: a 2 MB record claims its site like any other."""
    huge = b'{"site_id": "site-a", "padding": "' + b"x" * 2_000_000 + b'"}'

    async def scenario(feed: Feed) -> None:
        event = await feed.put(topics.PREDICTIONS, b"c-1", huge)
        await wait_until(settled(ingress.unacked, [event]), "the huge record handled")

    run_ingress(scenario)
    [letter] = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert letter.reason_code == "schema" and "exceeds" in letter.reason
    assert (letter.original_size, letter.truncated) == (len(huge), True)
    assert letter.original == huge[: len(letter.original)] and len(letter.original) == 128 * 1024
    assert letter.original_sha256 == hashlib.sha256(huge).hexdigest()
    [record] = producer.to(topics.DEADLETTER)
    assert len(record.value or b"") < 1024 * 1024  # under the broker's default record limit
