"""AI results as DICOM SR: a TID 1500 measurement report written by highdicom (not by us)
becomes the same AI output as the JSON form, and never stands in for the study's images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client import CollectorRegistry
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from collectors.case_index import CaseIndex
from collectors.dicom_input import RejectedFile, read_header
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.pseudonym import PseudonymKey
from collectors.settings import AiSrMapping, InboxSettings
from collectors.sr_ai_output import ai_output_from_sr
from collectors.watched_folder import WatchedFolder
from postmarket.contracts import Prediction, decode

hd = pytest.importorskip("highdicom")

KEY = PseudonymKey(b"sr-test-site-secret-0123456789abcdefghijk")
CT = Path(str(get_testdata_file("CT_small.dcm", download=False)))
MAPPING = AiSrMapping(device_id="lung-ct", task="nodule", operating_threshold=0.5)
FINDING = ("111929", "DCM", "Finding")
POSITIVE = ("10828004", "SCT", "Positive")


def measurement_report(probability: float, software_versions: str = "2.1.0.3") -> Dataset:
    """A Comprehensive 3D SR (TID 1500) on CT_small, as an AI device would write it."""
    from pydicom.sr.codedict import codes

    ct = pydicom.dcmread(CT)
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), manufacturer_name="Acme AI", model_name="LungAI"
            ),
        )
    )
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="nodule 1"),
        measurements=[
            hd.sr.Measurement(
                name=hd.sr.CodedConcept("122157", "DCM", "Probability"),
                value=probability,
                unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
            )
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=hd.sr.CodedConcept(*FINDING), value=hd.sr.CodedConcept(*POSITIVE)
            )
        ],
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    sr: Dataset = hd.sr.Comprehensive3DSR(
        evidence=[ct],
        content=report[0],
        series_number=99,
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="Acme AI",
        software_versions=software_versions,
    )
    return sr


def test_sr_score_and_version_become_the_ai_output() -> None:
    output = ai_output_from_sr("r.dcm", measurement_report(0.87), MAPPING)
    assert output.study_instance_uid == pydicom.dcmread(CT).StudyInstanceUID
    assert (output.score, output.decision, output.device_version) == (0.87, "positive", "2.1.0.3")


def test_sr_decision_can_come_from_a_coded_finding() -> None:
    mapping = MAPPING.model_copy(
        update={
            "decision_concept": "DCM|111929",
            "decision_values": {"SCT|10828004": "positive"},
            "operating_threshold": 0.95,
        }
    )
    output = ai_output_from_sr("r.dcm", measurement_report(0.6), mapping)
    assert output.decision == "positive"  # the device's own finding, not 0.6 < 0.95


def test_sr_without_a_device_version_is_refused_naming_it() -> None:
    with pytest.raises(RejectedFile) as refused:
        ai_output_from_sr("r.dcm", measurement_report(0.4, "LungAI build 7"), MAPPING)
    assert refused.value.reason == "bad_ai_output" and "device_version" in str(refused.value)


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[WatchedFolder, Outbox, CollectorRegistry]]:
    registry = CollectorRegistry()
    metrics = CollectorMetrics.create(registry)
    with Outbox(tmp_path / "o.db") as outbox, CaseIndex(tmp_path / "c.db") as cases:
        intake = Intake("site-a", KEY, outbox, cases, metrics)
        inbox = InboxSettings(path=tmp_path / "inbox", settle_seconds=0)
        yield WatchedFolder(inbox, intake, metrics=metrics, ai_sr=MAPPING), outbox, registry


def test_sr_in_the_inbox_before_the_images_gives_the_prediction_with_ct_features(
    folder: tuple[WatchedFolder, Outbox, CollectorRegistry],
) -> None:
    watched, outbox, _ = folder
    measurement_report(0.87).save_as(watched.settings.path / "a-report.dcm")
    (watched.settings.path / "b-ct.dcm").write_bytes(CT.read_bytes())
    assert read_header(watched.settings.path / "a-report.dcm").Modality == "SR"
    assert watched.scan_once() == 2
    (event,) = [decode(Prediction, e.record.value) for e in outbox.pending()]
    assert event.acquisition.modality == "CT"
    assert event.acquisition.manufacturer == "GE MEDICAL SYSTEMS"


def test_sr_without_a_mapping_is_refused(
    folder: tuple[WatchedFolder, Outbox, CollectorRegistry],
) -> None:
    watched, _, registry = folder
    watched.ai_sr = None
    measurement_report(0.87).save_as(watched.settings.path / "report.dcm")
    watched.scan_once()
    assert (
        registry.get_sample_value(
            "postmarket_collector_files_rejected_total", {"reason": "bad_ai_output"}
        )
        == 1
    )


def _check_site(tmp_path: Path, with_mapping: bool) -> Path:
    """A collector.toml with a private site key, and the SR mapping when asked."""
    key = tmp_path / "site.key"
    key.write_bytes(b"check-cli-sr-site-secret-0123456789abcdef")
    key.chmod(0o600)
    config = tmp_path / "collector.toml"
    text = '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
    if with_mapping:
        text += '[collector.ai_sr]\ndevice_id = "lung-ct"\ntask = "nodule"\n'
    config.write_text(text)
    return config


def test_check_prints_the_prediction_an_sr_result_gives(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from launcher.cli import app

    sr = tmp_path / "result.dcm"
    measurement_report(0.83).save_as(sr)
    config = _check_site(tmp_path, with_mapping=True)
    result = CliRunner().invoke(
        app, ["collector", "check", str(CT), "--ai-output", str(sr), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    prediction = decode(Prediction, result.stdout.strip().encode())
    assert (prediction.score, prediction.device_version) == (0.83, "2.1.0.3")
    assert prediction.acquisition.modality == "CT"


def test_check_refuses_an_sr_as_the_image_or_without_a_mapping(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from launcher.cli import app

    sr = tmp_path / "result.dcm"
    measurement_report(0.83).save_as(sr)
    as_image = CliRunner().invoke(
        app,
        ["collector", "check", str(sr), "--ai-output", str(sr)]
        + ["--config", str(_check_site(tmp_path, True))],
    )
    assert as_image.exit_code == 2 and "pass it as --ai-output" in as_image.stderr
    unmapped = CliRunner().invoke(
        app,
        ["collector", "check", str(CT), "--ai-output", str(sr)]
        + ["--config", str(_check_site(tmp_path, with_mapping=False))],
    )
    assert unmapped.exit_code == 2 and "[collector.ai_sr] is not set" in unmapped.stderr
