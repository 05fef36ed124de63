"""``postmarket simulate``: a dry run into a file, and clear errors."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from launcher.cli import app
from postmarket import topics
from simulator.collector_path import read_record_file, sent_events
from tests.simulator.conftest import SCENARIOS

runner = CliRunner()


def simulate_to_file(tmp_path: Path, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(
        app,
        [
            "simulate",
            "--scenario",
            str(SCENARIOS / "small.toml"),
            "--output",
            str(tmp_path / "records.jsonl"),
            "--ground-truth",
            str(tmp_path / "truth.json"),
        ],
        env=env,
    )


def test_simulate_writes_records_and_ground_truth(tmp_path: Path) -> None:
    result = simulate_to_file(tmp_path)
    truth = tmp_path / "truth.json"
    assert result.exit_code == 0, result.output
    assert "predictions" in result.output and str(truth) in result.output.replace("\n", "")
    records = read_record_file(tmp_path / "records.jsonl")
    assert len(sent_events(records)) > 100 and truth.exists()
    assert topics.INPUTS in {r.topic for r in records}


def test_simulated_collectors_follow_the_collectors_input_contract(tmp_path: Path) -> None:
    result = simulate_to_file(tmp_path, env={"POSTMARKET_INPUT_CONTRACT": "v1"})
    assert result.exit_code == 0, result.output
    sent = {r.topic for r in read_record_file(tmp_path / "records.jsonl")}
    assert topics.INPUTS not in sent and {topics.PREDICTIONS, topics.FOLLOWUPS} <= sent


def test_simulate_refuses_an_unknown_input_contract(tmp_path: Path) -> None:
    result = simulate_to_file(tmp_path, env={"POSTMARKET_INPUT_CONTRACT": "v9"})
    assert result.exit_code == 1
    assert "must be v2 or v1" in result.output and "Traceback" not in result.output


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
