"""Encode+decode speed of the event contracts (pydantic v2, strict) against stdlib json.

The peer is ``json.loads``/``json.dumps`` of the same payload with no validation at all,
measured in the same run, so the ratio is the price of strict validation on this machine.
Run with ``make bench``; prints a markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from postmarket.contracts import AcquisitionFeatures, Prediction, decode, encode

ROUNDS = 5
NUMBER = 5_000


def sample_prediction() -> Prediction:
    return Prediction(
        event_id=uuid.uuid4(),
        site_id="site-a",
        device_id="dr-screen",
        device_version="2.1.0.3",
        task="referable_dr",
        case_pseudonym="c-abcdefghijklmnopqrstuvwxyz234567",
        event_time=datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        score=0.81,
        decision="positive",
        operating_threshold=0.5,
        acquisition=AcquisitionFeatures(
            modality="CT",
            manufacturer="GE MEDICAL SYSTEMS",
            model="Revolution",
            slice_thickness_mm=1.25,
            slice_thickness_band="1_2mm",
            kvp=120.0,
        ),
        collector_version="0.1.0",
    )


def best_per_op(operation: Callable[[], object]) -> float:
    """Best of ROUNDS of NUMBER calls, in seconds per call (best filters out noise)."""
    return min(timeit.repeat(operation, number=NUMBER, repeat=ROUNDS)) / NUMBER


def run() -> dict[str, float]:
    prediction = sample_prediction()
    raw = encode(prediction)
    payload = json.loads(raw)
    contracts_s = best_per_op(lambda: encode(decode(Prediction, raw)))
    stdlib_s = best_per_op(lambda: json.dumps(json.loads(raw)).encode())
    assert json.loads(encode(decode(Prediction, raw))) == payload
    return {
        "contracts_roundtrip_us": contracts_s * 1e6,
        "stdlib_json_roundtrip_us": stdlib_s * 1e6,
        "ratio_contracts_to_stdlib": contracts_s / stdlib_s,
        "contracts_events_per_s": 1 / contracts_s,
        "payload_bytes": float(len(raw)),
    }


def main(results_dir: Path) -> dict[str, float]:
    result = run()
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "contracts.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| contracts: Prediction decode+encode | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value:,.2f} |")
    return result


if __name__ == "__main__":
    main(Path(__file__).parent / "results")
