"""The secure local broker: TLS, SCRAM principals, ACLs (least privilege) and per-site quotas.

``postmarket stack up --secure`` runs the broker with three listeners, all on loopback:

- ``CLIENTS`` (SASL_SSL, SCRAM-SHA-512): collectors, workers and auditors, each a principal
  with a password in a 0600 file under ``<home>/secure/credentials/``;
- ``INTERNAL`` (SSL, client certificate required): inter-broker traffic and the stack's own
  admin (principal ``User:CN=postmarket-admin``, a super user);
- ``CONTROLLER`` (SSL, client certificate required): the KRaft controller.

Why the admin authenticates by certificate rather than a SCRAM credential bootstrapped
with ``kafka-storage format --add-scram``: that tool takes the password on its command line,
where any local user can read it in ``ps``; the controller listener cannot use SCRAM anyway,
so the broker needs a certificate, and the admin's is one more from the same local CA. Every
SCRAM credential is then created over TLS by the admin (the salted password is computed
client-side), so no password is ever on a command line, in ``server.properties`` or in
``stack.json``.

The rules themselves (:func:`access_rules`) are plain data, tested without a broker; the
``StandardAuthorizer`` denies everything they do not allow.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from launcher.stack.processes import LOOPBACK, StackError
from postmarket import topics
from postmarket.kafka_security import DEFAULT_MECHANISM, KafkaSecurity
from postmarket.secrets import write_secret_file

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
CLIENTS_LISTENER = "CLIENTS"
INTERNAL_LISTENER = "INTERNAL"
CONTROLLER_LISTENER = "CONTROLLER"
BROKER_CN = "postmarket-broker"
ADMIN_CN = "postmarket-admin"
WORKER = "worker"
AUDITOR = "auditor"
SITE_PREFIX = "site-"
EVIDENCE_SINK_GROUP = "postmarket-evidence-sink"
AUDITOR_GROUP_PREFIX = "postmarket-audit"
CERT_DAYS = 825
INPUT_TOPICS = (topics.INPUTS, topics.PREDICTIONS, topics.FOLLOWUPS)
"""The only topics a site may touch, and only to write: v2 signed batches, and the v1
topics of collectors not yet upgraded (until the whole fleet sends v2)."""
CENTRAL_TOPICS = (
    topics.OUTCOMES,
    topics.ALERTS,
    topics.REGISTRY,
    topics.SITE_KEYS,
    topics.REBASELINES,
)
"""The topics the central side writes and the auditor reads."""
INTERNAL_TOPICS = (topics.VERSION_TALLIES,)
"""Topics only the workers read and write (the pooled per-version stage's input)."""
_SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

Operation = Literal["READ", "WRITE", "CREATE", "DESCRIBE", "ALL"]
ResourceKind = Literal["TOPIC", "GROUP"]
PatternKind = Literal["LITERAL", "PREFIXED"]


@dataclass(frozen=True)
class SecurePaths:
    """The CA, certificates and password files of a secure stack, under ``<home>/secure``."""

    home: Path

    @property
    def directory(self) -> Path:
        return self.home / "secure"

    @property
    def ca_cert(self) -> Path:
        """The CA certificate clients verify the broker with (public)."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def broker_keystore(self) -> Path:
        """The broker's PKCS#8 key followed by its certificate chain (Kafka's PEM keystore)."""
        return self.directory / "broker-keystore.pem"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.pem"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin-key.pem"

    @property
    def credentials(self) -> Path:
        return self.directory / "credentials"

    def password_file(self, principal: str) -> Path:
        """The 0600 file holding ``principal``'s SCRAM password."""
        return self.credentials / f"{principal}.password"

    def admin_security(self) -> KafkaSecurity:
        """How the stack manager connects: TLS with the admin's client certificate."""
        return KafkaSecurity(
            protocol="SSL", ca_file=self.ca_cert, cert_file=self.admin_cert, key_file=self.admin_key
        )

    def client_security(self, principal: str) -> KafkaSecurity:
        """How ``principal`` connects to the ``CLIENTS`` listener."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism=DEFAULT_MECHANISM,
            username=principal,
            password_file=self.password_file(principal),
            ca_file=self.ca_cert,
        )


# --- principals and rules ---------------------------------------------------------------------


def site_principal(site_id: str) -> str:
    """The SCRAM user of one site's collector, ``site-<site_id>``."""
    if not _SITE_ID.fullmatch(site_id):
        raise StackError(
            f"site id {site_id!r} is not an identifier (letters, digits and . _ : -, "
            "starting alphanumeric)"
        )
    return f"{SITE_PREFIX}{site_id}"


@dataclass(frozen=True)
class AccessRule:
    """One ALLOW ACL: ``principal`` (a user name or ``CN=...``) may ``operation`` a resource."""

    principal: str
    operation: Operation
    resource: ResourceKind
    name: str
    pattern: PatternKind = "LITERAL"

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


def site_rules(principal: str) -> list[AccessRule]:
    """A site may only produce its cases: WRITE on the input topics, nothing else.

    WRITE implies DESCRIBE (metadata of those topics) and, since Kafka 3.0 (KIP-679),
    the idempotent producer's InitProducerId; no READ, no group, no other topic.
    """
    return [AccessRule(principal, "WRITE", "TOPIC", name) for name in INPUT_TOPICS]


def worker_rules(worker_id: str) -> list[AccessRule]:
    """The central workers: read inputs, write outputs, own their internal topics and groups.

    The same principal runs the evidence sink (reads outcomes, predictions, alerts) and
    publishes the device registry.
    """
    rules = [AccessRule(WORKER, "READ", "TOPIC", name) for name in INPUT_TOPICS]
    # The registry, the sites' public signing keys and the re-baselining decisions are
    # published by the central side too.
    for name in CENTRAL_TOPICS + INTERNAL_TOPICS:
        rules += [
            AccessRule(WORKER, "READ", "TOPIC", name),
            AccessRule(WORKER, "WRITE", "TOPIC", name),
        ]
    rules.append(AccessRule(WORKER, "WRITE", "TOPIC", topics.DEADLETTER))
    # Faust's changelogs, repartition and leader topics are all named <app id>-...
    rules.append(AccessRule(WORKER, "ALL", "TOPIC", f"{worker_id}-", "PREFIXED"))
    rules.append(AccessRule(WORKER, "READ", "GROUP", worker_id, "PREFIXED"))
    rules.append(AccessRule(WORKER, "READ", "GROUP", EVIDENCE_SINK_GROUP))
    return rules


def auditor_rules() -> list[AccessRule]:
    """Read-only on the pipeline's outputs (outcomes, alerts, registry, site public keys,
    re-baselining decisions)."""
    rules = [AccessRule(AUDITOR, "READ", "TOPIC", name) for name in CENTRAL_TOPICS]
    rules.append(AccessRule(AUDITOR, "READ", "GROUP", AUDITOR_GROUP_PREFIX, "PREFIXED"))
    return rules


def access_rules(worker_id: str, site_ids: Iterable[str] = ()) -> list[AccessRule]:
    """Every ACL of the secure stack: the worker's, the auditor's and each site's."""
    rules = worker_rules(worker_id) + auditor_rules()
    for site_id in site_ids:
        rules += site_rules(site_principal(site_id))
    return rules


@dataclass(frozen=True)
class SiteQuota:
    """Broker quotas of one site principal, so a runaway collector cannot starve the rest.

    ``producer_byte_rate`` is bytes per second per broker; ``request_percentage`` is the
    share of one request-handler thread (100 = a whole thread).
    """

    producer_byte_rate: int = 1024 * 1024
    request_percentage: float = 25.0

    def as_config(self) -> dict[str, float]:
        return {
            "producer_byte_rate": float(self.producer_byte_rate),
            "request_percentage": self.request_percentage,
        }


# --- certificates and passwords ---------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    # Unencrypted PKCS#8: what Kafka's PEM keystore reads without a key password; the file
    # itself is 0600.
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(cert.public_bytes(serialization.Encoding.PEM))


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _issue(
    subject_cn: str,
    key: Any,
    issuer: Any,
    issuer_key: Any,
    *,
    ca: bool = False,
    server: bool = False,
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            # The broker presents this certificate to clients and, as a client, to its
            # own controller and internal listeners.
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _private_directory(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700: only the stack's user lists secrets."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def ensure_certificates(paths: SecurePaths) -> bool:
    """Create the local CA, the broker's keystore and the admin's certificate if missing.

    Returns True if anything was created. Private keys are written 0600; the CA key never
    leaves ``<home>/secure``. A new CA re-issues every certificate signed by the old one.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _private_directory(paths.directory)
    created = False
    if not (paths.ca_cert.is_file() and paths.ca_key.is_file()):
        ca_key = _new_key()
        ca_cert = _issue("postmarket local CA", ca_key, None, ca_key, ca=True)
        write_secret_file(paths.ca_key, _key_pem(ca_key))
        paths.ca_cert.write_bytes(_cert_pem(ca_cert))
        paths.broker_keystore.unlink(missing_ok=True)
        paths.admin_cert.unlink(missing_ok=True)
        created = True
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    if not paths.broker_keystore.is_file():
        key = _new_key()
        cert = _issue(BROKER_CN, key, ca_cert.subject, ca_key, server=True)
        write_secret_file(
            paths.broker_keystore, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert)
        )
        created = True
    if not (paths.admin_cert.is_file() and paths.admin_key.is_file()):
        key = _new_key()
        cert = _issue(ADMIN_CN, key, ca_cert.subject, ca_key)
        write_secret_file(paths.admin_key, _key_pem(key))
        paths.admin_cert.write_bytes(_cert_pem(cert))
        created = True
    return created


def ensure_password(paths: SecurePaths, principal: str) -> Path:
    """``principal``'s password file, generated (256 random bits, 0600) if it is missing."""
    path = paths.password_file(principal)
    _private_directory(paths.directory)
    _private_directory(paths.credentials)
    if not path.is_file():
        write_secret_file(path, secrets.token_urlsafe(32).encode() + b"\n")
    return path


# --- the broker's configuration ---------------------------------------------------------------


def server_settings(
    paths: SecurePaths, clients_port: int, internal_port: int, controller_port: int
) -> dict[str, str | int]:
    """``server.properties`` entries of the secure broker (they override the plaintext ones).

    No secret is in here: SCRAM credentials live in the cluster metadata, keys in 0600 files.
    """
    mutual_tls = "required"
    return {
        "listeners": (
            f"{CLIENTS_LISTENER}://{LOOPBACK}:{clients_port},"
            f"{INTERNAL_LISTENER}://{LOOPBACK}:{internal_port},"
            f"{CONTROLLER_LISTENER}://{LOOPBACK}:{controller_port}"
        ),
        "advertised.listeners": (
            f"{CLIENTS_LISTENER}://{LOOPBACK}:{clients_port},"
            f"{INTERNAL_LISTENER}://{LOOPBACK}:{internal_port}"
        ),
        "listener.security.protocol.map": (
            f"{CLIENTS_LISTENER}:SASL_SSL,{INTERNAL_LISTENER}:SSL,{CONTROLLER_LISTENER}:SSL"
        ),
        "inter.broker.listener.name": INTERNAL_LISTENER,
        "controller.listener.names": CONTROLLER_LISTENER,
        "sasl.enabled.mechanisms": DEFAULT_MECHANISM,
        f"listener.name.{CLIENTS_LISTENER.lower()}.sasl.enabled.mechanisms": DEFAULT_MECHANISM,
        f"listener.name.{CLIENTS_LISTENER.lower()}.{DEFAULT_MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(paths.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(paths.ca_cert),
        "ssl.endpoint.identification.algorithm": "https",
        f"listener.name.{INTERNAL_LISTENER.lower()}.ssl.client.auth": mutual_tls,
        f"listener.name.{CONTROLLER_LISTENER.lower()}.ssl.client.auth": mutual_tls,
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:CN={BROKER_CN};User:CN={ADMIN_CN}",
    }


# --- applying principals, ACLs and quotas -----------------------------------------------------


def _kafka_acl(rule: AccessRule) -> Any:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return ACL(
        principal=rule.kafka_principal,
        host="*",
        operation=ACLOperation[rule.operation],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            ResourceType[rule.resource], rule.name, ACLResourcePatternType[rule.pattern]
        ),
    )


def upsert_scram_users(admin: Any, paths: SecurePaths, principals: Sequence[str]) -> None:
    """Create or refresh each principal's SCRAM credential from its (new or kept) password file."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    upsertions = []
    for principal in principals:
        ensure_password(paths, principal)
        password = paths.client_security(principal).password()
        upsertions.append(
            UserScramCredentialUpsertion(principal, ScramMechanism.SCRAM_SHA_512, password)
        )
    errors = {user: error for user, error in admin.alter_user_scram_credentials(upsertions).items()}
    failed = sorted(user for user, error in errors.items() if error)
    if failed:
        # The broker's message names the user and the problem, never the password.
        raise StackError(f"could not set SCRAM credentials of {failed}: {errors[failed[0]]}")


def delete_scram_users(admin: Any, principals: Sequence[str]) -> None:
    """Delete each principal's SCRAM credential; one that does not exist is already gone."""
    from kafka.admin import ScramMechanism, UserScramCredentialDeletion

    deletions = [
        UserScramCredentialDeletion(principal, ScramMechanism.SCRAM_SHA_512)
        for principal in principals
    ]
    errors = admin.alter_user_scram_credentials(deletions)
    failed = sorted(
        user for user, error in errors.items() if error and "ResourceNotFound" not in str(error)
    )
    if failed:
        raise StackError(f"could not delete SCRAM credentials of {failed}: {errors[failed[0]]}")


def create_acls(admin: Any, rules: Sequence[AccessRule]) -> None:
    """Create the ALLOW ACLs (an ACL that exists already is left as it is)."""
    if not rules:
        return
    result = admin.create_acls([_kafka_acl(rule) for rule in rules])
    if result["failed"]:
        raise StackError(f"could not create ACLs: {result['failed'][0]}")


def delete_acls(admin: Any, rules: Sequence[AccessRule]) -> None:
    """Delete the ALLOW ACLs of ``rules`` (one that does not exist matches nothing)."""
    if not rules:
        return
    from kafka.errors import NoError

    for _rule, _deleted, error in admin.delete_acls([_kafka_acl(rule) for rule in rules]):
        if error is not NoError:
            raise StackError(f"could not delete ACLs: {error.__name__}")


def set_user_quotas(
    admin: Any, principals: Sequence[str], quota: SiteQuota, *, remove: bool = False
) -> None:
    """Per-user client quotas (AlterClientQuotas; kafka-python has no wrapper for it yet);
    ``remove``: take the quota's keys off each principal instead."""
    if not principals:
        return
    from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest

    entry = AlterClientQuotasRequest.EntryData
    request = AlterClientQuotasRequest(
        entries=[
            entry(
                entity=[entry.EntityData(entity_type="user", entity_name=principal)],
                ops=[
                    entry.OpData(key=key, value=0.0 if remove else value, remove=remove)
                    for key, value in quota.as_config().items()
                ],
            )
            for principal in principals
        ],
        validate_only=False,
    )
    response = admin._manager.run(admin._manager.send, request)
    problems = [e.error_message or str(e.error_code) for e in response.entries if e.error_code]
    if problems:
        raise StackError(f"could not set client quotas: {problems[0]}")


def describe_user_quotas(admin: Any, principal: str) -> dict[str, float]:
    """The quotas set on one user principal (empty if none)."""
    from kafka.protocol.admin.client_quotas import DescribeClientQuotasRequest

    component = DescribeClientQuotasRequest.ComponentData
    request = DescribeClientQuotasRequest(
        components=[component(entity_type="user", match_type=0, match=principal)], strict=True
    )
    response = admin._manager.run(admin._manager.send, request)
    if response.error_code:
        raise StackError(f"could not describe client quotas: {response.error_message}")
    return {value.key: value.value for entry in response.entries or [] for value in entry.values}


def grant(
    admin: Any,
    paths: SecurePaths,
    *,
    worker_id: str,
    site_ids: Sequence[str] = (),
    quota: SiteQuota | None = None,
    central: bool = True,
    quota_site_ids: Sequence[str] | None = None,
) -> list[str]:
    """Create the SCRAM users, ACLs and site quotas; return the principals configured.

    ``central`` includes the worker and auditor principals (``stack up``); ``add-site`` only
    adds sites. ``quota`` is set on ``quota_site_ids`` (default: every site), so a repeated
    ``up`` does not reset a quota that ``add-site`` set. Safe to repeat: passwords are kept,
    existing ACLs stay as they are.
    """
    sites = [site_principal(site_id) for site_id in site_ids]
    principals = ([WORKER, AUDITOR] if central else []) + sites
    upsert_scram_users(admin, paths, principals)
    rules = access_rules(worker_id, site_ids) if central else []
    if not central:
        for principal in sites:
            rules += site_rules(principal)
    create_acls(admin, rules)
    quota_sites = site_ids if quota_site_ids is None else quota_site_ids
    set_user_quotas(admin, [site_principal(i) for i in quota_sites], quota or SiteQuota())
    return principals


def revoke_site(admin: Any, paths: SecurePaths, site_id: str) -> str:
    """Take a site's principal off the broker: its ACLs first (they are checked on every
    request, so even a connection already open is refused from then on), then its quotas,
    its SCRAM credential (no new connection authenticates) and its password file. Safe to
    repeat. Returns the principal."""
    principal = site_principal(site_id)
    delete_acls(admin, site_rules(principal))
    set_user_quotas(admin, [principal], SiteQuota(), remove=True)
    delete_scram_users(admin, [principal])
    paths.password_file(principal).unlink(missing_ok=True)
    return principal
