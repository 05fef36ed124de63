"""The command blocks of README.md, docs/hospital-it.md and docs/regulator.md work when pasted.

Every fenced ``bash``, ``console`` or ``sh`` block of those pages runs as one bash script
(``-e -o pipefail``: the first failing command fails the test) in a fresh temporary
directory, with the project's ``postmarket`` first on PATH and no ``POSTMARKET_*`` setting
from the caller's shell; a traceback anywhere in its output fails too. A block may be
preceded by one mark, an HTML comment the reader does not see:

- ``<!-- doc-test: skip (why) -->``: not run, for the few that need a hospital system,
  another machine or a long-running server, or that are the ``make`` targets themselves;
  the reason is required and shown in the skip.
- ``<!-- doc-test: setup NAME -->``: run after :data:`SETUPS` ``NAME`` has put in the
  directory what the page tells the reader to have (a configuration, a study, a store) or
  started what it says is running, against the real stack where it needs one.
- ``<!-- doc-test: synopsis -->``: a list of commands with placeholders, not a script:
  each command it names must exist (``postmarket GROUP COMMAND --help`` exits 0).

docs/manufacturer.md's blocks run here only when marked with a setup (its site-keys and
report blocks); its registry, alerts and testdb examples run in tests/evidence
(test_manufacturer_doc_commands.py, test_testdb_gate.py, test_testdb_dicom.py), on stores
they build command by command, and a test here fails when a command of another group is in
a block that runs nowhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

REPO = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/hospital-it.md", "docs/regulator.md")
MARKED_ONLY_PAGES = ("docs/manufacturer.md",)
"""Pages whose blocks run here only when they carry a setup mark (see the module docstring)."""
RUN_IN_TESTS_EVIDENCE = {"registry", "alerts", "testdb"}
"""The ``postmarket`` groups whose docs/manufacturer.md examples tests/evidence runs."""
COMMAND_LANGUAGES = {"bash", "console", "sh"}
BLOCK = re.compile(
    r"(?:^[ \t]*<!--\s*doc-test:\s*(?P<mark>.*?)\s*-->[ \t]*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<language>[a-z]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
MARK = re.compile(
    r"^(?:skip \((?P<reason>[^)]+)\)|setup (?P<setup>[a-z-]+)|(?P<synopsis>synopsis))$"
)
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    body: str
    mark: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(page: str) -> list[Block]:
    text = (REPO / page).read_text(encoding="utf-8")
    blocks = []
    for found in BLOCK.finditer(text):
        indent = found["indent"]
        body = "".join(
            line.removeprefix(indent) for line in found["body"].splitlines(keepends=True)
        )
        line = text.count("\n", 0, found.start("indent")) + 1
        blocks.append(Block(page, line, found["language"], body, found["mark"]))
    return blocks


def command_blocks() -> list[Block]:
    every = [b for page in PAGES for b in page_blocks(page) if b.language in COMMAND_LANGUAGES]
    marked = [
        b
        for page in MARKED_ONLY_PAGES
        for b in page_blocks(page)
        if b.language in COMMAND_LANGUAGES and b.mark is not None
    ]
    return every + marked


@dataclass
class Directory:
    """Where a block runs: its folder, environment, and text the page's paths map to."""

    path: Path
    environment: dict[str, str]
    rewrites: dict[str, str] = field(default_factory=dict)
    preamble: str = ""
    expected: list[Callable[[str], None]] = field(default_factory=list)
    """Checks of the block's output (stdout and stderr) beyond its exit status."""


def clean_environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, name
    return Path(str(found))


# -- setups: what a page says the reader already has ------------------------------------


def etc_postmarket(directory: Directory, request: pytest.FixtureRequest) -> None:
    """/etc/postmarket is the page's folder for keys; here a folder of the test's own.
    ``chown postmarket:`` is a no-op: the test machine has no ``postmarket`` user (and
    the files are already owned by whoever runs the collector)."""
    (directory.path / "etc" / "postmarket").mkdir(parents=True)
    directory.rewrites["/etc/postmarket"] = str(directory.path / "etc" / "postmarket")
    directory.preamble = "chown() { :; }\n"
    keys = directory.path / "etc" / "postmarket"

    def keys_are_private(output: str) -> None:
        written = list(keys.iterdir())
        assert written, output
        assert all(key.stat().st_mode & 0o777 == 0o600 for key in written), written

    directory.expected.append(keys_are_private)


AI_OUTPUT_TEMPLATE = {
    "device_id": "dr-screen",
    "device_version": "2.1.0.3",
    "task": "referable_dr",
    "score": 0.91,
    "decision": "positive",
    "operating_threshold": 0.5,
    "event_time": "2026-04-03T10:15:00Z",
}


def collector_config(directory: Directory, request: pytest.FixtureRequest) -> None:
    """The files below; ``check`` accepts the configuration and shows the prediction event
    without the study's identifiers."""
    collector_files(directory, request)
    header = pydicom.dcmread(directory.path / "study.dcm", stop_before_pixels=True)

    def shows_the_prediction(output: str) -> None:
        assert "configuration ok: site site-a" in output
        assert '"case_pseudonym"' in output and '"score":0.91' in output.replace(" ", "")
        assert str(header.StudyInstanceUID) not in output.split("configuration ok", 1)[1]

    directory.expected.append(shows_the_prediction)


def collector_files(directory: Directory, request: pytest.FixtureRequest) -> None:
    """collector.toml from collectors/collector.example.toml (pointed at the real broker),
    its keys, and one input of each kind the check block names."""
    stack: Any = request.getfixturevalue("kafka_stack")
    root = directory.path
    config = (REPO / "collectors" / "collector.example.toml").read_text(encoding="utf-8")
    config = config.replace('"127.0.0.1:9092"', f'"{stack.settings.kafka_bootstrap}"')
    config = config.replace(
        '# signing_key_file = "signing.pem"', 'signing_key_file = "signing.pem"'
    )
    (root / "collector.toml").write_text(config, encoding="utf-8")
    key = root / "site.key"
    key.write_bytes(b"doc-test-site-secret-0123456789abcdefghijkl")
    key.chmod(0o600)
    subprocess.run(
        [BIN / "postmarket", "collector", "keygen", "--out", "signing.pem", "--site", "site-a"],
        cwd=root, env=directory.environment, check=True, capture_output=True,
    )  # fmt: skip
    study = pydicom_file("CT_small.dcm")
    shutil.copy(study, root / "study.dcm")
    header = pydicom.dcmread(study, stop_before_pixels=True)
    ai = AI_OUTPUT_TEMPLATE | {"study_instance_uid": str(header.StudyInstanceUID)}
    (root / "ai.json").write_text(json.dumps(ai), encoding="utf-8")
    (root / "results.csv").write_text(
        f"Accession,Diagnosis,Report date\n{header.get('AccessionNumber') or 'A1'},benign,"
        "03.04.2026\n",
        encoding="utf-8",
    )


STOW_PORT, MLLP_PORT = 8104, 2575
"""The ports the page's examples send to (the collector's STOW-RS default, HL7's port)."""


def stow_rs_running(directory: Directory, request: pytest.FixtureRequest) -> None:
    """The collector below; the answer names the stored instance (ReferencedSOPSequence)."""
    collector_running(directory, request)
    sop_uid = str(pydicom.dcmread(pydicom_file("CT_small.dcm")).SOPInstanceUID)

    def stored(output: str) -> None:
        answer = json.loads(output)
        assert answer["00081199"]["Value"][0]["00081155"]["Value"] == [sop_uid], answer
        assert "00081198" not in answer  # no FailedSOPSequence

    directory.expected.append(stored)


def mllp_running(directory: Directory, request: pytest.FixtureRequest) -> None:
    """The collector below; the result is acknowledged AA with the message's control id."""
    collector_running(directory, request)
    directory.expected.append(lambda output: _assert_in("MSA|AA|T1", output))


def _assert_in(expected: str, output: str) -> None:
    assert expected in output, output


def collector_running(directory: Directory, request: pytest.FixtureRequest) -> None:
    """A collector as the page configures it, serving STOW-RS on 127.0.0.1:8104 with the
    token in secrets/stow-token and MLLP on 127.0.0.1:2575; ``body.mime`` framed as the
    page says, around CT_small.dcm."""
    for port in (STOW_PORT, MLLP_PORT):  # the page names the ports: they must be ours
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener, not TIME_WAIT
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"127.0.0.1:{port}, which the example sends to, is in use here")
    collector_files(directory, request)
    root = directory.path
    (root / "secrets").mkdir()
    token = root / "secrets" / "stow-token"
    token.write_text("doc-test-stow-token-0123456789\n", encoding="utf-8")
    token.chmod(0o600)
    config = (root / "collector.toml").read_text(encoding="utf-8")
    config = config.replace("metrics_port = 9465", f"metrics_port = 0\nmllp_port = {MLLP_PORT}")
    config = config.replace("port = 11112", "port = 0")
    config = config.replace(
        '# [collector.stow_rs]\n# host = "127.0.0.1"                     # the interface the '
        "sender reaches\n# port = 8104\n",
        f'[collector.stow_rs]\nport = {STOW_PORT}\ntoken_file = "secrets/stow-token"\n',
    )
    assert "[collector.stow_rs]\nport" in config, "the example's STOW-RS section changed"
    (root / "collector.toml").write_text(config, encoding="utf-8")
    dicom = pydicom_file("CT_small.dcm").read_bytes()
    (root / "body.mime").write_bytes(
        b"--B\r\nContent-Type: application/dicom\r\n\r\n" + dicom + b"\r\n--B--\r\n"
    )
    log = (root / "collector.log").open("wb")
    process = subprocess.Popen(
        [BIN / "postmarket", "collector", "run", "--config", "collector.toml"],
        cwd=root, env=directory.environment, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def stop() -> None:
        process.terminate()
        process.wait(timeout=30)
        log.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + 60
    for port in (STOW_PORT, MLLP_PORT):
        while True:
            assert process.poll() is None, (root / "collector.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"collector never listened on {port}"
                time.sleep(0.2)


def evidence_store(directory: Directory, request: pytest.FixtureRequest) -> None:
    """A season of dr-screen's field data in March 2026, in the default store
    (./.postmarket/evidence.db) and in ``copy.db``, the copy a regulator is given."""
    sys.path.insert(0, str(REPO / "tests" / "evidence"))  # the builders import each other so
    from report_builders import populated_store

    from evidence.store import EvidenceStore

    home = directory.path / ".postmarket"
    home.mkdir()
    with EvidenceStore(f"sqlite:///{home / 'evidence.db'}") as store:
        populated_store(store)
    shutil.copy(home / "evidence.db", directory.path / "copy.db")

    def wrote_a_report_or_named_one(output: str) -> None:
        pdfs = list(directory.path.glob("*.pdf"))
        for pdf in pdfs:
            assert pdf.read_bytes().startswith(b"%PDF-"), pdf
        named = "postmarket report --device dr-screen" in output or "trend plan" in output
        assert pdfs or named, output

    directory.expected.append(wrote_a_report_or_named_one)


def site_keys(directory: Directory, request: pytest.FixtureRequest) -> None:
    """The real broker as the configured one, site-a's IT's new key (``collector keygen``:
    its public key and key id are the page's placeholders) and the key it rotates out,
    registered earlier (the ``--at`` revocation's ``ed25519-...``); afterwards the topic
    holds the new key revoked now and the old one revoked from the page's date."""
    from postmarket.site_key_topic import read_site_keys

    stack: Any = request.getfixturevalue("kafka_stack")
    directory.environment["POSTMARKET_KAFKA_BOOTSTRAP"] = stack.settings.kafka_bootstrap
    new_key, new_key_id = _keygen(directory, "new.pem")
    old_key, old_key_id = _keygen(directory, "old.pem")
    subprocess.run(
        [BIN / "postmarket", "site-keys", "register", "--site", "site-a", "--public-key", old_key],
        cwd=directory.path, env=directory.environment, check=True, capture_output=True,
    )  # fmt: skip
    directory.rewrites |= {
        "<public key printed by keygen>": new_key,
        "ed25519-0123456789abcdef": new_key_id,
        "ed25519-...": old_key_id,
    }

    def registered_listed_and_revoked(output: str) -> None:
        assert f"registered {new_key_id} for site site-a" in output, output
        assert f"site-a\t{new_key_id}\tregistered " in output, output
        keys = {
            r.key_id: r
            for r in read_site_keys(stack.settings.kafka_bootstrap).registrations()
            if r.key_id in (new_key_id, old_key_id)
        }
        assert keys[new_key_id].site_id == keys[old_key_id].site_id == "site-a"
        assert keys[new_key_id].revoked_at is not None
        assert keys[old_key_id].revoked_at == datetime(2026, 6, 1, tzinfo=UTC)

    directory.expected.append(registered_listed_and_revoked)


def _keygen(directory: Directory, out: str) -> tuple[str, str]:
    """``collector keygen --out OUT``'s public key and key id, as it prints them."""
    done = subprocess.run(
        [BIN / "postmarket", "collector", "keygen", "--out", out, "--site", "site-a"],
        cwd=directory.path, env=directory.environment, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    printed = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    return printed["public key"].strip(), printed["key id"].strip()


def manufacturer_evidence_store(directory: Directory, request: pytest.FixtureRequest) -> None:
    """The manufacturer's PostgreSQL store at POSTMARKET_EVIDENCE_URL, holding dr-screen's
    March 2026; the audit head the page says was printed last time is this store's."""
    sys.path.insert(0, str(REPO / "tests" / "evidence"))
    from evidence_databases import fresh_postgres_database
    from report_builders import populated_store

    from evidence.audit import verify_chain
    from evidence.store import EvidenceStore

    databases = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    url = next(databases)
    request.addfinalizer(lambda: next(databases, None))
    with EvidenceStore(url) as store:
        populated_store(store)
        head = verify_chain(store.audit_entries()).head_hash
    directory.environment["POSTMARKET_EVIDENCE_URL"] = url
    directory.rewrites["9f2c...e1"] = head

    def wrote_the_report_and_verified_the_head(output: str) -> None:
        pdfs = list(directory.path.glob("*.pdf"))
        assert pdfs and all(pdf.read_bytes().startswith(b"%PDF-") for pdf in pdfs), output
        assert "audit trail intact: " in output and f"head hash {head}" in output, output

    directory.expected.append(wrote_the_report_and_verified_the_head)


SETUPS: dict[str, tuple[Callable[[Directory, pytest.FixtureRequest], None], bool]] = {
    "etc-postmarket": (etc_postmarket, False),
    "collector-config": (collector_config, True),
    "stow-rs-running": (stow_rs_running, True),
    "mllp-running": (mllp_running, True),
    "evidence-store": (evidence_store, False),
    "site-keys": (site_keys, True),
    "manufacturer-evidence-store": (manufacturer_evidence_store, True),
}
"""Each setup, and whether it needs the real stack (an integration test)."""


# -- running ------------------------------------------------------------------------------


def parse_mark(block: Block) -> re.Match[str] | None:
    if block.mark is None:
        return None
    parsed = MARK.match(block.mark)
    assert parsed is not None, f"{block.id}: unknown doc-test mark {block.mark!r}"
    return parsed


def skipped(block: Block) -> bool:
    parsed = parse_mark(block)
    return parsed is not None and parsed["reason"] is not None


def block_params() -> list[Any]:
    return list(_block_params())


def _block_params() -> Iterator[Any]:
    for block in command_blocks():
        parsed = parse_mark(block)
        marks: list[Any] = []
        if parsed is not None and parsed["reason"]:
            marks.append(pytest.mark.skip(reason=f"{block.id}: {parsed['reason']}"))
        elif parsed is not None and parsed["setup"]:
            assert parsed["setup"] in SETUPS, f"{block.id}: no setup {parsed['setup']!r}"
            if SETUPS[parsed["setup"]][1]:
                marks += [pytest.mark.integration, pytest.mark.slow]
        yield pytest.param(block, id=block.id, marks=marks)


def run_script(script: str, directory: Directory, block: Block) -> str:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", directory.preamble + script],
        cwd=directory.path,
        env=directory.environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    shown = f"{block.id}:\n{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"exited {done.returncode}: {shown}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    return done.stdout + done.stderr


def synopsis_commands(body: str) -> list[list[str]]:
    """Each ``postmarket GROUP [COMMAND]`` the synopsis names (``a | b`` names both)."""
    commands = []
    for line in body.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["postmarket"]:
            continue
        path: list[str] = []
        for i, word in enumerate(words[1:], start=1):
            if word == "|" and path:
                commands.append(path.copy())
                path.pop()
            elif re.fullmatch(r"[a-z][a-z-]*", word) and (
                words[i - 1] in ("postmarket", "|") or len(path) < 2
            ):
                path.append(word)
            else:
                break
        commands.append(path)
    return [["postmarket", *p] for p in commands]


@pytest.mark.parametrize("block", block_params())
def test_command_block_runs_as_pasted(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    directory = Directory(tmp_path, clean_environment())
    parsed = parse_mark(block)
    if parsed is not None and parsed["synopsis"]:
        commands = synopsis_commands(block.body)
        assert len(commands) >= 10, commands
        script = "\n".join(" ".join([*command, "--help"]) + " > /dev/null" for command in commands)
        run_script(script, directory, block)
        return
    if parsed is not None and parsed["setup"]:
        SETUPS[parsed["setup"]][0](directory, request)
    script = block.body
    for page_text, here in directory.rewrites.items():
        script = script.replace(page_text, here)
    output = run_script(script, directory, block)
    for check in directory.expected:
        check(output)


def test_every_page_has_blocks_that_run() -> None:
    """The extraction finds the pages' examples, and most of them run."""
    for page in PAGES:
        ran = [b for b in command_blocks() if b.page == page and not skipped(b)]
        assert ran, f"{page}: no command block runs"


def test_no_shell_command_hides_in_a_block_without_a_language() -> None:
    """A bare fence would escape this test: commands go in bash/console/sh blocks."""
    for page in PAGES:
        for block in page_blocks(page):
            if block.language == "":
                starts = [line.split()[0] for line in block.body.splitlines() if line.split()]
                assert not {"postmarket", "make", "pip", "curl"} & set(starts), block.id


def test_every_manufacturer_command_runs_here_or_in_tests_evidence() -> None:
    """A docs/manufacturer.md command outside the groups tests/evidence runs is in a
    block with a setup mark, so it runs here: an unmarked one would run nowhere."""
    for page in MARKED_ONLY_PAGES:
        for block in page_blocks(page):
            groups = {
                words[1]
                for line in block.body.splitlines()
                if (words := line.split())[:1] == ["postmarket"] and len(words) > 1
            }
            parsed = parse_mark(block)
            runs_here = parsed is not None and parsed["setup"] is not None
            assert runs_here or groups <= RUN_IN_TESTS_EVIDENCE, (block.id, groups)


def test_skips_are_few_and_each_says_why() -> None:
    blocks = command_blocks()
    assert len([b for b in blocks if skipped(b)]) <= len(blocks) // 2
