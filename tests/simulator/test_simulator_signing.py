"""Simulated sites sign like real collectors: each with its own key, registered before use."""

from __future__ import annotations

from postmarket import topics
from postmarket.authenticity import SiteKeyring, claimed_site
from postmarket.contracts import SiteKeyRegistration, decode
from tests.simulator.conftest import DryRun

CASE_TOPICS = (topics.INPUTS, topics.PREDICTIONS, topics.FOLLOWUPS)


def test_every_site_key_is_registered_before_any_case_record(small_dry_run: DryRun) -> None:
    kinds = [r.topic for r in small_dry_run.records]
    last_key = max(i for i, topic in enumerate(kinds) if topic == topics.SITE_KEYS)
    first_case = min(i for i, topic in enumerate(kinds) if topic in CASE_TOPICS)
    assert last_key < first_case


def test_every_case_record_verifies_under_its_own_sites_key(small_dry_run: DryRun) -> None:
    keyring = SiteKeyring(
        decode(SiteKeyRegistration, r.value)
        for r in small_dry_run.records
        if r.topic == topics.SITE_KEYS
    )
    cases = [r for r in small_dry_run.records if r.topic in CASE_TOPICS]
    assert {r.topic for r in cases} == {topics.INPUTS, topics.PREDICTIONS}  # batches, malformed
    for record in cases:
        signer = keyring.verify(record.headers, record.topic, record.key, record.value)
        site = claimed_site(record.value)
        if site is not None:  # malformed injections may name no site
            keyring.check_site(signer, site)


def test_sites_do_not_share_a_key(small_dry_run: DryRun) -> None:
    registrations = [
        decode(SiteKeyRegistration, r.value)
        for r in small_dry_run.records
        if r.topic == topics.SITE_KEYS
    ]
    assert len({r.key_id for r in registrations}) == len({r.site_id for r in registrations}) > 1
