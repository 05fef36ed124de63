"""Each version's first prediction at each site, judged against the registry: a version
that was not allowed to run there raises an unregistered-change alert."""

from __future__ import annotations

from postmarket.contracts import Prediction, RegistryEntry, encode, utc_now
from postmarket.contracts.events import StreamKey
from postmarket.unregistered_change import unregistered_change_alert
from postmarket.versions import preset
from streams.app import metrics, settings
from streams.channels import alerts, first_sightings, produce, registry, write_table
from streams.field_versions import device_registry
from streams.live_streams import contents

CHANGE_CONTROL = preset(settings.change_control_policy)


async def judge_first_sighting(prediction: Prediction, stream: StreamKey, partition: int) -> None:
    """The first prediction of a version at a site (remembered in the first-sightings table
    on ``partition``, its site's): was that version allowed to run there?"""
    if contents(first_sightings).get(stream.as_key()) is not None:
        return
    seen = prediction.event_time.isoformat()
    await write_table(first_sightings, partition, stream.as_key(), seen)
    entries = [RegistryEntry.model_validate(v, strict=False) for v in registry.values() if v]
    alert = unregistered_change_alert(
        stream,
        prediction.event_time,
        device_registry(entries, stream.device_id),
        CHANGE_CONTROL,
        raised_at=utc_now(),
    )
    if alert is not None:
        await produce(alerts, stream.as_key().encode(), encode(alert))
        labels = metrics.stream_labels(stream)
        metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()
