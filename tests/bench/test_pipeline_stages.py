"""The pipeline benchmark's batches: what a collector would send for the same events."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from bench_pipeline import SIGNING_KEYS, T0, case_events  # noqa: E402 - bench/ is no package
from pipeline_stages import collector_batches, signed_batches  # noqa: E402

from postmarket import topics  # noqa: E402
from postmarket.authenticity import SiteKeyring  # noqa: E402
from postmarket.contracts import FollowUp, Prediction  # noqa: E402
from postmarket.contracts.batches import decode_batch  # noqa: E402


@pytest.fixture(scope="module")
def events() -> list[Prediction | FollowUp]:
    return case_events(1_500, seed=0, prefix="t")  # 750 events per site: 500 + 250


def test_each_batch_holds_at_most_500_events_of_one_site(
    events: list[Prediction | FollowUp],
) -> None:
    batches = collector_batches(events)
    assert all(len(batch) <= 500 for _site, batch in batches)
    assert all({event.site_id for event in batch} == {site} for site, batch in batches)
    assert sum(len(batch) for _site, batch in batches) == len(events)


def test_a_sites_batches_hold_its_events_in_time_order(
    events: list[Prediction | FollowUp],
) -> None:
    sent: dict[str, list[Prediction | FollowUp]] = {}
    for site, batch in collector_batches(events):
        sent.setdefault(site, []).extend(batch)
    for site, site_events in sent.items():
        assert site_events == sorted(
            (event for event in events if event.site_id == site), key=lambda e: e.event_time
        )


def test_the_sites_batches_interleave_one_of_each_in_turn(
    events: list[Prediction | FollowUp],
) -> None:
    sites = [site for site, _batch in collector_batches(events)]
    assert sites == ["site-a", "site-b", "site-c", "site-d"] * 2


def test_a_batch_record_is_keyed_by_its_site_and_its_signature_verifies(
    events: list[Prediction | FollowUp],
) -> None:
    keyring = SiteKeyring(key.registration(site, T0) for site, key in SIGNING_KEYS.items())
    for topic, key, value, headers in signed_batches(events, SIGNING_KEYS):
        assert topic == topics.INPUTS
        assert keyring.verify(headers, topic, key, value, at=T0).site_id == key.decode()


def test_a_batch_record_decodes_to_the_events_it_was_built_from(
    events: list[Prediction | FollowUp],
) -> None:
    records = signed_batches(events, SIGNING_KEYS)
    for (_topic, _key, value, _headers), (site, batch) in zip(
        records, collector_batches(events), strict=True
    ):
        decoded = decode_batch(value)
        assert decoded.site_id == site
        assert [element.event for element in decoded.elements] == batch
