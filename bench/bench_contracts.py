"""Per-event costs a worker pays for every record, each against a peer in the same run.

- Encode+decode with the event contracts (pydantic v2, strict); the peer is
  ``json.loads``/``json.dumps`` of the same payload with no validation at all, so the ratio
  is the price of strict validation on this machine.
- Checking a record's Ed25519 signature (``SiteKeyring.verify``, libsodium); the peer is
  OpenSSL's verification of the same signature through ``cryptography``.
Run with ``make bench``; prints a markdown table and writes JSON to bench/results/.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring, canonical_message, record_signature
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


def signature_check_seconds(prediction: Prediction, raw: bytes) -> tuple[float, float]:
    """(ours, OpenSSL's) seconds to check one signed prediction record's signature."""
    site_key = SigningKey.from_seed(bytes(range(32)))
    registration = site_key.registration(prediction.site_id, prediction.event_time)
    keyring = SiteKeyring([registration])
    key = prediction.case_pseudonym.encode()
    headers = site_key.sign(topics.PREDICTIONS, key, raw)
    found = record_signature(headers)
    assert found is not None
    openssl = Ed25519PublicKey.from_public_bytes(registration.public_key_bytes)
    assert keyring.verify(headers, topics.PREDICTIONS, key, raw) == registration
    ours_s = best_per_op(lambda: keyring.verify(headers, topics.PREDICTIONS, key, raw))
    peer_s = best_per_op(
        lambda: openssl.verify(found[1], canonical_message(topics.PREDICTIONS, key, raw))
    )
    return ours_s, peer_s


def run() -> dict[str, float]:
    prediction = sample_prediction()
    raw = encode(prediction)
    payload = json.loads(raw)
    contracts_s = best_per_op(lambda: encode(decode(Prediction, raw)))
    stdlib_s = best_per_op(lambda: json.dumps(json.loads(raw)).encode())
    assert json.loads(encode(decode(Prediction, raw))) == payload
    verify_s, openssl_s = signature_check_seconds(prediction, raw)
    return {
        "contracts_roundtrip_us": contracts_s * 1e6,
        "stdlib_json_roundtrip_us": stdlib_s * 1e6,
        "ratio_contracts_to_stdlib": contracts_s / stdlib_s,
        "contracts_events_per_s": 1 / contracts_s,
        "payload_bytes": float(len(raw)),
        "signature_check_us": verify_s * 1e6,
        "openssl_signature_check_us": openssl_s * 1e6,
        "ratio_signature_check_to_openssl": verify_s / openssl_s,
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
