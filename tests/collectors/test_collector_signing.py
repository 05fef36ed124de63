"""The collector signs every record it sends with its site's key, and keygen makes that key."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from collectors.batching import InputContract
from collectors.delivery import DeliveryLoop
from collectors.outbox import Outbox
from collectors.settings import load_settings
from launcher.cli import app
from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from tests.collectors.test_collector_outbox import FakeBroker
from tests.factories import make_followup, make_prediction

SIGNING = SigningKey.from_seed(bytes(range(32)))


def delivered(
    tmp_path: Path,
    broker: FakeBroker,
    signer: SigningKey | None = SIGNING,
    input_contract: InputContract = "v2",
) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put(make_prediction(site_id="site-a"))
        outbox.put(make_followup(site_id="site-a"))
        DeliveryLoop(outbox, lambda: broker, signer=signer, input_contract=input_contract).drain()


def test_a_batch_leaves_signed_once_by_the_sites_key(tmp_path: Path) -> None:
    broker = FakeBroker()
    delivered(tmp_path, broker)
    keyring = SiteKeyring([SIGNING.registration("site-a")])
    [record] = broker.received
    assert (record.topic, record.key) == (topics.INPUTS, b"site-a")
    registration = keyring.verify(record.headers, record.topic, record.key, record.value)
    assert registration.site_id == "site-a"


def test_every_v1_record_leaves_signed_by_the_sites_key(tmp_path: Path) -> None:
    broker = FakeBroker()
    delivered(tmp_path, broker, input_contract="v1")
    keyring = SiteKeyring([SIGNING.registration("site-a")])
    assert [r.topic for r in broker.received] == [topics.PREDICTIONS, topics.FOLLOWUPS]
    for record in broker.received:
        registration = keyring.verify(record.headers, record.topic, record.key, record.value)
        assert registration.site_id == "site-a"


def test_a_v1_resend_after_a_failed_delivery_carries_the_same_signature(tmp_path: Path) -> None:
    broker = FakeBroker(failures=1)
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put(make_prediction())
        loop = DeliveryLoop(
            outbox, lambda: broker, signer=SIGNING, max_backoff=0.01, input_contract="v1"
        )
        first = outbox.pending()[0].record.signed(SIGNING)
        loop.drain()
    assert broker.received == [first]


def test_without_a_signing_key_records_leave_unsigned(tmp_path: Path) -> None:
    broker = FakeBroker()
    delivered(tmp_path, broker, signer=None)
    assert broker.received and all(record.headers == () for record in broker.received)


def test_the_signing_key_file_comes_from_the_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "signing.pem"
    SIGNING.write(key_file)
    settings = load_settings(
        environ={
            "POSTMARKET_SITE_ID": "site-a",
            "POSTMARKET_PSEUDONYM_KEY_FILE": str(tmp_path / "site.key"),
            "POSTMARKET_SIGNING_KEY_FILE": str(key_file),
        }
    )
    key = settings.signing_key()
    assert key is not None and key.key_id == SIGNING.key_id


def test_keygen_writes_a_private_key_and_prints_only_its_public_half(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "signing.pem"
    result = CliRunner().invoke(app, ["collector", "keygen", "--out", str(out), "--site", "h1"])
    assert result.exit_code == 0, result.output
    key = SigningKey.from_file(out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert key.key_id in result.output
    assert f"--site h1 --public-key {key.public_key_base64}" in result.output
    assert "PRIVATE KEY" not in result.output
    assert out.read_text().splitlines()[1] not in result.output


def test_keygen_never_overwrites_an_existing_key_unasked(tmp_path: Path) -> None:
    out = tmp_path / "signing.pem"
    SIGNING.write(out)
    result = CliRunner().invoke(app, ["collector", "keygen", "--out", str(out)])
    assert result.exit_code != 0
    assert SigningKey.from_file(out).key_id == SIGNING.key_id


def test_registering_a_public_key_that_is_not_base64_is_refused() -> None:
    result = CliRunner().invoke(
        app, ["site-keys", "register", "--site", "h1", "--public-key", "not base64!"]
    )
    assert result.exit_code == 1
    assert "not base64" in result.output


def test_registering_a_key_of_the_wrong_length_is_refused() -> None:
    short = "AAAA"
    result = CliRunner().invoke(
        app, ["site-keys", "register", "--site", "h1", "--public-key", short]
    )
    assert result.exit_code == 1
    assert "has 32" in result.output
