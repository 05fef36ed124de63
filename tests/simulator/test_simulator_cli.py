"""``postmarket simulate``: a dry run into a file, and clear errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from postmarket.cli import app
from tests.simulator.conftest import SCENARIOS

runner = CliRunner()


def test_simulate_writes_records_and_ground_truth(tmp_path: Path) -> None:
    records, truth = tmp_path / "records.jsonl", tmp_path / "truth.json"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--scenario",
            str(SCENARIOS / "small.toml"),
            "--output",
            str(records),
            "--ground-truth",
            str(truth),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "predictions" in result.output and str(truth) in result.output.replace("\n", "")
    assert records.read_text().count("\n") > 100 and truth.exists()


def test_simulate_reports_an_invalid_scenario(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n')
    result = runner.invoke(app, ["simulate", "--scenario", str(broken)])
    assert result.exit_code == 1
    assert "invalid scenario" in result.output


def test_simulate_reports_an_unreachable_broker(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            "--scenario",
            str(SCENARIOS / "small.toml"),
            "--bootstrap",
            "127.0.0.1:1",
            "--ground-truth",
            str(tmp_path / "truth.json"),
        ],
    )
    assert result.exit_code == 5  # the Kafka preflight's "unreachable"
    assert "Kafka at 127.0.0.1:1 is not reachable" in result.output
