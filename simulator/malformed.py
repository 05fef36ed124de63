"""Invalid records of the kinds real input brings: garbage, cut-off JSON, wrong schema.

They bypass the contracts on purpose; a worker must dead-letter each one with its reason
and never crash. Each defect maps to the dead-letter reason a worker should give it.
"""

from __future__ import annotations

import json
from datetime import datetime

DEFECTS = ("not_json", "truncated_json", "schema", "unknown_schema_version", "impossible_value")
EXPECTED_REASON = {
    "not_json": "not_json",
    "truncated_json": "not_json",
    "schema": "schema",
    "unknown_schema_version": "unknown_schema_version",
    "impossible_value": "impossible_value",
}
"""The dead-letter ``reason_code`` a worker should give each defect."""


def _prediction_like(site_id: str, index: int, time: datetime) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"00000000-0000-4000-8000-{index:012d}",
        "site_id": site_id,
        "device_id": "malformed-device",
        "device_version": "1.0.0.0",
        "task": "unknown",
        "case_pseudonym": f"c-malformed-{index}",
        "event_time": time.isoformat(),
        "score": 0.5,
        "decision": "positive",
        "operating_threshold": 0.5,
        "collector_version": "simulated",
    }


def malformed_value(index: int, site_id: str, time: datetime) -> tuple[str, bytes]:
    """The ``index``-th malformed record of a burst: (defect, raw bytes)."""
    defect = DEFECTS[index % len(DEFECTS)]
    record = _prediction_like(site_id, index, time)
    if defect == "not_json":
        return defect, b"\x00\xff HL7|not an event|" + str(index).encode()
    if defect == "truncated_json":
        text = json.dumps(record).encode()
        return defect, text[: len(text) // 2]
    if defect == "schema":
        del record["score"], record["decision"]
        record["unexpected_field"] = "operator note"
    elif defect == "unknown_schema_version":
        record["schema_version"] = 99
    else:
        record["score"] = 1.7
    return defect, json.dumps(record, sort_keys=True).encode()
