"""Reading v2 batch records in tests as a worker reads them: envelope, key, then each event."""

from __future__ import annotations

from postmarket.contracts import FollowUp, Prediction
from postmarket.contracts.batches import DecodedBatch, check_batch_key, decode_batch


def read_batch(key: bytes | None, value: bytes) -> DecodedBatch:
    """The batch in a ``pms.inputs.v2`` record, refused unless keyed by its site."""
    batch = decode_batch(value)
    check_batch_key(batch, key)
    return batch


def batch_events(key: bytes | None, value: bytes) -> list[Prediction | FollowUp]:
    """Every event of a batch record, in order; fails the test if any is refused."""
    elements = read_batch(key, value).elements
    refused = [element.violation for element in elements if element.event is None]
    assert not refused, refused
    return [element.event for element in elements if element.event is not None]
