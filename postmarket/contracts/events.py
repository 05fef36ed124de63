"""Event contracts: what flows on every pipeline topic, validated strictly at every boundary.

Collectors build these, workers decode them; nothing here imports Kafka or Faust, so
a hospital's collector and a central worker share one definition. Each event carries
``schema_version`` so a reader can refuse what it does not understand instead of
misreading it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION: Literal[1] = 1

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
VERSION_PATTERN = r"^(0|[1-9]\d{0,5})(\.(0|[1-9]\d{0,5})){3}$"
PATTERN_MEANING = {
    IDENTIFIER_PATTERN: "an identifier (letters, digits and . _ : -, starting alphanumeric)",
    VERSION_PATTERN: "a device version S.Y.Z.B (four dot-separated integers)",
}

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)
]
"""Site, device, task and pseudonym identifiers: printable, no separators of ours."""

_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


def is_identifier(text: str) -> bool:
    """Whether ``text`` is an :data:`Identifier` (checked without a model)."""
    return len(text) <= 128 and _IDENTIFIER.match(text) is not None


DeviceVersion = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
"""S.Y.Z.B: major enhancement, minor enhancement, corrective update, minor bug fix."""

Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Decision = Literal["positive", "negative"]
Label = Literal["positive", "negative"]
StudyDesign = Literal["prospective", "retrospective"]
SliceThicknessBand = Literal["sub_mm", "1_2mm", "about_5mm", "other"]


def slice_thickness_band(thickness_mm: float | None) -> SliceThicknessBand | None:
    """The compatibility stratum of a slice thickness (NMPA lung-nodule testing bands)."""
    if thickness_mm is None:
        return None
    if thickness_mm < 1.0:
        return "sub_mm"
    if thickness_mm <= 2.0:
        return "1_2mm"
    if 4.0 <= thickness_mm <= 6.0:
        return "about_5mm"
    return "other"


TruthSource = Literal["pathology", "adjudicated_read", "follow_up_imaging", "clinical", "reader"]
ReadRound = Literal["first", "second", "adjudication"]
Severity = Literal["info", "warning", "critical"]


class Part(BaseModel):
    """Base of every event and of the records nested in them: strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


WIRE: dict[str, Any] = {"wire": True}
"""Validation context of bytes read from a topic (:func:`~postmarket.contracts.decode`)."""


def _schema_version_required(schema: dict[str, Any]) -> None:
    schema.setdefault("required", []).insert(0, "schema_version")


class Contract(Part):
    """Base of every top-level event: a :class:`Part` that states its schema version.

    Built in code, an event gets this release's version. Read from a topic, it must state
    it as a JSON integer: an event without it, or with ``true`` or ``1.0`` (which equal 1
    in Python), is malformed, not version 1.
    """

    model_config = ConfigDict(json_schema_extra=_schema_version_required)

    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _schema_version_is_an_integer(cls, version: Any) -> Any:
        if type(version) not in (int, float):  # bool is an int subclass: excluded here
            got = {"got": short_repr(version)}
            raise PydanticCustomError("schema_version_type", "must be an integer (got {got})", got)
        known = _known_schema_version(cls)
        if type(version) is not int or version != known:
            raise PydanticCustomError(
                "unknown_schema_version",
                "unknown schema version {got} (this reader knows {known})",
                {"got": short_repr(version), "known": known},
            )
        return version

    @model_validator(mode="after")
    def _wire_states_its_schema_version(self, info: ValidationInfo) -> Contract:
        if (
            info.context
            and info.context.get("wire")
            and "schema_version" not in self.model_fields_set
        ):
            raise PydanticCustomError("schema_version_missing", "required field is missing")
        return self


@functools.cache
def _known_schema_version(contract: type[Contract]) -> Any:
    """The schema version a contract's reader knows (its field's default), looked up once per
    class: the validator runs for every event decoded."""
    return contract.__pydantic_fields__["schema_version"].default


class AcquisitionFeatures(Part):
    """De-identified acquisition context, for drift and compatibility analysis."""

    modality: Annotated[str, StringConstraints(max_length=16)] | None = None
    manufacturer: Annotated[str, StringConstraints(max_length=64)] | None = None
    model: Annotated[str, StringConstraints(max_length=64)] | None = None
    software_versions: Annotated[str, StringConstraints(max_length=128)] | None = None
    slice_thickness_mm: Annotated[float, Field(gt=0.0, le=50.0)] | None = None
    slice_thickness_band: SliceThicknessBand | None = None
    kvp: Annotated[float, Field(gt=0.0, le=200.0)] | None = None
    pixel_spacing_mm: Annotated[float, Field(gt=0.0, le=10.0)] | None = None
    body_part: Annotated[str, StringConstraints(max_length=64)] | None = None
    station_pseudonym: Identifier | None = None


class StreamKey(Part):
    """The unit of surveillance: one task of one device version at one site."""

    device_id: Identifier
    device_version: DeviceVersion
    site_id: Identifier
    task: Identifier

    def as_key(self) -> str:
        """The Kafka key and table key of this stream (``|`` cannot occur in an Identifier)."""
        return "|".join((self.device_id, self.device_version, self.site_id, self.task))

    @classmethod
    def from_key(cls, key: str) -> StreamKey:
        """The stream of a key made by :meth:`as_key`."""
        parts = key.split("|")
        if len(parts) != 4:
            raise ValueError(f"stream key {key!r} is not device|version|site|task")
        device_id, device_version, site_id, task = parts
        return cls(device_id=device_id, device_version=device_version, site_id=site_id, task=task)


@functools.lru_cache(maxsize=4096)
def stream_key(device_id: str, device_version: str, site_id: str, task: str) -> StreamKey:
    """The stream of these fields, validated once per stream and shared (it is frozen): the
    join asks a prediction for its stream several times per event."""
    return StreamKey(device_id=device_id, device_version=device_version, site_id=site_id, task=task)


class Prediction(Contract):
    """One AI device output on one case, as the hospital's collector saw it."""

    event_id: uuid.UUID
    site_id: Identifier
    device_id: Identifier
    device_version: DeviceVersion
    task: Identifier
    case_pseudonym: Identifier
    event_time: AwareDatetime
    score: Probability
    decision: Decision
    operating_threshold: Probability
    acquisition: AcquisitionFeatures = AcquisitionFeatures()
    collector_version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    study_design: StudyDesign = "prospective"

    @property
    def stream(self) -> StreamKey:
        return stream_key(self.device_id, self.device_version, self.site_id, self.task)


class FollowUp(Contract):
    """Ground truth for a case: one read, an adjudication, pathology or clinical follow-up."""

    event_id: uuid.UUID
    site_id: Identifier
    case_pseudonym: Identifier
    event_time: AwareDatetime
    label: Label
    source: TruthSource
    reader_pseudonym: Identifier | None = None
    read_round: ReadRound | None = None
    blinded: bool = True
    collector_version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    study_design: StudyDesign = "prospective"

    @model_validator(mode="after")
    def _reads_name_their_reader_and_round(self) -> FollowUp:
        if self.source == "reader" and (self.reader_pseudonym is None or self.read_round is None):
            raise ValueError("a reader follow-up needs reader_pseudonym and read_round")
        return self


class JoinPosition(Part):
    """The input record whose arrival completed an outcome, and the outcome's rank in it.

    Positions of one input partition only grow, so a consumer of outcomes can skip any
    outcome at or before the last position it applied: that is how a re-emitted outcome
    (after a worker crash) is recognised exactly, with state bounded by the partitions.
    """

    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    rank: Annotated[int, Field(ge=0)]
    index: Annotated[int, Field(ge=0)] = 0
    """The event's place in its record's batch (``pms.inputs.v2``); 0 for a one-event record.
    Positions order by (offset, index, rank)."""

    @model_serializer(mode="wrap")
    def _index_only_in_batches(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without a batch index, the position a reader from before the field accepts
        (contracts forbid unknown fields): readers can be upgraded after the workers."""
        data = handler(self)
        if isinstance(data, dict) and data.get("index") == 0:
            data.pop("index", None)
        return data

    def order(self) -> tuple[int, int, int]:
        """Where this emission sits among the emissions of its input partition."""
        return (self.offset, self.index, self.rank)


class Outcome(Contract):
    """A prediction joined with its final ground truth, keyed by its stream."""

    event_id: uuid.UUID
    stream: StreamKey
    case_pseudonym: Identifier
    prediction_event_id: uuid.UUID
    prediction_time: AwareDatetime
    score: Probability
    decision: Decision
    operating_threshold: Probability
    acquisition: AcquisitionFeatures
    label: Label
    truth_source: TruthSource
    truth_time: AwareDatetime
    followup_event_ids: tuple[uuid.UUID, ...] = Field(min_length=1)
    study_design: StudyDesign
    joined_at: JoinPosition
    blinded_reads: tuple[Label, Label] | None = None
    """First- and second-round blinded reads by two readers, when the case had them."""

    @property
    def correct(self) -> bool:
        return self.decision == self.label


INPUT_BATCH_VERSION: Literal[2] = 2
MAX_BATCH_EVENTS = 500
"""Events in one ``pms.inputs.v2`` record, at most (a collector also bounds a batch's bytes)."""


class PredictionEntry(Part):
    """One prediction of a batch."""

    kind: Literal["prediction"]
    event: Prediction


class FollowUpEntry(Part):
    """One follow-up of a batch."""

    kind: Literal["followup"]
    event: FollowUp


BatchEntry = Annotated[PredictionEntry | FollowUpEntry, Field(discriminator="kind")]


class InputBatch(Contract):
    """Up to ``MAX_BATCH_EVENTS`` predictions and follow-ups of one site in one record of
    ``pms.inputs.v2``, keyed by its site and signed once (see postmarket.authenticity).

    Each event keeps its own ``event_id`` and is validated alone by its readers
    (:func:`postmarket.contracts.batches.decode_batch`): one bad event is dead-lettered and
    the rest of its batch still counts. This model states the whole contract (its JSON
    Schema is the one published) and builds batches in code.
    """

    schema_version: Literal[2] = INPUT_BATCH_VERSION  # type: ignore[assignment]
    site_id: Identifier
    batch_id: uuid.UUID
    events: Annotated[list[BatchEntry], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]

    @model_validator(mode="after")
    def _events_of_its_site(self) -> InputBatch:
        for index, entry in enumerate(self.events):
            if entry.event.site_id != self.site_id:
                raise ValueError(f"events.{index} is of site {entry.event.site_id!r}")
        return self


class Alert(Contract):
    """A detector's signal on one stream, with the evidence it rests on."""

    alert_id: uuid.UUID
    stream: StreamKey
    detector: Identifier
    statistic: Annotated[float, Field(allow_inf_nan=False)]
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    evidence: dict[Identifier, Annotated[int, Field(ge=0)]]
    first_case_time: AwareDatetime
    last_case_time: AwareDatetime
    raised_at: AwareDatetime
    severity: Severity
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    change_began_at: AwareDatetime | None = None
    """For a CUSUM's alert, the event time of the case at which the change is estimated to
    have begun: the case after the CUSUM last sat at zero (Page's maximum-likelihood
    estimate); ``evidence["run_length"]`` counts the charted cases from it to the alarm. None
    (and absent, as in alerts raised before the field existed) for other tests, or when the
    stream's state did not keep that case's time."""

    @model_validator(mode="after")
    def _case_times_in_order(self) -> Alert:
        if self.first_case_time > self.last_case_time:
            raise ValueError("first_case_time is after last_case_time")
        return self

    @model_serializer(mode="wrap")
    def _unknown_change_left_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without a change-point estimate, the alert a reader from before the field accepts
        (contracts forbid unknown fields): readers can be upgraded after the workers."""
        data = handler(self)
        if isinstance(data, dict) and data.get("change_began_at") is None:
            data.pop("change_began_at", None)
        return data


RebaselineScope = Literal["reference", "review"]


class Rebaseline(Contract):
    """A decision on a stream, made in the evidence store once an alert on it was
    investigated: its ``scope`` says what the workers restart.

    ``reference`` (a re-baselining): the stream's label-free reference is out of date (a new
    scanner validated, a referral population known to have changed), so its score and
    acquisition references are rebuilt from the predictions that follow and the drift tests
    look for the next change instead of recurring on this one; a claims test of the stream
    that rejected restarts too. ``review``: a claim-based alert on the stream (a CUSUM, a
    claims test, an estimate) was reviewed and resolved, so each claims test of the stream
    that rejected restarts as a new test (paid for by the fleet budget) with the CUSUMs that
    alarmed since; nothing else moves, the references included.

    Nothing re-baselines a claim: either scope leaves the registered claims as they are, and
    the CUSUMs, the claims tests and the label-free estimates keep testing them.
    """

    rebaseline_id: uuid.UUID
    """Derived from the alert (in a namespace of its scope): publishing the same decision
    again changes nothing."""
    stream: StreamKey
    alert_id: uuid.UUID
    """The alert whose investigation made the decision."""
    decided_by: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    decided_at: AwareDatetime
    scope: RebaselineScope = "reference"
    """What the decision restarts (see above). ``reference`` is left out of the JSON, as in
    the decisions published before the field existed; a worker from before it refuses a
    ``review`` (contracts forbid unknown fields), so the workers are upgraded first."""

    @model_serializer(mode="wrap")
    def _reference_scope_left_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A re-baselining as a reader from before the scope accepts it, byte for byte."""
        data = handler(self)
        if isinstance(data, dict) and data.get("scope") == "reference":
            data.pop("scope", None)
        return data


DeadLetterReason = Literal[
    "not_json",
    "schema",
    "unknown_schema_version",
    "impossible_value",
    "unknown_source",
    "internal_error",
    "authenticity",
]


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class DeadLetter(Contract):
    """Input a worker could not accept, kept with why, for replay after a fix.

    The original is kept whole up to a bound far above any valid event; beyond it only its
    beginning is kept, with the whole record's size and hash, so a dead letter can always
    be written (a larger one would be refused by the broker, and the record lost).
    """

    event_id: uuid.UUID
    source_topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    source_partition: Annotated[int, Field(ge=0)]
    source_offset: Annotated[int, Field(ge=0)]
    source_index: Annotated[int, Field(ge=0)] | None = None
    """The refused event's place in its record's batch (``pms.inputs.v2``); None when the
    whole record was refused. ``original`` is then that event alone, as JSON."""
    original: Base64Bytes
    original_size: Annotated[int, Field(ge=0)] | None = None
    """The whole record value's size in bytes (None in dead letters from before the field)."""
    original_sha256: Annotated[str, StringConstraints(pattern=SHA256_PATTERN)] | None = None
    """The whole record value's SHA-256, hex: what a truncated ``original`` was cut from."""
    reason_code: DeadLetterReason
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    received_at: AwareDatetime

    @property
    def truncated(self) -> bool:
        """Whether ``original`` is only the beginning of the record."""
        return self.original_size is not None and len(self.original) < self.original_size


class Claim(Part):
    """A registered performance claim from the registration testing, with its CI."""

    task: Identifier
    metric: Literal["sensitivity", "specificity", "ppv", "npv", "auc"]
    value: Probability
    ci_lower: Probability
    ci_upper: Probability
    test_database: Annotated[str, StringConstraints(min_length=1, max_length=256)]

    @model_validator(mode="after")
    def _interval_contains_value(self) -> Claim:
        if not self.ci_lower <= self.value <= self.ci_upper:
            raise ValueError("claim value must lie within [ci_lower, ci_upper]")
        return self


class RegistryEntry(Contract):
    """The registration state of one device version (a compacted topic keeps the latest)."""

    device_id: Identifier
    device_version: DeviceVersion
    registration_status: Literal["registered", "pending", "unregistered", "withdrawn"]
    change_class: Literal["major_enhancement", "minor_enhancement", "corrective", "bug_fix"] | None
    claims: tuple[Claim, ...] = ()
    updated_at: AwareDatetime
    reference_prevalence: Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False)] | None = None
    """The prevalence of the reference (validation) population at which the device's scores
    are calibrated, strictly between 0 and 1: the workers adjust their label-free performance
    estimate from it to each site's prevalence. None (and absent, as in records published
    before the field existed): unknown, and the estimate is not adjusted."""

    @model_serializer(mode="wrap")
    def _unknown_prevalence_left_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without a prevalence, the record a worker from before the field accepts (contracts
        forbid unknown fields): workers can be upgraded after the publishers."""
        data = handler(self)
        if isinstance(data, dict) and data.get("reference_prevalence") is None:
            data.pop("reference_prevalence", None)
        return data

    def as_key(self) -> str:
        return f"{self.device_id}|{self.device_version}"


ED25519_PUBLIC_KEY_PATTERN = r"^[A-Za-z0-9+/]{43}=$"
KEY_ID_PATTERN = r"^ed25519-[0-9a-f]{16}$"


def site_key_id(public_key: bytes) -> str:
    """The short, stable name of an Ed25519 public key (raw 32 bytes): a hash, not a secret."""
    return "ed25519-" + hashlib.sha256(public_key).hexdigest()[:16]


class SiteKeyRegistration(Contract):
    """One public key a site signs its events with (a compacted topic keeps the latest).

    A site may have several keys valid at once (rotation); a key whose ``revoked_at`` has
    passed signs nothing the workers accept any more, whatever the events claim.
    """

    site_id: Identifier
    key_id: Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)]
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: Annotated[str, StringConstraints(pattern=ED25519_PUBLIC_KEY_PATTERN)]
    """The raw 32-byte Ed25519 public key, base64."""
    registered_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _key_id_names_the_key(self) -> SiteKeyRegistration:
        if site_key_id(self.public_key_bytes) != self.key_id:
            raise ValueError("key_id is not the hash of public_key")
        return self

    @property
    def public_key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key)

    def revoked(self, at: datetime) -> bool:
        """Whether this key no longer vouches for anything at time ``at``."""
        return self.revoked_at is not None and self.revoked_at <= at

    def as_key(self) -> str:
        return f"{self.site_id}|{self.key_id}"


def short_repr(value: Any) -> str:
    """A value for an error message, cut short (a hostile payload can be long)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def utc_now() -> datetime:
    """Aware UTC now; events never carry naive times."""
    return datetime.now(UTC)
