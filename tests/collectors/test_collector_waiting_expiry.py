"""Inputs whose study never comes do not wait for ever: after ``waiting_expiry_days`` they
are dropped and counted, the waiting gauge falls, and a case index from before waits were
timed starts their clocks when it is opened, instead of dropping them at once."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from site_settings import site_settings

from collectors.case_index import CaseIndex
from collectors.events import AIOutput
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey
from collectors.service import Collector
from tests.factories import ai_output_fields

KEY = PseudonymKey(b"expiry-test-site-secret-0123456789abcdefgh")
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
DAY_S = 86400.0

# The case index's two waiting tables as released before waits were timed.
UNTIMED_SCHEMA = """
CREATE TABLE waiting_outputs (
    case_pseudonym TEXT NOT NULL, output_id TEXT NOT NULL, output TEXT NOT NULL,
    PRIMARY KEY (case_pseudonym, output_id)
);
CREATE TABLE waiting_followups (
    accession_link TEXT NOT NULL, followup_id TEXT NOT NULL, followup TEXT NOT NULL,
    PRIMARY KEY (accession_link, followup_id)
);
INSERT INTO waiting_outputs VALUES ('case-1', 'lung-ct|1.2.0.4|nodule', '{}');
INSERT INTO waiting_followups VALUES ('link-1', 'f-1', '{}');
"""


def ai_output(study_uid: str) -> AIOutput:
    return AIOutput.model_validate(ai_output_fields(study_instance_uid=study_uid))


class Site:
    def __init__(self, root: Path) -> None:
        self.registry = CollectorRegistry()
        metrics = CollectorMetrics.create(self.registry)
        self.outbox = Outbox(root / "outbox.db", metrics=metrics)
        self.cases = CaseIndex(root / "cases.db")
        self.intake = Intake("site-a", KEY, self.outbox, self.cases, metrics)

    def sample(self, name: str, kind: str) -> float | None:
        return self.registry.get_sample_value(name, {"kind": kind})


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    yield site
    site.outbox.close()
    site.cases.close()


def test_a_wait_shorter_than_the_bound_is_kept_and_a_longer_one_dropped(site: Site) -> None:
    site.cases.wait_output("case-old", "out", "{}", now=time.time() - 31 * DAY_S)
    site.intake.accept_ai_output(ai_output(STUDY_UID))  # waits from now
    assert site.intake.expire_waiting(time.time() - 30 * DAY_S) == {"ai_output": 1, "followup": 0}
    assert site.cases.waiting_counts() == {"ai_output": 1, "followup": 0}
    assert site.sample("postmarket_collector_waiting_expired_total", "ai_output") == 1
    assert site.sample("postmarket_collector_waiting_expired_total", "followup") == 0
    assert site.sample("postmarket_collector_cases_waiting", "ai_output") == 1


def test_an_expired_output_is_not_released_when_its_study_comes_late(site: Site) -> None:
    site.cases.wait_output("case-late", "out", "{}", now=time.time() - 40 * DAY_S)
    site.intake.expire_waiting(time.time() - 30 * DAY_S)
    assert site.cases.waiting_outputs("case-late") == []


def test_followups_waiting_for_their_accession_expire_too(site: Site) -> None:
    site.cases.wait_followup("link-old", "f-old", "{}", now=time.time() - 31 * DAY_S)
    site.cases.wait_followup("link-new", "f-new", "{}")
    assert site.intake.expire_waiting(time.time() - 30 * DAY_S) == {"ai_output": 0, "followup": 1}
    assert site.cases.waiting_followups("link-new") == [("f-new", "{}")]
    assert site.sample("postmarket_collector_cases_waiting", "followup") == 1


def test_an_index_from_before_timed_waits_starts_their_clocks_on_open(tmp_path: Path) -> None:
    path = tmp_path / "cases.db"
    with sqlite3.connect(path) as db:
        db.executescript(UNTIMED_SCHEMA)
    before = time.time()
    with CaseIndex(path) as cases:
        assert cases.expire_waiting(before - 1.0) == {"ai_output": 0, "followup": 0}
        assert cases.waiting_counts() == {"ai_output": 1, "followup": 1}
        assert cases.expire_waiting(time.time() + 1.0) == {"ai_output": 1, "followup": 1}


def test_the_running_collector_expires_what_waited_too_long(tmp_path: Path) -> None:
    settings = site_settings(tmp_path, waiting_expiry_days=30)
    with CaseIndex(settings.case_index_path) as cases:
        cases.wait_output("case-old", "out", "{}", now=time.time() - 31 * DAY_S)
        cases.wait_output("case-new", "out", "{}")
    collector = Collector(settings)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop,))
    runner.start()
    try:
        expired = "postmarket_collector_waiting_expired_total"
        deadline = time.monotonic() + 10.0
        while collector.registry.get_sample_value(expired, {"kind": "ai_output"}) != 1:
            assert time.monotonic() < deadline, "the collector never expired the old output"
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30.0)
    with CaseIndex(settings.case_index_path) as cases:
        assert cases.waiting_counts() == {"ai_output": 1, "followup": 0}
