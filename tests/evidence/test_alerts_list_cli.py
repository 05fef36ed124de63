"""``postmarket alerts list`` with a header, filters, --json and short ids, which every alert
command accepts where it accepts a full id; on SQLite."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from evidence_builders import T0, make_alert, make_stream
from typer.testing import CliRunner

from evidence import rebaseline
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.contracts.events import Alert, Rebaseline

runner = CliRunner()

EARLY = make_alert(
    alert_id=uuid.UUID("7b0c9a52-1f1e-4f35-9d0e-2a8b8c1e2f11"),
    raised_at=T0,
    stream=make_stream(site_id="site-a"),
)
LATE = make_alert(
    alert_id=uuid.UUID("c3d4e5f6-0000-4000-8000-000000000001"),
    raised_at=T0 + timedelta(days=10),
    stream=make_stream(site_id="site-b"),
    detector="specificity_cusum",
)
OTHER_DEVICE = make_alert(
    alert_id=uuid.UUID("0a1b2c3d-0000-4000-8000-000000000002"),
    raised_at=T0 + timedelta(days=20),
    stream=make_stream(device_id="lung-ct", site_id="site-a", task="nodule"),
)


def invoke(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--url", url])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def stored(url: str, *alerts: Alert) -> str:
    with EvidenceStore(url) as store:
        for alert in alerts:
            store.record_alert(alert, actor="worker")
    return url


@pytest.fixture
def url(sqlite_url: str) -> str:
    return stored(sqlite_url, EARLY, LATE, OTHER_DEVICE)


def listed_ids(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[1:]]


def test_alerts_list_opens_with_a_header_row(url: str) -> None:
    code, output = invoke(url, "alerts", "list")
    assert code == 0, output
    assert output.splitlines()[0].split() == [
        "ID", "STATUS", "SEVERITY", "DETECTOR", "DEVICE", "VERSION", "SITE", "TASK",
        "RAISED", "(UTC)", "RECURRED",
    ]  # fmt: skip
    assert listed_ids(output) == ["0a1b2c3d", "c3d4e5f6", "7b0c9a52"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--device", "dr-screen"], ["c3d4e5f6", "7b0c9a52"]),
        (["--site", "site-a"], ["0a1b2c3d", "7b0c9a52"]),
        (["--since", "2026-03-11"], ["0a1b2c3d", "c3d4e5f6"]),
        (["--device", "dr-screen", "--site", "site-b", "--status", "open"], ["c3d4e5f6"]),
    ],
)
def test_alerts_list_filters(url: str, options: list[str], expected: list[str]) -> None:
    code, output = invoke(url, "alerts", "list", *options)
    assert code == 0, output
    assert listed_ids(output) == expected


def test_alerts_list_filters_by_lifecycle_status(url: str) -> None:
    invoke(url, "alerts", "ack", "c3d4e5f6", "--note", "checking", "--by", "dr.li")
    assert listed_ids(invoke(url, "alerts", "list", "--status", "acknowledged")[1]) == ["c3d4e5f6"]
    assert listed_ids(invoke(url, "alerts", "list", "--status", "open")[1]) == [
        "0a1b2c3d",
        "7b0c9a52",
    ]


def test_alerts_list_json_is_one_array_with_full_ids_and_lifecycle(url: str) -> None:
    code, output = invoke(url, "alerts", "list", "--json", "--site", "site-a")
    assert code == 0, output
    listed = json.loads(output)
    assert [item["alert_id"] for item in listed] == [
        str(OTHER_DEVICE.alert_id),
        str(EARLY.alert_id),
    ]
    assert listed[1]["stream"]["device_id"] == "dr-screen"
    assert (listed[1]["status"], listed[1]["recurrences"]) == ("open", 0)


def test_alerts_list_json_of_no_alerts_is_an_empty_array(sqlite_url: str) -> None:
    EvidenceStore(sqlite_url).close()
    assert json.loads(invoke(sqlite_url, "alerts", "list", "--json")[1]) == []


def test_a_since_that_is_no_date_is_refused_in_one_line(url: str) -> None:
    code, output = invoke(url, "alerts", "list", "--since", "last week")
    assert (code, output.strip()) == (
        1,
        "error: --since 'last week' is not a date: write YYYY-MM-DD",
    )


def test_short_ids_take_an_alert_through_its_lifecycle(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[Rebaseline] = []  # EARLY is claim-based: resolving it publishes a review
    monkeypatch.setattr(
        rebaseline, "publish_rebaseline", lambda decision, *_: published.append(decision)
    )
    code, output = invoke(url, "alerts", "ack", "7b0c9a52", "--note", "checking", "--by", "dr.li")
    assert (code, output.strip()) == (0, f"alert {EARLY.alert_id} is acknowledged")
    code, output = invoke(url, "alerts", "resolve", "7B0C9A52", "--resolution", "fixed")
    assert code == 0, output
    assert output.startswith(f"alert {EARLY.alert_id} is resolved")
    assert [decision.alert_id for decision in published] == [EARLY.alert_id]
    code, output = invoke(url, "alerts", "show", "7b0c9a52")
    assert code == 0
    assert f"alert        {EARLY.alert_id}" in output


def test_a_short_id_two_alerts_start_with_is_refused_in_one_line(sqlite_url: str) -> None:
    twin = make_alert(
        alert_id=uuid.UUID("7b0c9a52-ffff-4000-8000-000000000009"), detector="model_drift"
    )
    url = stored(sqlite_url, EARLY, twin)
    code, output = invoke(url, "alerts", "show", "7b0c9a52")
    assert code == 1
    (line,) = output.strip().splitlines()
    assert line.startswith("error: 7b0c9a52 is the start of more than one alert id")
    assert line.endswith("give more characters or the full id")
    assert invoke(url, "alerts", "show", "7b0c9a52-1f")[0] == 0


def test_a_short_id_of_a_recurrence_names_its_alert(sqlite_url: str) -> None:
    recurrence = make_alert(alert_id=uuid.UUID("99990000-0000-4000-8000-000000000003"))
    url = stored(sqlite_url, EARLY, recurrence)
    code, output = invoke(url, "alerts", "show", "99990000")
    assert code == 1
    assert f"is a recurrence of alert {EARLY.alert_id}" in output


@pytest.mark.parametrize("given", ["7b0c", "not-an-id", "7b0c9a5z"])
def test_an_id_too_short_or_not_hex_is_refused_in_one_line(url: str, given: str) -> None:
    code, output = invoke(url, "alerts", "show", given)
    assert code == 1
    (line,) = output.strip().splitlines()
    assert "give the UUID or its first 8 hex characters" in line
