"""De-identification speed and leaks on pydicom's test files, beside the usual tools.

Every readable DICOM file shipped in the pydicom wheel is read once (headers only), PHI
canaries are injected (the same ones as the corpus test: names, IDs, dates, free text
with dates, private tags, unlisted sequences nested several levels), and each tool
de-identifies its own deep copies in memory, in the same run: ours, dicognito,
dicom-anonymizer and deid, whichever are installed. The figure is files per second
relative to dicognito (goal: at least 3x; best against best, and the median of the
per-round ratios, which a noisy machine moves less) and the number of files where any
canary survived (goal: 0). Reading files is excluded for every tool alike; rates are per
CPU-second of this (single-threaded) process, so other load on the machine does not skew
them, and the tools take turns within each round.

Run with ``make bench`` or ``python bench/bench_deidentify.py``; prints a markdown table
and writes JSON to bench/results/deidentify.json.
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from collectors.deidentify import Deidentifier
from collectors.dicom_input import RejectedFile, read_header
from collectors.pseudonym import PseudonymKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the canaries live in tests/
from tests.collectors.test_deidentify_pydicom_corpus import (  # noqa: E402
    CANARY,
    CANARY_DATES,
    inject_canaries,
)

ROUNDS = 7
RESULTS = Path(__file__).parent / "results" / "deidentify.json"

Tool = Callable[[Dataset], None]


def corpus() -> list[Dataset]:
    """Canary-injected headers of every pydicom test file the collector can read."""
    headers = []
    for name in sorted(get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        try:
            header = read_header(path)
        except RejectedFile:
            continue
        inject_canaries(header)
        headers.append(header)
    return headers


def leaked(header: Dataset) -> bool:
    """Whether any canary (text or date) survives anywhere in the header."""
    texts = []
    for element in header.iterall():
        value = element.value
        if isinstance(value, Sequence):
            continue
        texts.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    blob = "\n".join(texts).upper()
    return CANARY in blob or any(date in blob for date in CANARY_DATES)


def tools() -> dict[str, Tool]:
    """Every tool that is installed, as one call on a Dataset (in place)."""
    found: dict[str, Tool] = {}
    ours = Deidentifier(PseudonymKey(b"bench-site-secret-0123456789abcdefghijkl"))
    found["postmarket"] = lambda ds: None if ours.deidentify(ds) else None
    try:
        from dicognito.anonymizer import Anonymizer

        dicognito = Anonymizer()
        found["dicognito"] = dicognito.anonymize
    except ImportError:
        pass
    try:
        from dicomanonymizer import anonymize_dataset

        found["dicom-anonymizer"] = lambda ds: anonymize_dataset(ds, delete_private_tags=True)
    except ImportError:
        pass
    try:
        from deid.dicom.parser import DicomParser
        from deid.logger import bot

        bot.level = 0  # deid prints a warning per file otherwise

        def deid(ds: Dataset) -> None:
            DicomParser(ds).parse(remove_private=True)

        found["deid"] = deid
    except ImportError:
        pass
    return found


def one_pass(tool: Tool, headers: list[Dataset]) -> tuple[float, int, int]:
    """Files/s of one pass over fresh copies, its failures, and files that leaked."""
    copies = [copy.deepcopy(h) for h in headers]
    failures = 0
    start = time.process_time()  # CPU time: other jobs on a shared machine do not count
    for header in copies:
        try:
            tool(header)
        except Exception:
            failures += 1
    rate = len(copies) / (time.process_time() - start)
    return rate, failures, sum(1 for header in copies if leaked(header))


def measure(tools: dict[str, Tool], headers: list[Dataset]) -> dict[str, dict[str, float]]:
    """Best files/s of each tool over ROUNDS, the tools taking turns within each round
    (so a busy moment on a shared machine hits all of them, not one), and the median over
    rounds of each tool's rate relative to dicognito's in the same round."""
    results: dict[str, dict[str, float]] = {}
    rates: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(ROUNDS):
        for name, tool in tools.items():
            rate, failures, leaks = one_pass(tool, headers)
            rates[name].append(rate)
            best = results.get(name, {}).get("files_per_s", 0.0)
            results[name] = {
                "files_per_s": max(best, rate),
                "failures": failures,
                "files_with_leaks": leaks,
            }
    peer = rates.get("dicognito")
    if peer:
        for name, own in rates.items():
            ratios = [rate / peer_rate for rate, peer_rate in zip(own, peer, strict=True)]
            results[name]["median_ratio_to_dicognito"] = statistics.median(ratios)
    return results


def main() -> dict[str, dict[str, float]]:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    headers = corpus()
    results = measure(tools(), headers)
    peer = results.get("dicognito", {}).get("files_per_s")
    print(f"{len(headers)} pydicom test files, canaries injected; best of {ROUNDS} rounds\n")
    print(
        "| tool | files/s | x dicognito | median x dicognito per round | failures"
        " | files with canary leaks |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        ratio = f"{row['files_per_s'] / peer:.2f}" if peer else "n/a"
        median = row.get("median_ratio_to_dicognito")
        per_round = "n/a" if median is None else f"{median:.2f}"
        print(
            f"| {name} | {row['files_per_s']:.0f} | {ratio} | {per_round}"
            f" | {row['failures']:.0f} | {row['files_with_leaks']:.0f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"files": len(headers), "tools": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
