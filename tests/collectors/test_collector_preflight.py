"""``postmarket collector check`` is a preflight: it refuses what ``run`` would refuse.

The configuration is checked the way ``run`` loads it (every secret file read, every folder
it writes), and each input is read the way the inbox reads it (same size limits, same
mappings), with exit 3 for the configuration and 2 for an input.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner, Result

from launcher.cli import app
from launcher.stack.processes import free_port
from postmarket.authenticity import SigningKey
from postmarket.secrets import NOT_A_PATH
from tests.factories import ai_output_fields

CT = Path(str(get_testdata_file("CT_small.dcm", download=False)))
STUDY_UID = str(pydicom.dcmread(CT, stop_before_pixels=True).StudyInstanceUID)
SITE = (
    '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\noutbox_path = "outbox.db"\n'
)
FOLLOWUPS = """
[collector.inbox]
path = "inbox"
{limits}

[collector.followups.csv]
identifier_column = "Study UID"
identifier_kind = "study_instance_uid"
label_column = "Result"
label_values = {{ cancer = "positive", "no cancer" = "negative" }}
date_column = "Date"
source = "pathology"

[collector.followups.hl7]
label_values = {{ "M-80003" = "positive", benign = "negative" }}

[collector.followups.fhir]
label_codes = {{ "http://snomed.info/sct|363346000" = "positive" }}
"""
HL7 = "\r".join(
    [
        "MSH|^~\\&|PATHLAB|HOSP|PMS|HOSP|20260403101500||ORU^R01^ORU_R01|MSG0001|P|2.5.1",
        "PID|1||PAT123^^^HOSP^MR||DOE^JANE||19600101|F",
        "OBR|1|ORD1|A3001|88305^Surgical pathology|||202604031015+0200" + "|" * 18 + "F",
        "OBX|1|CWE|22634-0^Pathology report impression||M-80003^Neoplasm, malignant||||||F",
    ]
)
FHIR = {
    "resourceType": "DiagnosticReport",
    "status": "final",
    "identifier": [
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
                ]
            },
            "value": "A2001",
        }
    ],
    "effectiveDateTime": "2026-04-03T10:15:00+02:00",
    "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "363346000"}]}],
}


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site folder with a private key; the environment names no collector setting."""
    for variable in ("POSTMARKET_SITE_ID", "POSTMARKET_PSEUDONYM_KEY_FILE", "POSTMARKET_SITE_KEY"):
        monkeypatch.delenv(variable, raising=False)
    key = tmp_path / "site.key"
    key.write_bytes(b"preflight-test-site-secret-0123456789abcdef")
    key.chmod(0o600)
    return tmp_path


def configure(site: Path, extra: str = "", limits: str = "") -> Path:
    config = site / "collector.toml"
    config.write_text(SITE + extra + FOLLOWUPS.format(limits=limits))
    return config


def check(config: Path, *files: Path) -> Result:
    return CliRunner().invoke(
        app, ["collector", "check", *map(str, files), "--config", str(config)]
    )


def written(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


# --- the configuration ------------------------------------------------------------------------


def test_a_valid_configuration_alone_passes(site: Path) -> None:
    result = check(configure(site))
    assert result.exit_code == 0, result.output
    assert "configuration ok: site site-a" in result.stderr
    assert not (site / "outbox.db").exists() and not (site / "inbox").exists()  # writes nothing


def test_a_signing_key_others_can_read_is_refused_as_run_refuses_it(site: Path) -> None:
    key_file = site / "signing.pem"
    SigningKey.generate().write(key_file)
    key_file.chmod(0o644)
    result = check(configure(site, 'signing_key_file = "signing.pem"\n'), CT)
    assert result.exit_code == 3
    assert "signing_key_file (POSTMARKET_SIGNING_KEY_FILE)" in result.stderr
    assert "mode 644" in result.stderr and "chmod 600" in result.stderr


def test_a_kafka_password_file_others_can_read_is_refused(site: Path) -> None:
    password = written(site / "kafka.password", "kafka-password-canary")
    password.chmod(0o640)
    kafka = (
        'kafka_security_protocol = "SASL_SSL"\nkafka_username = "site-site-a"\n'
        'kafka_password_file = "kafka.password"\n'
    )
    result = check(configure(site, kafka))
    assert result.exit_code == 3
    assert "kafka_password_file (POSTMARKET_KAFKA_PASSWORD_FILE)" in result.stderr
    assert "kafka-password-canary" not in result.output


def test_a_state_folder_the_collector_cannot_create_is_refused(site: Path) -> None:
    written(site / "backup", "a file where the folder should be")  # root may write anywhere
    result = check(configure(site, 'state_path = "backup/cases.db"\n'))
    assert result.exit_code == 3
    assert f"state_path (POSTMARKET_STATE_PATH): {site / 'backup'} is not a folder" in result.stderr


STOW_CANARY = "stow-preflight-canary-token-0123456789"
STOW_RS = '[collector.stow_rs]\nport = 0\ntoken_file = "{token_file}"\n'


def with_stow_rs(site: Path, file_setting: str = "stow.token") -> Path:
    """The site's configuration with a STOW-RS endpoint whose token_file is ``file_setting``."""
    config = configure(site)
    config.write_text(config.read_text() + "\n" + STOW_RS.format(token_file=file_setting))
    return config


def test_a_private_stow_rs_token_file_passes(site: Path) -> None:
    written(site / "stow.token", STOW_CANARY).chmod(0o600)
    result = check(with_stow_rs(site))
    assert result.exit_code == 0, result.output
    assert STOW_CANARY not in result.output


@pytest.mark.parametrize(
    ("prepare", "why"),
    [
        (lambda token: None, "does not exist"),
        (lambda token: written(token, STOW_CANARY).chmod(0o644), "accessible to other users"),
        (lambda token: written(token, "\n").chmod(0o600), "is empty"),
    ],
    ids=["missing", "mode-644", "empty"],
)
def test_an_unusable_stow_rs_token_file_is_refused_as_run_refuses_it(
    site: Path, prepare: Callable[[Path], object], why: str
) -> None:
    token = site / "stow.token"
    prepare(token)
    result = check(with_stow_rs(site))
    assert result.exit_code == 3
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(
        "collector configuration: [collector.stow_rs]: token_file (POSTMARKET_STOW_TOKEN_FILE): "
        "STOW-RS token file"
    )
    assert str(token) in line and why in line
    assert STOW_CANARY not in result.output


def test_a_stow_rs_token_put_where_its_file_belongs_is_never_echoed(site: Path) -> None:
    token = base64.b64encode(random.Random(19).randbytes(32)).decode()  # noqa: S311
    result = check(with_stow_rs(site, file_setting=token))
    assert result.exit_code == 3
    assert "STOW-RS token file" in result.stderr and NOT_A_PATH in result.stderr
    assert token not in result.output


# --- inputs: each kind the inbox takes --------------------------------------------------------


def test_a_dicom_file_above_max_dicom_bytes_is_refused(site: Path) -> None:
    result = check(configure(site, limits="max_dicom_bytes = 1000"), CT)
    assert result.exit_code == 2
    assert f"refused {CT}: " in result.stderr and "max_dicom_bytes" in result.stderr


def test_an_ai_output_over_its_limit_is_refused(site: Path) -> None:
    padded = json.dumps(ai_output_fields(study_instance_uid=STUDY_UID)) + " " * 1024**2
    result = check(configure(site), written(site / "ai.json", padded))
    assert result.exit_code == 2
    assert "max_ai_output_bytes" in result.stderr


def test_an_image_is_summarised_and_its_case_printed(site: Path) -> None:
    result = check(configure(site), CT)
    assert result.exit_code == 0, result.output
    assert "DICOM image, CT GE MEDICAL SYSTEMS" in result.stderr
    assert json.loads(result.stdout)["case_pseudonym"].startswith("c-")


def test_an_ai_output_json_is_summarised_without_its_study_uid(site: Path) -> None:
    ai = written(site / "ai.json", json.dumps(ai_output_fields(study_instance_uid=STUDY_UID)))
    result = check(configure(site), ai)
    assert result.exit_code == 0, result.output
    assert "AI output (JSON) of lung-ct 1.2.0.4, task nodule: positive" in result.stderr
    assert STUDY_UID not in result.output


def test_a_csv_followup_prints_the_events_that_would_leave(site: Path) -> None:
    csv = written(
        site / "pathology.csv",
        f"Study UID,Result,Date\n{STUDY_UID},cancer,2026-04-03\n1.2.3.4,no cancer,2026-04-04\n",
    )
    result = check(configure(site), csv)
    assert result.exit_code == 0, result.output
    assert "CSV follow-ups, 2 results (1 negative, 1 positive)" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["label"] for event in events] == ["positive", "negative"]
    assert STUDY_UID not in result.stdout


def test_a_refused_csv_row_is_named_and_exits_2(site: Path) -> None:
    csv = written(
        site / "pathology.csv",
        f"Study UID,Result,Date\n{STUDY_UID},cancer,2026-04-03\n1.2.3.4,maybe,2026-04-04\n",
    )
    result = check(configure(site), csv)
    assert result.exit_code == 2
    assert "1 results (1 positive)" in result.stderr
    assert f"refused {csv}: row 3" in result.stderr and "maybe" in result.stderr


def test_an_hl7_result_is_previewed_as_waiting_for_its_image(site: Path) -> None:
    result = check(configure(site), written(site / "result.hl7", HL7))
    assert result.exit_code == 0, result.output
    assert "HL7 follow-ups, 1 results (1 positive)" in result.stderr
    assert "1 named by accession number wait for their image" in result.stderr


def test_a_fhir_report_is_previewed(site: Path) -> None:
    result = check(configure(site), written(site / "report.json", json.dumps(FHIR)))
    assert result.exit_code == 0, result.output
    assert "FHIR follow-ups, 1 results (1 positive)" in result.stderr


def test_a_followup_without_its_mapping_is_refused(site: Path) -> None:
    (site / "collector.toml").write_text(SITE)
    result = check(site / "collector.toml", written(site / "result.hl7", HL7))
    assert result.exit_code == 2
    assert "no [collector.followups.hl7] mapping" in result.stderr


# --- Kafka (opt-in) ---------------------------------------------------------------------------


def test_kafka_that_does_not_answer_is_one_line_and_exit_4(site: Path) -> None:
    config = configure(site, f'kafka_bootstrap = "127.0.0.1:{free_port()}"\n')
    result = CliRunner().invoke(
        app, ["collector", "check", "--kafka", "--kafka-timeout", "1", "--config", str(config)]
    )
    assert result.exit_code == 4
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Kafka")]
    assert "no broker accepted a connection within 1 s" in line
