"""The assembled collector while Kafka is unreachable: input is still taken and kept in the
outbox, failures are counted, and a stop request ends it promptly with nothing lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from site_settings import site_settings

from collectors.outbox import Outbox
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from collectors.service import Collector
from collectors.settings import InboxSettings
from tests.factories import ai_output_fields

CT = Path(str(get_testdata_file("CT_small.dcm", download=False)))


class UnreachableBroker:
    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        raise DeliveryError("broker unreachable")

    def close(self) -> None:
        pass


def test_outage_keeps_events_and_stop_is_prompt(tmp_path: Path) -> None:
    inbox = InboxSettings(path=tmp_path / "inbox", poll_seconds=0.05, settle_seconds=0)
    settings = site_settings(tmp_path, inbox=inbox)
    collector = Collector(settings, connect=UnreachableBroker)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop,))
    runner.start()
    try:
        study = pydicom.dcmread(CT, stop_before_pixels=True).StudyInstanceUID
        (tmp_path / "inbox" / "ct.dcm").write_bytes(CT.read_bytes())
        ai_output = ai_output_fields(study_instance_uid=str(study))
        (tmp_path / "inbox" / "ai.json").write_text(json.dumps(ai_output))
        failures = "postmarket_collector_send_failures_total"
        # Generous: on a loaded 2-core machine the first delivery attempt took over 20 s.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not collector.registry.get_sample_value(failures):
            time.sleep(0.05)
        assert collector.registry.get_sample_value(failures)
    finally:
        stopped_at = time.monotonic()
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert time.monotonic() - stopped_at < 10
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.depth() == 1  # the prediction waits for the broker
