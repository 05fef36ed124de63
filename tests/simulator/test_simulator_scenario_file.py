"""Scenario files: the bundled ones load, and a mistake is refused with where it is."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import simulator.calibration
from simulator.scenario import ScenarioError, load_scenario
from tests.simulator.conftest import SCENARIOS

SMALL = (SCENARIOS / "small.toml").read_text()


@pytest.mark.parametrize("name", ["demo.toml", "small.toml"])
def test_the_bundled_scenarios_load(name: str) -> None:
    scenario = load_scenario(SCENARIOS / name)
    assert scenario.sites and scenario.devices and scenario.injections


def test_the_demo_injects_every_kind_of_change() -> None:
    kinds = {i.kind for i in load_scenario(SCENARIOS / "demo.toml").injections}
    assert kinds == {
        "scanner_change",
        "version_rollout",
        "site_silence",
        "malformed_burst",
        "malformed_batch",
        "backfill",
    }


def test_the_seed_can_be_overridden() -> None:
    assert load_scenario(SCENARIOS / "small.toml", seed=99).seed == 99


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.replace("days = 7", "days = 7\nday_count = 9"))
    with pytest.raises(ScenarioError, match="day_count"):
        load_scenario(path)


def test_an_injection_at_an_unknown_site_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.replace('site = "sim-south"\ncount', 'site = "nowhere"\ncount'))
    with pytest.raises(ScenarioError, match="nowhere"):
        load_scenario(path)


def test_a_site_without_a_scanner_for_its_device_is_refused(tmp_path: Path) -> None:
    camera = 'software_version = "1.3.0"\nmodality = "OP"'
    ct = 'software_version = "1.3.0"\nmodality = "CT"\nslice_thickness = { sub_mm = 1.0 }'
    with pytest.raises(ScenarioError, match="no OP scanner"):
        load_scenario(write(tmp_path, SMALL.replace(camera, ct)))


def test_a_backfill_must_end_before_its_upload(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.replace("to_day = 0", "to_day = 5"))
    with pytest.raises(ScenarioError, match="from_day < to_day <= day"):
        load_scenario(path)


def test_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = "))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="missing.toml"):
        load_scenario(tmp_path / "missing.toml")


def test_the_calibration_examples_run() -> None:
    result = doctest.testmod(simulator.calibration)
    assert result.attempted > 0 and result.failed == 0
