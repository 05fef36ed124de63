"""JSON Schema files for every contract, for producers that are not written in Python.

``postmarket schemas export`` writes them under ``schemas/``; a test fails when the
committed files differ from what the contracts generate.
"""

from __future__ import annotations

import json
from pathlib import Path

from postmarket.contracts.codec import CONTRACT_BY_TOPIC


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text, one per topic, named after the topic."""
    rendered = {}
    for topic, contract in CONTRACT_BY_TOPIC.items():
        schema = contract.model_json_schema(mode="validation")
        schema["$id"] = f"urn:postmarket:schema:{topic}"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        rendered[f"{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def export_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; remove stale ones; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for stale in directory.glob("*.schema.json"):
        if stale.name not in rendered:
            stale.unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
