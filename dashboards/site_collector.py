"""Site collector health (hospital IT): is the outbox draining, is Kafka reachable, what
does the collector refuse, what does it send, and what do its HL7 (MLLP) and DICOMweb
(STOW-RS) interfaces answer."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as model

from dashboards import metric_names as m
from dashboards.panels import Query, assemble, graph, link, query_variable, single_stat

UID = "postmarket-site-collector"
TITLE = "Post-market surveillance: site collector health"
SEL = 'instance=~"$collector"'


def build() -> model.Dashboard:
    outbox = [
        single_stat(
            "Events waiting in the outbox",
            "Events stored locally and not yet acknowledged by Kafka.",
            Query(f"sum({m.COLLECTOR_OUTBOX_DEPTH}{{{SEL}}})"),
            thresholds=((None, "green"), (1000, "orange")),
        ),
        single_stat(
            "Outbox use",
            "Bytes waiting as a share of the configured limit; beyond it new events are refused.",
            Query(
                f"max(max by (instance) ({m.COLLECTOR_OUTBOX_BYTES}{{{SEL}}})"
                f" / max by (instance) ({m.COLLECTOR_OUTBOX_LIMIT_BYTES}{{{SEL}}}))"
            ),
            unit="percentunit",
            thresholds=((None, "green"), (0.5, "orange"), (0.8, "red")),
        ),
        single_stat(
            "Time since Kafka last acknowledged",
            "How long ago the last batch was delivered (acks=all).",
            Query(f"time() - max({m.COLLECTOR_LAST_SUCCESSFUL_SEND}{{{SEL}}})"),
            unit="s",
            thresholds=((None, "green"), (900, "orange"), (3600, "red")),
        ),
        single_stat(
            "Send failures (1 h)",
            "Delivery attempts that failed: broker unreachable or not acknowledged in time.",
            Query(f"sum(increase({m.COLLECTOR_SEND_FAILURES}{{{SEL}}}[1h]))"),
            thresholds=((None, "green"), (1, "orange")),
        ),
        graph(
            "Outbox depth",
            "Events waiting; a rising line that never falls means nothing reaches Kafka.",
            [Query(f"{m.COLLECTOR_OUTBOX_DEPTH}{{{SEL}}}", "{{instance}}")],
        ),
        graph(
            "Outbox bytes against the limit",
            "Bytes waiting and the configured capacity.",
            [
                Query(f"{m.COLLECTOR_OUTBOX_BYTES}{{{SEL}}}", "{{instance}} waiting"),
                Query(f"{m.COLLECTOR_OUTBOX_LIMIT_BYTES}{{{SEL}}}", "{{instance}} limit"),
            ],
            unit="bytes",
        ),
    ]
    traffic = [
        graph(
            "Events queued per hour by type",
            "Predictions and follow-ups written to the outbox.",
            [
                Query(
                    f"sum by (event) (increase({m.COLLECTOR_EVENTS_QUEUED}{{{SEL}}}[1h]))",
                    "{{event}}",
                )
            ],
            width=8,
        ),
        graph(
            "Events sent and send failures per hour",
            "Events Kafka acknowledged, and failed delivery attempts (retried, never lost).",
            [
                Query(f"sum(increase({m.COLLECTOR_EVENTS_SENT}{{{SEL}}}[1h]))", "sent"),
                Query(f"sum(increase({m.COLLECTOR_SEND_FAILURES}{{{SEL}}}[1h]))", "failures"),
            ],
            width=8,
        ),
        graph(
            "Inputs accepted per hour by kind",
            "DICOM instances, AI outputs and follow-up files taken in.",
            [
                Query(
                    f"sum by (kind) (increase({m.COLLECTOR_INPUTS_ACCEPTED}{{{SEL}}}[1h]))",
                    "{{kind}}",
                )
            ],
            width=8,
        ),
    ]
    refused = [
        graph(
            "Rejected files per hour by reason",
            "Input files refused (not DICOM, truncated, missing tags, ...).",
            [
                Query(
                    f"sum by (reason) (increase({m.COLLECTOR_FILES_REJECTED}{{{SEL}}}[1h]))",
                    "{{reason}}",
                )
            ],
            width=8,
        ),
        graph(
            "Burned-in annotation files and refused associations per hour",
            "Images whose pixels may carry PHI (never sent), and DICOM associations from "
            "AE titles not on the allow-list.",
            [
                Query(
                    f"sum(increase({m.COLLECTOR_BURNED_IN_ANNOTATION}{{{SEL}}}[1h]))",
                    "burned-in annotation",
                ),
                Query(
                    f"sum(increase({m.COLLECTOR_ASSOCIATIONS_REJECTED}{{{SEL}}}[1h]))",
                    "associations refused",
                ),
            ],
            width=8,
        ),
        graph(
            "Cases waiting for their study",
            "AI outputs and follow-ups held until the DICOM study they name arrives, and "
            "those dropped in the last day after waiting waiting_expiry_days (their study "
            "never came through this collector).",
            [
                Query(f"sum by (kind) ({m.COLLECTOR_CASES_WAITING}{{{SEL}}})", "{{kind}}"),
                Query(
                    f"sum by (kind) (increase({m.COLLECTOR_WAITING_EXPIRED}{{{SEL}}}[1d]))",
                    "{{kind}} expired (1 d)",
                ),
            ],
            width=8,
        ),
    ]
    interfaces = [
        graph(
            "HL7 results over MLLP per hour by outcome",
            "ORU^R01 messages from the interface engine, by acknowledgement: accepted (AA, "
            "stored before the ACK), errored (AE: the message or a result is unusable) and "
            "refused (AR: size, message type, full outbox). The reasons are in the "
            "collector log, by control id.",
            [
                Query(
                    f"sum by (outcome) (increase({m.COLLECTOR_MLLP_MESSAGES}{{{SEL}}}[1h]))",
                    "{{outcome}}",
                )
            ],
        ),
        graph(
            "Refused STOW-RS requests and MLLP connections per hour by reason",
            "STOW-RS requests refused whole (peer not allowed, no valid token, wrong media "
            "type, too large, malformed); MLLP connections refused because "
            "mllp_max_connections were open, and closed by the collector (peer not allowed, "
            "idle past mllp_idle_timeout_s, a message that never ended, acknowledgements "
            "not read).",
            [
                Query(
                    f"sum by (reason) (increase({m.COLLECTOR_STOW_REQUESTS_REFUSED}{{{SEL}}}[1h]))",
                    "STOW-RS {{reason}}",
                ),
                Query(
                    f"sum(increase({m.COLLECTOR_MLLP_CONNECTIONS_REFUSED}{{{SEL}}}[1h]))",
                    "MLLP connections over mllp_max_connections",
                ),
                Query(
                    f"sum by (reason) "
                    f"(increase({m.COLLECTOR_MLLP_CONNECTIONS_CLOSED}{{{SEL}}}[1h]))",
                    "MLLP closed: {{reason}}",
                ),
            ],
        ),
    ]
    dashboard = (
        dashboard_builders.Dashboard(TITLE)
        .uid(UID)
        .description("Hospital IT view of one or more collectors: outbox, delivery, refusals.")
        .tags(["postmarket", "hospital-it"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .with_variable(
            query_variable("collector", "Collector", m.COLLECTOR_OUTBOX_DEPTH, "instance")
        )
        .link(link("Fleet", "postmarket-fleet"))
    )
    return assemble(
        dashboard,
        [
            ("Outbox and delivery", outbox),
            ("Traffic", traffic),
            ("Refused and held input", refused),
            ("Hospital interfaces: HL7 over MLLP and DICOMweb STOW-RS", interfaces),
        ],
    )
