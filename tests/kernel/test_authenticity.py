"""Event signatures: what verifies, what is refused and why, and that the key stays secret."""

from __future__ import annotations

import base64
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postmarket import topics
from postmarket.authenticity import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    UNKNOWN_SITE,
    AuthenticityError,
    SigningKey,
    SigningKeyError,
    SiteKeyring,
    canonical_message,
    claimed_site,
)
from postmarket.contracts import SiteKeyRegistration, decode, encode
from tests.factories import make_prediction

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SITE_A_KEY = SigningKey.from_seed(bytes(range(32)))
SITE_B_KEY = SigningKey.from_seed(bytes(range(1, 33)))


def keyring(*registrations: SiteKeyRegistration) -> SiteKeyring:
    return SiteKeyring(
        registrations
        or (SITE_A_KEY.registration("site-a", NOW), SITE_B_KEY.registration("site-b", NOW))
    )


def signed_prediction(
    key: SigningKey = SITE_A_KEY, site_id: str = "site-a"
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    prediction = make_prediction(site_id=site_id)
    record_key, value = prediction.case_pseudonym.encode(), encode(prediction)
    return record_key, value, key.sign(topics.PREDICTIONS, record_key, value)


def refusal(ring: SiteKeyring, headers: object, topic: str, key: bytes | None, value: bytes) -> str:
    with pytest.raises(AuthenticityError) as raised:
        ring.verify(headers, topic, key, value, at=NOW)  # type: ignore[arg-type]
    return raised.value.failure


def test_a_record_signed_by_its_sites_key_verifies_as_that_site() -> None:
    record_key, value, headers = signed_prediction()
    registration = keyring().verify(headers, topics.PREDICTIONS, record_key, value, at=NOW)
    assert registration.site_id == "site-a"
    keyring().check_site(registration, "site-a")


def test_the_signature_is_plain_ed25519_over_the_canonical_message() -> None:
    record_key, value, headers = signed_prediction()
    signature = dict(headers)[SIGNATURE_HEADER]
    public = Ed25519PublicKey.from_public_bytes(SITE_A_KEY.public_key)
    public.verify(signature, canonical_message(topics.PREDICTIONS, record_key, value))


def test_signing_the_same_record_again_gives_the_same_headers() -> None:
    record_key, value, headers = signed_prediction()
    assert SITE_A_KEY.sign(topics.PREDICTIONS, record_key, value) == headers


def test_an_unsigned_record_is_refused_as_unsigned() -> None:
    record_key, value, _ = signed_prediction()
    assert refusal(keyring(), None, topics.PREDICTIONS, record_key, value) == "unsigned"
    assert refusal(keyring(), [], topics.PREDICTIONS, record_key, value) == "unsigned"


def test_a_signature_without_its_key_id_is_refused_as_unsigned() -> None:
    record_key, value, headers = signed_prediction()
    only_signature = [(n, v) for n, v in headers if n == SIGNATURE_HEADER]
    assert refusal(keyring(), only_signature, topics.PREDICTIONS, record_key, value) == "unsigned"


def test_a_record_moved_to_another_topic_is_refused() -> None:
    record_key, value, headers = signed_prediction()
    assert refusal(keyring(), headers, topics.FOLLOWUPS, record_key, value) == "bad_signature"


def test_a_record_with_another_key_is_refused() -> None:
    _, value, headers = signed_prediction()
    assert refusal(keyring(), headers, topics.PREDICTIONS, b"c-other", value) == "bad_signature"
    assert refusal(keyring(), headers, topics.PREDICTIONS, None, value) == "bad_signature"


def test_a_replayed_record_with_an_altered_field_is_refused() -> None:
    record_key, value, headers = signed_prediction()
    altered = value.replace(b'"score":0.81', b'"score":0.18')
    assert altered != value
    assert refusal(keyring(), headers, topics.PREDICTIONS, record_key, altered) == "bad_signature"


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0))
def test_any_change_to_the_value_breaks_the_signature(extra: bytes, where: int) -> None:
    record_key, value, headers = signed_prediction()
    position = where % (len(value) + 1)
    altered = value[:position] + extra + value[position:]
    assert refusal(keyring(), headers, topics.PREDICTIONS, record_key, altered) == "bad_signature"


def test_an_event_claiming_another_site_with_this_sites_key_is_refused() -> None:
    record_key, value, headers = signed_prediction(SITE_A_KEY, site_id="site-b")
    ring = keyring()
    registration = ring.verify(headers, topics.PREDICTIONS, record_key, value, at=NOW)
    with pytest.raises(AuthenticityError) as raised:
        ring.check_site(registration, decode_site(value))
    assert raised.value.failure == "wrong_site"
    assert "belongs to site site-a, not site-b" in raised.value.reason


def decode_site(value: bytes) -> str:
    from postmarket.contracts import Prediction

    return decode(Prediction, value).site_id


def test_an_unregistered_key_is_refused_as_unknown() -> None:
    stranger = SigningKey.from_seed(bytes(32))
    record_key, value, headers = signed_prediction(stranger)
    assert refusal(keyring(), headers, topics.PREDICTIONS, record_key, value) == "unknown_key"


def test_a_forged_signature_under_a_registered_key_id_is_refused() -> None:
    stranger = SigningKey.from_seed(bytes(32))
    record_key, value, headers = signed_prediction(stranger)
    forged = [
        (KEY_ID_HEADER, SITE_A_KEY.key_id.encode()),
        (SIGNATURE_HEADER, dict(headers)[SIGNATURE_HEADER]),
    ]
    assert refusal(keyring(), forged, topics.PREDICTIONS, record_key, value) == "bad_signature"


@pytest.mark.parametrize("length", [0, 1, 63, 65, 128])
def test_a_signature_of_the_wrong_length_is_refused_not_raised(length: int) -> None:
    record_key, value, headers = signed_prediction()
    signature = (dict(headers)[SIGNATURE_HEADER] * 3)[:length]
    cut = [(KEY_ID_HEADER, SITE_A_KEY.key_id.encode()), (SIGNATURE_HEADER, signature)]
    assert refusal(keyring(), cut, topics.PREDICTIONS, record_key, value) == "bad_signature"


def test_a_revoked_key_signs_nothing_from_its_revocation_on() -> None:
    record_key, value, headers = signed_prediction()
    revoked = SITE_A_KEY.registration("site-a", NOW - timedelta(days=30)).model_copy(
        update={"revoked_at": NOW - timedelta(seconds=1)}
    )
    assert refusal(keyring(revoked), headers, topics.PREDICTIONS, record_key, value) == (
        "revoked_key"
    )


def test_a_revocation_scheduled_for_later_still_accepts_the_key_until_then() -> None:
    record_key, value, headers = signed_prediction()
    scheduled = SITE_A_KEY.registration("site-a", NOW).model_copy(
        update={"revoked_at": NOW + timedelta(days=7)}
    )
    assert keyring(scheduled).verify(headers, topics.PREDICTIONS, record_key, value, at=NOW)


def test_a_later_record_for_the_same_key_replaces_the_earlier_one() -> None:
    record_key, value, headers = signed_prediction()
    ring = keyring()
    ring.apply(SITE_A_KEY.registration("site-a", NOW).model_copy(update={"revoked_at": NOW}))
    assert refusal(ring, headers, topics.PREDICTIONS, record_key, value) == "revoked_key"


def test_after_a_rotation_both_keys_of_a_site_verify() -> None:
    rotated = SigningKey.from_seed(bytes(range(2, 34)))
    ring = keyring(
        SITE_A_KEY.registration("site-a", NOW - timedelta(days=1)),
        rotated.registration("site-a", NOW),
    )
    for key in (SITE_A_KEY, rotated):
        record_key, value, headers = signed_prediction(key)
        assert ring.verify(headers, topics.PREDICTIONS, record_key, value, at=NOW).site_id == (
            "site-a"
        )


def test_headers_may_come_as_a_mapping() -> None:
    record_key, value, headers = signed_prediction()
    assert keyring().verify(dict(headers), topics.PREDICTIONS, record_key, value, at=NOW)


def test_the_canonical_message_tells_an_absent_key_from_an_empty_one() -> None:
    assert canonical_message("t", None, b"v") != canonical_message("t", b"", b"v")


def test_the_canonical_message_has_no_ambiguous_boundaries() -> None:
    assert canonical_message("ab", b"c", b"d") != canonical_message("a", b"bc", b"d")
    assert canonical_message("t", b"kv", b"") != canonical_message("t", b"k", b"v")


def test_refused_records_are_labelled_by_a_registered_claimed_site_or_unknown() -> None:
    ring = keyring()
    assert ring.metric_site(encode(make_prediction(site_id="site-b"))) == "site-b"
    assert ring.metric_site(encode(make_prediction(site_id="site-zzz"))) == UNKNOWN_SITE
    assert ring.metric_site(b"not json") == UNKNOWN_SITE
    assert ring.metric_site(None) == UNKNOWN_SITE


def test_the_claimed_site_is_read_leniently() -> None:
    assert claimed_site(b'{"site_id": "x"}') == "x"
    assert claimed_site(b'{"site_id": 3}') is None
    assert claimed_site(b"[1]") is None
    assert claimed_site(b"\xff") is None


def test_a_registration_whose_key_id_is_not_its_keys_hash_is_invalid() -> None:
    fields = SITE_A_KEY.registration("site-a", NOW).model_dump()
    fields["key_id"] = SITE_B_KEY.key_id
    with pytest.raises(ValidationError, match="key_id is not the hash"):
        SiteKeyRegistration(**fields)


def test_a_registration_round_trips_through_its_contract() -> None:
    registration = SITE_A_KEY.registration("site-a", NOW)
    assert decode(SiteKeyRegistration, encode(registration)) == registration
    assert base64.b64decode(registration.public_key) == SITE_A_KEY.public_key


def test_the_private_key_never_shows_in_repr_or_str() -> None:
    key = SigningKey.generate()
    private = key._private.private_bytes_raw()  # noqa: SLF001 - the secret under test
    for text in (repr(key), str(key), f"{key}"):
        assert "redacted" in text
        assert private.hex() not in text
        assert base64.b64encode(private).decode() not in text


def test_a_written_key_file_is_private_and_reads_back_as_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    key = SigningKey.generate()
    key.write(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert SigningKey.from_file(path).key_id == key.key_id


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    SigningKey.generate().write(path)
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="accessible to other users"):
        SigningKey.from_file(path)


def test_a_key_file_that_is_not_a_pem_key_is_refused_without_quoting_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(b"super-secret-material")
    path.chmod(0o600)
    with pytest.raises(SigningKeyError) as raised:
        SigningKey.from_file(path)
    assert "super-secret" not in str(raised.value)


def test_signing_logs_nothing_of_the_key(caplog: pytest.LogCaptureFixture) -> None:
    key = SigningKey.generate()
    with caplog.at_level(logging.DEBUG):
        key.sign(topics.PREDICTIONS, b"k", b"v")
        logging.getLogger("test").info("using %s", key)
    private = key._private.private_bytes_raw()  # noqa: SLF001 - the secret under test
    assert private.hex() not in caplog.text
