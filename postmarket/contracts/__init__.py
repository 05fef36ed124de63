"""The shared event contracts of every pipeline topic (importable without Kafka or Faust)."""

from postmarket.contracts.codec import (
    CONTRACT_BY_TOPIC,
    ContractViolation,
    Problem,
    decode,
    decode_for_topic,
    encode,
)
from postmarket.contracts.events import (
    SCHEMA_VERSION,
    AcquisitionFeatures,
    Alert,
    Claim,
    Contract,
    DeadLetter,
    FollowUp,
    Outcome,
    Prediction,
    Rebaseline,
    RegistryEntry,
    SiteKeyRegistration,
    StreamKey,
    utc_now,
)
from postmarket.contracts.pooled import VersionTally, version_key

__all__ = [
    "CONTRACT_BY_TOPIC",
    "SCHEMA_VERSION",
    "AcquisitionFeatures",
    "Alert",
    "Claim",
    "Contract",
    "ContractViolation",
    "DeadLetter",
    "FollowUp",
    "Outcome",
    "Prediction",
    "Problem",
    "Rebaseline",
    "RegistryEntry",
    "SiteKeyRegistration",
    "StreamKey",
    "VersionTally",
    "decode",
    "decode_for_topic",
    "encode",
    "utc_now",
    "version_key",
]
