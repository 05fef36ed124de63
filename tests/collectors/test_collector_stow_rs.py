"""STOW-RS: an aiohttp client POSTs real multipart/related bodies of pydicom's test files to
the real endpoint on loopback; what it stores takes the C-STORE SCP's path into the inbox,
and what it refuses is answered per PS3.18 and counted."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydicom.data import get_testdata_file

from collectors.case_index import CaseIndex
from collectors.deidentify import Deidentifier
from collectors.dicom_input import read_header
from collectors.events import DicomCase, dicom_case
from collectors.intake import Intake
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.preflight import load_secrets
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from collectors.pseudonym import PseudonymKey, case_pseudonym
from collectors.service import Collector
from collectors.settings import (
    CollectorConfigError,
    InboxSettings,
    StoreSCPSettings,
    StowRSSettings,
    load_settings,
)
from collectors.store_scp import StoreSCP
from collectors.stow_rs import (
    FAILURE_CANNOT_UNDERSTAND,
    FAILURE_OUT_OF_RESOURCES,
    FAILURE_STUDY_MISMATCH,
    StowRSServer,
)
from collectors.watched_folder import WatchedFolder
from launcher.stack.processes import free_port
from postmarket.secrets import SecretFileError, write_secret_file
from tests.collectors.site_settings import site_settings
from tests.collectors.test_collector_store_scp import send
from tests.tls_certificates import self_signed_certificate

EXAMPLE = Path(__file__).parents[2] / "collectors" / "collector.example.toml"
KEY = PseudonymKey(b"stow-test-site-secret-0123456789abcdefghij")
TOKEN = b"stow-test-token-0123456789abcdef"
STOW_TYPE = 'multipart/related; type="application/dicom"'
REFERENCED = "00081199"
FAILED = "00081198"
SOP_CLASS, SOP_INSTANCE, FAILURE_REASON = "00081150", "00081155", "00081197"
REFUSED = "postmarket_collector_stow_requests_refused_total"
REJECTED = "postmarket_collector_files_rejected_total"


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return Path(str(path))


CT, MR = pydicom_file("CT_small.dcm"), pydicom_file("MR_small.dcm")


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, list[str]]


def multipart(*parts: bytes | tuple[bytes, str]) -> tuple[bytes, str]:
    """A multipart/related body written out by hand (PS3.18 8.6.1.2), and its boundary;
    each part is application/dicom unless given as ``(content, media type)``."""
    boundary = uuid.uuid4().hex.encode()
    body = b""
    for part in parts:
        content, media_type = part if isinstance(part, tuple) else (part, "application/dicom")
        body += b"--%s\r\nContent-Type: %s\r\n\r\n%s\r\n" % (
            boundary,
            media_type.encode(),
            content,
        )
    return body + b"--%s--\r\n" % boundary, boundary.decode()


def post(
    server: StowRSServer,
    body: bytes,
    content_type: str,
    token: bytes | None = TOKEN,
    path: str = "/studies",
    tls: ssl.SSLContext | None = None,
    chunked: bool = False,
) -> Answer:
    """POST ``body`` with a real aiohttp client; the status, JSON (or text) and headers."""
    host, port = server.address
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = "Bearer " + token.decode()

    async def pieces() -> Any:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    async def request() -> Answer:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{server.scheme}://{host}:{port}{path}",
                data=pieces() if chunked else body,
                headers=headers,
                ssl=tls if tls is not None else False,
            ) as response:
                text = await response.text()
                is_json = response.content_type == "application/dicom+json"
                return Answer(
                    response.status,
                    json.loads(text) if is_json else text,
                    {k: response.headers.getall(k) for k in response.headers},
                )

    return asyncio.run(request())


def uids(items: list[dict[str, Any]]) -> list[tuple[str | None, str | None]]:
    def value(item: dict[str, Any], tag: str) -> str | None:
        return item[tag]["Value"][0] if tag in item else None

    return [(value(i, SOP_CLASS), value(i, SOP_INSTANCE)) for i in items]


def sop_uids(path: Path) -> tuple[str, str]:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    return str(header.SOPClassUID), str(header.SOPInstanceUID)


def stored(inbox: Path) -> list[Path]:
    return sorted(inbox.glob("stow-*.dcm"))


Serve = Callable[..., StowRSServer]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def serve(tmp_path: Path, registry: CollectorRegistry) -> Iterator[Serve]:
    """Starts an endpoint on a free loopback port with the test token (settings and
    ``max_instance_bytes`` overridable); stops it after the test."""
    token_file = tmp_path / "stow.token"
    write_secret_file(token_file, TOKEN + b"\n")
    started: list[StowRSServer] = []

    def start(max_instance_bytes: int | None = None, **settings: Any) -> StowRSServer:
        fields: dict[str, Any] = {"port": 0, "token_file": token_file} | settings
        server = StowRSServer(
            StowRSSettings(**fields),
            tmp_path / "inbox",
            CollectorMetrics.create(registry),
            max_instance_bytes=max_instance_bytes,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def stow(serve: Serve) -> StowRSServer:
    return serve()


# --- stored ---------------------------------------------------------------------------------


def test_one_instance_is_stored_in_the_inbox_and_referenced(stow: StowRSServer) -> None:
    body, boundary = multipart(CT.read_bytes())
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 200
    assert uids(answer.body[REFERENCED]["Value"]) == [sop_uids(CT)]
    assert FAILED not in answer.body
    [received] = stored(stow.inbox)
    assert received.read_bytes() == CT.read_bytes()
    assert sorted(p.name for p in stow.inbox.iterdir()) == [received.name]  # no spool left


def test_unquoted_type_and_chunked_body_are_accepted(stow: StowRSServer) -> None:
    body, boundary = multipart(CT.read_bytes(), MR.read_bytes())
    content_type = f"multipart/related; type=application/dicom; boundary={boundary}"
    answer = post(stow, body, content_type, chunked=True)
    assert answer.status == 200
    assert uids(answer.body[REFERENCED]["Value"]) == [sop_uids(CT), sop_uids(MR)]
    assert len(stored(stow.inbox)) == 2


def test_stow_and_c_store_give_the_same_deidentified_result(
    stow: StowRSServer, tmp_path: Path
) -> None:
    """The same file, sent both ways, is the same de-identified header and the same case."""
    scp = StoreSCP(StoreSCPSettings(port=0, allowed_calling_ae_titles=("PACS1",)), tmp_path / "scp")
    scp.start()
    try:
        assert send(scp.address, "PACS1", [CT, MR]) == [0, 0]
    finally:
        scp.stop()
    body, boundary = multipart(CT.read_bytes(), MR.read_bytes())
    assert post(stow, body, f"{STOW_TYPE}; boundary={boundary}").status == 200

    def deidentified(inbox: Path) -> dict[str, tuple[DicomCase, pydicom.Dataset]]:
        cases = {}
        for path in inbox.glob("*.dcm"):
            header = read_header(path)
            sop_instance = str(header.SOPInstanceUID)
            case = dicom_case(path, header, Deidentifier(KEY))
            cases[sop_instance] = (case, header)
        return cases

    by_scp, by_stow = deidentified(scp.inbox), deidentified(stow.inbox)
    assert sorted(by_stow) == sorted(by_scp) and len(by_stow) == 2
    for sop_instance, (case, header) in by_stow.items():
        assert case == by_scp[sop_instance][0]
        assert header == by_scp[sop_instance][1]
        assert "PatientName" not in header or str(header.PatientName) != "CompressedSamples^CT1"


def test_stored_instances_reach_the_case_index_through_the_watched_folder(
    stow: StowRSServer, tmp_path: Path
) -> None:
    body, boundary = multipart(CT.read_bytes())
    assert post(stow, body, f"{STOW_TYPE}; boundary={boundary}").status == 200
    with Outbox(tmp_path / "outbox.db") as outbox, CaseIndex(tmp_path / "cases.db") as cases:
        intake = Intake("site-a", KEY, outbox, cases, CollectorMetrics.create(CollectorRegistry()))
        folder = WatchedFolder(InboxSettings(path=stow.inbox, settle_seconds=0), intake)
        assert folder.scan_once() == 1
        study = pydicom.dcmread(CT, stop_before_pixels=True).StudyInstanceUID
        assert cases.acquisition(case_pseudonym(KEY, study)) is not None


def test_https_when_a_certificate_is_configured(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    cert_file, key_file = certificate(tmp_path)
    server = serve(tls_cert_file=cert_file, tls_key_file=key_file)
    assert server.scheme == "https"
    trusted = ssl.create_default_context(cafile=str(cert_file))
    body, boundary = multipart(MR.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}", tls=trusted)
    assert answer.status == 200
    assert len(stored(tmp_path / "inbox")) == 1


# --- instances refused inside a request -------------------------------------------------------


def test_mixed_request_stores_the_dicom_part_and_fails_the_other(
    stow: StowRSServer, registry: CollectorRegistry
) -> None:
    body, boundary = multipart(CT.read_bytes(), b"Patient: Jane Doe, not a DICOM file\n")
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 202
    assert uids(answer.body[REFERENCED]["Value"]) == [sop_uids(CT)]
    [failed] = answer.body[FAILED]["Value"]
    assert failed[FAILURE_REASON]["Value"] == [FAILURE_CANNOT_UNDERSTAND]
    assert any("instance 2: not a DICOM file" in w for w in answer.headers["Warning"])
    assert len(stored(stow.inbox)) == 1
    assert sorted(p.name for p in stow.inbox.iterdir()) == [p.name for p in stored(stow.inbox)]
    assert registry.get_sample_value(REJECTED, {"reason": "not_dicom"}) == 1


def test_part_of_another_media_type_fails_and_the_next_is_still_stored(
    stow: StowRSServer, registry: CollectorRegistry
) -> None:
    body, boundary = multipart((b'{"00100010": {"vr": "PN"}}', "application/json"), MR.read_bytes())
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 202
    assert uids(answer.body[REFERENCED]["Value"]) == [sop_uids(MR)]
    assert any("instance 1: part of type application/json" in w for w in answer.headers["Warning"])
    assert registry.get_sample_value(REJECTED, {"reason": "not_dicom"}) == 1


def test_instance_over_max_dicom_bytes_fails_with_out_of_resources(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    limit = (MR.stat().st_size + CT.stat().st_size) // 2
    assert MR.stat().st_size < limit < CT.stat().st_size
    server = serve(max_instance_bytes=limit)
    body, boundary = multipart(CT.read_bytes(), MR.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 202
    assert uids(answer.body[REFERENCED]["Value"]) == [sop_uids(MR)]
    assert answer.body[FAILED]["Value"][0][FAILURE_REASON]["Value"] == [FAILURE_OUT_OF_RESOURCES]
    assert any("max_dicom_bytes" in w for w in answer.headers["Warning"])
    assert registry.get_sample_value(REJECTED, {"reason": "too_large"}) == 1


def test_instance_of_another_study_than_the_url_fails_with_409(
    stow: StowRSServer, registry: CollectorRegistry
) -> None:
    body, boundary = multipart(CT.read_bytes())
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}", path="/studies/1.2.3.4")
    assert answer.status == 409
    [failed] = answer.body[FAILED]["Value"]
    assert failed[FAILURE_REASON]["Value"] == [FAILURE_STUDY_MISMATCH]
    assert uids([failed]) == [sop_uids(CT)]
    assert stored(stow.inbox) == []
    assert registry.get_sample_value(REJECTED, {"reason": "study_mismatch"}) == 1


def test_instance_of_the_url_study_is_stored(stow: StowRSServer) -> None:
    study = pydicom.dcmread(CT, stop_before_pixels=True).StudyInstanceUID
    body, boundary = multipart(CT.read_bytes())
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}", path=f"/studies/{study}")
    assert answer.status == 200


# --- requests refused whole -------------------------------------------------------------------


def test_body_over_the_declared_request_limit_is_refused_with_413(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    server = serve(max_request_bytes=CT.stat().st_size)
    body, boundary = multipart(CT.read_bytes(), MR.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 413
    assert "max_request_bytes" in answer.body
    assert list((tmp_path / "inbox").iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "too_large"}) == 1


def test_chunked_body_over_the_request_limit_is_refused_and_leaves_nothing(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    """Without a Content-Length the limit is enforced while reading; the instances read so
    far are not stored."""
    server = serve(max_request_bytes=MR.stat().st_size + CT.stat().st_size // 2)
    body, boundary = multipart(MR.read_bytes(), CT.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}", chunked=True)
    assert answer.status == 413
    assert list((tmp_path / "inbox").iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "too_large"}) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        'multipart/related; type="application/dicom+json"; boundary=b',
        "multipart/form-data; boundary=b",
        "",
    ],
)
def test_wrong_content_type_is_refused_with_415(
    stow: StowRSServer, registry: CollectorRegistry, content_type: str
) -> None:
    answer = post(stow, CT.read_bytes(), content_type)
    assert answer.status == 415
    assert "multipart/related" in answer.body or "application/dicom" in answer.body
    assert list(stow.inbox.iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "unsupported_media_type"}) == 1


def test_body_that_is_not_multipart_is_refused_with_400(
    stow: StowRSServer, registry: CollectorRegistry
) -> None:
    answer = post(stow, CT.read_bytes(), f"{STOW_TYPE}; boundary=nowhere-in-the-body")
    assert answer.status == 400
    assert "Traceback" not in answer.body
    assert list(stow.inbox.iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "malformed"}) == 1


@pytest.mark.parametrize("token", [None, b"guessed-token"])
def test_missing_or_wrong_token_is_refused_with_401(
    stow: StowRSServer, registry: CollectorRegistry, token: bytes | None
) -> None:
    body, boundary = multipart(CT.read_bytes())
    answer = post(stow, body, f"{STOW_TYPE}; boundary={boundary}", token=token)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"][0].startswith("Bearer")
    assert TOKEN.decode() not in answer.body
    assert list(stow.inbox.iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "unauthenticated"}) == 1


def test_token_never_reaches_the_log(stow: StowRSServer, caplog: pytest.LogCaptureFixture) -> None:
    body, boundary = multipart(CT.read_bytes(), b"not dicom")
    caplog.set_level("DEBUG")
    post(stow, body, f"{STOW_TYPE}; boundary={boundary}")
    post(stow, body, f"{STOW_TYPE}; boundary={boundary}", token=TOKEN[:-1])
    assert "refused STOW-RS request" in caplog.text
    assert TOKEN.decode() not in caplog.text
    assert TOKEN[:-1].decode() not in caplog.text


def test_peer_not_on_the_allow_list_is_refused_with_403(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    server = serve(allowed_peers=("10.9.9.0/24",))
    body, boundary = multipart(CT.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}")
    assert answer.status == 403
    assert list((tmp_path / "inbox").iterdir()) == []
    assert registry.get_sample_value(REFUSED, {"reason": "peer_not_allowed"}) == 1


def test_allowed_peer_needs_no_token_when_none_is_configured(
    serve: Serve, tmp_path: Path, registry: CollectorRegistry
) -> None:
    server = serve(allowed_peers=("127.0.0.1",), token_file=None)
    body, boundary = multipart(CT.read_bytes())
    answer = post(server, body, f"{STOW_TYPE}; boundary={boundary}", token=None)
    assert answer.status == 200


# --- settings ---------------------------------------------------------------------------------


def test_an_endpoint_open_to_anyone_is_refused() -> None:
    with pytest.raises(ValidationError, match="allowed_peers, token_file or both"):
        StowRSSettings()


def test_a_token_file_others_can_read_refuses_start(tmp_path: Path) -> None:
    token_file = tmp_path / "stow.token"
    token_file.write_bytes(TOKEN)
    token_file.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600") as refused:
        StowRSServer(StowRSSettings(token_file=token_file), tmp_path / "inbox")
    assert TOKEN.decode() not in str(refused.value)


def test_a_port_in_use_is_an_os_error_and_leaves_no_thread(serve: Serve, tmp_path: Path) -> None:
    taken = serve()
    second = StowRSServer(
        StowRSSettings(port=taken.address[1], allowed_peers=("127.0.0.1",)), tmp_path / "inbox"
    )
    with pytest.raises(OSError):
        second.start()
    assert [t.name for t in threading.enumerate()].count("stow-rs") == 1


def test_stow_rs_table_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
        '[collector.inbox]\npath = "inbox"\n'
        '[collector.stow_rs]\nport = 8104\ntoken_file = "secrets/stow.token"\n'
        'allowed_peers = ["10.0.0.0/8"]\n'
    )
    settings = load_settings(config, environ={})
    assert settings.stow_rs is not None
    assert settings.stow_rs.token_file == tmp_path / "secrets" / "stow.token"
    assert settings.stow_rs.host == "127.0.0.1"


STOW_RS_TABLE = (
    '[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n'
    '[collector.inbox]\npath = "inbox"\n'
    '[collector.stow_rs]\nport = 8104\ntoken_file = "secrets/stow.token"\n'
)


def test_the_token_file_variable_overrides_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(STOW_RS_TABLE)
    mounted = tmp_path / "run" / "secrets" / "stow-token"  # e.g. a Docker or Kubernetes secret
    settings = load_settings(config, environ={"POSTMARKET_STOW_TOKEN_FILE": str(mounted)})
    assert settings.stow_rs is not None and settings.stow_rs.token_file == mounted
    assert settings.stow_rs.port == 8104  # the rest of the table stays


def test_the_token_file_variable_guards_an_endpoint_the_toml_file_leaves_open(
    tmp_path: Path,
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(STOW_RS_TABLE.replace('token_file = "secrets/stow.token"\n', ""))
    with pytest.raises(CollectorConfigError, match="allowed_peers, token_file or both"):
        load_settings(config, environ={})
    token_file = tmp_path / "stow.token"
    settings = load_settings(config, environ={"POSTMARKET_STOW_TOKEN_FILE": str(token_file)})
    assert settings.stow_rs is not None and settings.stow_rs.token_file == token_file


def test_the_token_file_variable_never_turns_stow_rs_on(tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text('[collector]\nsite_id = "site-a"\npseudonym_key_file = "site.key"\n')
    secret_path = str(tmp_path / "stow.token")
    with pytest.raises(CollectorConfigError) as refused:
        load_settings(config, environ={"POSTMARKET_STOW_TOKEN_FILE": secret_path})
    assert str(refused.value).startswith("POSTMARKET_STOW_TOKEN_FILE is set but STOW-RS is off")
    assert "[collector.stow_rs]" in str(refused.value) and secret_path not in str(refused.value)


def readable_by_others(token: Path) -> None:
    write_secret_file(token, TOKEN)
    token.chmod(0o644)


@pytest.mark.parametrize(
    ("prepare", "why"),
    [
        (lambda token: None, "does not exist"),
        (readable_by_others, "chmod 600"),
        (lambda token: write_secret_file(token, b"\n"), "is empty"),
    ],
    ids=["missing", "mode-644", "empty"],
)
def test_an_unusable_token_file_from_the_variable_refuses_start_naming_the_variable(
    tmp_path: Path, prepare: Callable[[Path], object], why: str
) -> None:
    write_secret_file(tmp_path / "site.key", b"collector-test-site-secret-0123456789abcdef")
    config = tmp_path / "collector.toml"
    config.write_text(STOW_RS_TABLE)
    token_file = tmp_path / "run-secrets" / "stow-token"
    token_file.parent.mkdir()
    prepare(token_file)
    settings = load_settings(config, environ={"POSTMARKET_STOW_TOKEN_FILE": str(token_file)})
    with pytest.raises(CollectorConfigError) as refused:
        load_secrets(settings)  # what `collector run` and `collector check` read at start
    message = str(refused.value)
    assert message.startswith("[collector.stow_rs]: token_file (POSTMARKET_STOW_TOKEN_FILE): ")
    assert str(token_file) in message and why in message
    assert TOKEN.decode() not in message


def test_the_example_stow_rs_section_loads_once_uncommented(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [collector.stow_rs]")
    for number in range(start, len(lines)):
        if not lines[number].startswith("# "):
            break
        lines[number] = lines[number][2:]
    config = tmp_path / "collector.toml"
    config.write_text("\n".join(lines) + "\n")
    settings = load_settings(config, environ={})
    assert settings.stow_rs is not None and settings.stow_rs.port == 8104
    assert settings.stow_rs.tls_key_file == tmp_path / "tls" / "stow.key"
    assert len(settings.stow_rs.allowed_peers) == 2


# --- in the collector ---------------------------------------------------------------------------


class NoBroker:
    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        raise DeliveryError("no broker in this test")

    def close(self) -> None:
        pass


def listening(server: StowRSServer) -> bool:
    try:
        return bool(server.address)
    except RuntimeError:  # not started yet
        return False


def test_the_collector_serves_stow_rs_into_its_watched_folder(tmp_path: Path) -> None:
    token_file = tmp_path / "stow.token"
    write_secret_file(token_file, TOKEN)
    inbox = InboxSettings(path=tmp_path / "inbox", poll_seconds=0.05, settle_seconds=0)
    stow_rs = StowRSSettings(port=free_port(), token_file=token_file)
    collector = Collector(site_settings(tmp_path, inbox=inbox, stow_rs=stow_rs), connect=NoBroker)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        assert collector.stow_rs is not None
        while not listening(collector.stow_rs):
            assert time.monotonic() < deadline, "STOW-RS did not start"
            time.sleep(0.05)
        body, boundary = multipart(CT.read_bytes())
        assert post(collector.stow_rs, body, f"{STOW_TYPE}; boundary={boundary}").status == 200
        accepted = "postmarket_collector_inputs_accepted_total"
        while collector.registry.get_sample_value(accepted, {"kind": "dicom"}) != 1:
            assert time.monotonic() < deadline, "the watched folder did not take the instance"
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert [p.name[:5] for p in inbox.processed_dir.iterdir()] == ["stow-"]


def test_a_token_file_others_can_read_refuses_the_collector_start(tmp_path: Path) -> None:
    token_file = tmp_path / "stow.token"
    token_file.write_bytes(TOKEN)
    token_file.chmod(0o644)
    settings = site_settings(
        tmp_path,
        inbox=InboxSettings(path=tmp_path / "inbox"),
        stow_rs=StowRSSettings(token_file=token_file),
    )
    with pytest.raises(CollectorConfigError, match=r"\[collector.stow_rs\].*chmod 600"):
        Collector(settings, connect=NoBroker)


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its 0600 key."""
    return self_signed_certificate(tmp_path, "stow")
