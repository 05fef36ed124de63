"""Event authenticity on the real broker: forged records are dead-lettered, valid ones joined.

Forgeries a compromised or careless party could send: an event claiming another site but
signed with this site's key, a valid signed event replayed with one field altered, an
unsigned event, one signed by a revoked key. Each is dead-lettered with reason
``authenticity`` (its headers kept), counted under its claimed site, and never joined;
the same site's genuine events, under either of its rotated keys, become outcomes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.authenticity import SigningKey
from postmarket.contracts import DeadLetter, Outcome, Prediction, encode
from postmarket.site_key_topic import publish_site_keys
from tests.factories import make_followup, make_prediction
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    read_topic,
    send_raw,
    signers,
    valid_events,
    wait_for_metric,
)

pytestmark = pytest.mark.integration
UNAUTHENTIC = "postmarket_events_unauthentic_total"


@pytest.fixture(scope="module")
def worker(kafka_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorker]:
    home = tmp_path_factory.mktemp("authenticity")
    with own_worker(
        kafka_stack.settings, home, "authenticity", event_authenticity="required"
    ) as running:
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def record(event: Any) -> tuple[bytes, bytes]:
    return event.case_pseudonym.encode(), encode(event)


def topic_of(event: Any) -> str:
    return topics.PREDICTIONS if isinstance(event, Prediction) else topics.FOLLOWUPS


def signed_send(bootstrap: str, key: SigningKey, event: Any) -> None:
    topic = topic_of(event)
    record_key, value = record(event)
    send_raw(bootstrap, topic, [(record_key, value)], headers=key.sign(topic, record_key, value))


def dead_lettered(bootstrap: str, event_ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The dead-letter records (as consumed, with headers) of the events ``event_ids``."""

    def mine(records: list[Any]) -> dict[uuid.UUID, Any]:
        found = {}
        for raw in records:
            letters = valid_events([raw], DeadLetter)
            if not letters:
                continue
            try:
                original = json.loads(letters[0].original)  # Base64Bytes: decoded already
                event_id = uuid.UUID(original["event_id"])
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                continue  # other tests' dead letters hold anything: lists, deep nesting...
            if event_id in event_ids:
                found[event_id] = raw
        return found

    return mine(
        read_topic(bootstrap, topics.DEADLETTER, lambda rs: len(mine(rs)) >= len(event_ids))
    )


def outcomes_of(bootstrap: str, site: str, cases: int) -> list[Outcome]:
    def mine(records: list[Any]) -> list[Outcome]:
        return [o for o in valid_events(records, Outcome) if o.stream.site_id == site]

    return mine(read_topic(bootstrap, topics.OUTCOMES, lambda rs: len(mine(rs)) >= cases))


def test_forged_events_are_dead_lettered_and_genuine_ones_joined(worker: LocalWorker) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    site, other_site = unique("site"), unique("site")
    site_key = signers(bootstrap).register(site)
    signers(bootstrap).register(other_site)
    rotated = SigningKey.generate()  # the site's second key, valid at the same time
    publish_site_keys([rotated.registration(site)], bootstrap)

    genuine = [make_prediction(site_id=site, case_pseudonym=unique("c")) for _ in range(2)]
    genuine_truth = [make_followup(site_id=site, case_pseudonym=p.case_pseudonym) for p in genuine]
    for event, key in zip(genuine + genuine_truth, [site_key, rotated] * 2, strict=True):
        signed_send(bootstrap, key, event)

    # Another site's id, signed with this site's key.
    impostor = make_prediction(site_id=other_site, case_pseudonym=unique("c"))
    signed_send(bootstrap, site_key, impostor)
    # A valid signed record replayed with one field altered (the decision flipped).
    replayed = make_prediction(site_id=site, case_pseudonym=unique("c"), decision="positive")
    record_key, value = record(replayed)
    headers = site_key.sign(topics.PREDICTIONS, record_key, value)
    altered = value.replace(b'"decision":"positive"', b'"decision":"negative"')
    assert altered != value
    send_raw(bootstrap, topics.PREDICTIONS, [(record_key, altered)], headers=headers)
    # Unsigned: the truth of a genuine case, which must therefore stay without outcome.
    lonely = make_prediction(site_id=site, case_pseudonym=unique("c"))
    signed_send(bootstrap, site_key, lonely)
    unsigned = make_followup(site_id=site, case_pseudonym=lonely.case_pseudonym)
    send_raw(bootstrap, topics.FOLLOWUPS, [record(unsigned)], signed=False)

    forged = {impostor.event_id, replayed.event_id, unsigned.event_id}
    letters = dead_lettered(bootstrap, forged)
    for raw in letters.values():
        letter = valid_events([raw], DeadLetter)[0]
        assert letter.reason_code == "authenticity"
    reasons = {
        event_id: valid_events([raw], DeadLetter)[0].reason for event_id, raw in letters.items()
    }
    assert f"belongs to site {site}, not {other_site}" in reasons[impostor.event_id]
    assert "does not match" in reasons[replayed.event_id]
    assert "no signature" in reasons[unsigned.event_id]
    # The replayed record keeps its (now failing) signature, for the investigation.
    assert dict(letters[replayed.event_id].headers)["pms-key-id"] == site_key.key_id.encode()

    url = worker.metrics_url
    wait_for_metric(url, UNAUTHENTIC, 1, site_id=other_site, reason="wrong_site")
    wait_for_metric(url, UNAUTHENTIC, 1, site_id=site, reason="bad_signature")
    wait_for_metric(url, UNAUTHENTIC, 1, site_id=site, reason="unsigned")

    joined = outcomes_of(bootstrap, site, len(genuine))
    assert {o.prediction_event_id for o in joined} == {p.event_id for p in genuine}


def test_a_revoked_key_is_refused_and_an_unregistered_site_counted_as_unknown(
    worker: LocalWorker,
) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    site = unique("site")
    key = SigningKey.generate()
    registration = key.registration(site)
    publish_site_keys([registration], bootstrap)
    publish_site_keys(
        [registration.model_copy(update={"revoked_at": registration.registered_at})], bootstrap
    )
    revoked = make_prediction(site_id=site, case_pseudonym=unique("c"))
    signed_send(bootstrap, key, revoked)
    stranger = make_prediction(site_id=unique("nowhere"), case_pseudonym=unique("c"))
    signed_send(bootstrap, SigningKey.generate(), stranger)

    letters = dead_lettered(bootstrap, {revoked.event_id, stranger.event_id})
    reasons = {i: valid_events([raw], DeadLetter)[0] for i, raw in letters.items()}
    assert reasons[revoked.event_id].reason_code == "authenticity"
    assert "revoked" in reasons[revoked.event_id].reason
    assert "not registered" in reasons[stranger.event_id].reason
    wait_for_metric(worker.metrics_url, UNAUTHENTIC, 1, site_id=site, reason="revoked_key")
    wait_for_metric(worker.metrics_url, UNAUTHENTIC, 1, site_id="unknown", reason="unknown_key")
