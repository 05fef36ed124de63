"""``postmarket collector check``: prints what would leave, refuses bad input cleanly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from launcher.cli import app
from tests.factories import ai_output_fields

SECRET = b"cli-test-site-secret-0123456789abcdefgh"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "site.key"
    key.write_bytes(SECRET)
    os.chmod(key, 0o600)
    monkeypatch.setenv("POSTMARKET_SITE_ID", "site-a")
    monkeypatch.setenv("POSTMARKET_PSEUDONYM_KEY_FILE", str(key))
    return tmp_path


def _ct(tmp_path: Path) -> Path:
    source = get_testdata_file("CT_small.dcm")
    assert source is not None
    target = tmp_path / "ct.dcm"
    target.write_bytes(Path(source).read_bytes())
    return target


def _ai_output(tmp_path: Path, study_uid: str) -> Path:
    path = tmp_path / "ai.json"
    path.write_text(json.dumps(ai_output_fields(study_instance_uid=study_uid)))
    return path


def test_check_prints_the_prediction_event_without_phi(site: Path) -> None:
    ct = _ct(site)
    header = pydicom.dcmread(ct)
    result = CliRunner().invoke(
        app,
        [
            "collector",
            "check",
            str(ct),
            "--ai-output",
            str(_ai_output(site, header.StudyInstanceUID)),
        ],
    )
    assert result.exit_code == 0, result.output
    event = json.loads(result.stdout)
    assert event["site_id"] == "site-a" and event["case_pseudonym"].startswith("c-")
    assert event["acquisition"]["manufacturer"] == "GE MEDICAL SYSTEMS"
    for phi in (str(header.PatientName), header.StudyInstanceUID, str(header.StationName)):
        assert phi not in result.stdout
    assert SECRET.decode() not in result.output


def test_check_prints_the_same_event_every_time(site: Path) -> None:
    ct = _ct(site)
    ai = _ai_output(site, pydicom.dcmread(ct).StudyInstanceUID)
    runs = [
        CliRunner().invoke(app, ["collector", "check", str(ct), "--ai-output", str(ai)])
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout


def test_check_without_ai_output_prints_the_image_part(site: Path) -> None:
    result = CliRunner().invoke(app, ["collector", "check", str(_ct(site))])
    assert result.exit_code == 0
    assert set(json.loads(result.stdout)) == {"case_pseudonym", "acquisition"}


def test_check_reads_site_settings_from_a_config_file(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTMARKET_SITE_ID")
    monkeypatch.delenv("POSTMARKET_PSEUDONYM_KEY_FILE")
    config = site / "collector.toml"
    config.write_text('[collector]\nsite_id = "site-b"\npseudonym_key_file = "site.key"\n')
    ct = _ct(site)
    ai = _ai_output(site, pydicom.dcmread(ct).StudyInstanceUID)
    result = CliRunner().invoke(
        app, ["collector", "check", str(ct), "--ai-output", str(ai), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["site_id"] == "site-b"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, not an image\n", "not a DICOM file"),
        (None, "ends inside"),  # truncated CT
    ],
)
def test_bad_input_is_rejected_naming_file_and_reason(
    site: Path, content: bytes | None, reason: str
) -> None:
    bad = site / "bad.dcm"
    bad.write_bytes(content if content is not None else _ct(site).read_bytes()[:2001])
    result = CliRunner().invoke(app, ["collector", "check", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and reason in result.stderr
    assert "Traceback" not in result.output


def test_missing_tags_are_named(site: Path) -> None:
    header = pydicom.dcmread(_ct(site))
    del header.StudyInstanceUID
    path = site / "no-study.dcm"
    header.save_as(path)
    result = CliRunner().invoke(app, ["collector", "check", str(path)])
    assert result.exit_code == 2
    assert "StudyInstanceUID" in result.stderr and str(path) in result.stderr


def test_ai_output_for_another_study_is_rejected(site: Path) -> None:
    ct = _ct(site)
    result = CliRunner().invoke(
        app, ["collector", "check", str(ct), "--ai-output", str(_ai_output(site, "1.2.3"))]
    )
    assert result.exit_code == 2 and "another study" in result.stderr


def test_missing_configuration_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("POSTMARKET_SITE_ID", raising=False)
    monkeypatch.delenv("POSTMARKET_PSEUDONYM_KEY_FILE", raising=False)
    result = CliRunner().invoke(app, ["collector", "check", str(_ct(tmp_path))])
    assert result.exit_code == 3
    assert "POSTMARKET_PSEUDONYM_KEY_FILE" in result.stderr and "Traceback" not in result.output


class VisibleTopics:
    """A stand-in for kafka-python's producer on a broker holding only ``topics``."""

    topics: frozenset[str] = frozenset()
    asked: list[str] = []

    def __init__(self, **_options: object) -> None:
        pass

    def partitions_for(self, topic: str) -> set[int]:
        from kafka.errors import KafkaTimeoutError

        VisibleTopics.asked.append(topic)
        if topic not in self.topics:
            raise KafkaTimeoutError(f"no metadata for {topic}")
        return {0}

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> type[VisibleTopics]:
    import kafka

    VisibleTopics.asked = []
    monkeypatch.setattr(kafka, "KafkaProducer", VisibleTopics)
    return VisibleTopics


def test_check_kafka_tests_the_v2_topic_by_default(site: Path, broker: type[VisibleTopics]) -> None:
    broker.topics = frozenset({"pms.inputs.v2"})
    result = CliRunner().invoke(app, ["collector", "check", "--kafka"])
    assert result.exit_code == 0, result.output
    assert broker.asked == ["pms.inputs.v2"]
    assert "sends v2: signed batches to pms.inputs.v2" in result.output
    assert "input topics visible (pms.inputs.v2)" in result.output


def test_check_kafka_on_workers_not_upgraded_suggests_v1(
    site: Path, broker: type[VisibleTopics]
) -> None:
    broker.topics = frozenset({"pms.predictions.v1", "pms.followups.v1"})
    result = CliRunner().invoke(app, ["collector", "check", "--kafka"])
    assert result.exit_code == 4
    assert "cannot see topic pms.inputs.v2" in result.output
    assert 'input_contract = "v1"' in result.output and "Traceback" not in result.output


def test_check_kafka_with_v1_tests_the_v1_topics(
    site: Path, broker: type[VisibleTopics], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTMARKET_INPUT_CONTRACT", "v1")
    broker.topics = frozenset({"pms.predictions.v1", "pms.followups.v1"})
    result = CliRunner().invoke(app, ["collector", "check", "--kafka"])
    assert result.exit_code == 0, result.output
    assert broker.asked == ["pms.predictions.v1", "pms.followups.v1"]
    assert "sends v1: one record per event" in result.output
