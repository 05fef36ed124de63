"""``postmarket collector status``: backlog, waiting cases, last delivery and last error."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors.case_index import CaseIndex
from collectors.delivery import DeliveryLoop
from collectors.events import AIOutput
from collectors.intake import Intake
from collectors.outbox import Outbox
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from collectors.pseudonym import PseudonymKey
from collectors.status import CollectorStatus, status_lines
from launcher.cli import app
from tests.factories import ai_output_fields, make_prediction

KEY = PseudonymKey(b"status-test-site-secret-0123456789abcdefgh")


class FlakyBroker:
    """Refuses the first batch, then acknowledges everything."""

    def __init__(self) -> None:
        self.calls = 0

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        self.calls += 1
        if self.calls == 1:
            raise DeliveryError("send failed (KafkaTimeoutError)")
        return [Delivery(record.topic, 0, offset) for offset, record in enumerate(records)]

    def close(self) -> None:
        pass


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("POSTMARKET_SITE_ID", "POSTMARKET_PSEUDONYM_KEY_FILE"):
        monkeypatch.delenv(variable, raising=False)
    path = tmp_path / "collector.toml"
    path.write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        'outbox_path = "outbox.db"\n'
    )
    return path


def test_status_shows_backlog_waiting_cases_last_delivery_and_last_error(
    config: Path, tmp_path: Path
) -> None:
    broker = FlakyBroker()
    with Outbox(tmp_path / "outbox.db") as outbox, CaseIndex(tmp_path / "outbox-cases.db") as cases:
        outbox.put(make_prediction())
        loop = DeliveryLoop(outbox, lambda: broker)
        with pytest.raises(DeliveryError):
            loop.send_batch()
        assert loop.send_batch() == 1
        outbox.put(make_prediction())
        Intake("site-a", KEY, outbox, cases).accept_ai_output(AIOutput(**ai_output_fields()))
    result = CliRunner().invoke(app, ["collector", "status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("outbox: 1 events waiting (0 % of its limit), oldest queued")
    assert lines[1] == "waiting for their study: 1 ai_output"
    assert lines[2].startswith("last delivery: ") and lines[2].endswith("(1 events sent in all)")
    assert lines[3].startswith("last error: ")
    assert lines[3].endswith(" s ago: send failed (KafkaTimeoutError)")
    assert lines[4] == "sends v2: signed batches to pms.inputs.v2"


def test_status_says_a_v1_collector_sends_one_record_per_event(
    config: Path, tmp_path: Path
) -> None:
    Outbox(tmp_path / "outbox.db").close()
    config.write_text(config.read_text() + 'input_contract = "v1"\n')
    result = CliRunner().invoke(app, ["collector", "status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].startswith("sends v1: one record per event")


def test_status_of_a_collector_that_never_ran_is_one_line(config: Path) -> None:
    result = CliRunner().invoke(app, ["collector", "status", "--config", str(config)])
    assert result.exit_code == 3
    assert result.stderr.strip().endswith("the collector has not run with these settings")
    assert not (config.parent / "outbox.db").exists()


def test_ages_are_said_in_the_largest_fitting_unit() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    status = CollectorStatus(
        outbox_depth=3,
        outbox_bytes=512,
        oldest_pending_at=(now - timedelta(hours=5)).timestamp(),
        most_attempts=7,
        events_sent=10,
        last_delivery_at=now - timedelta(days=2),
    )
    assert status_lines(status, now, limit_bytes=1024) == [
        "outbox: 3 events waiting (50 % of its limit), oldest queued 5.0 h ago, "
        "up to 7 failed attempts",
        "waiting for their study: nothing",
        "last delivery: 2.0 d ago (10 events sent in all)",
        "last error: none",
    ]
