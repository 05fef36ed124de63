"""A two-site scenario with a sensitivity drop and resends, and its offline recomputation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from postmarket.contracts import FollowUp, Prediction
from tests.factories import make_followup, make_prediction

CELLS = {
    ("positive", "positive"): "tp",
    ("negative", "positive"): "fn",
    ("negative", "negative"): "tn",
    ("positive", "negative"): "fp",
}


def two_site_scenario(
    run: str, version: str, rng: np.random.Generator, cases_per_site: int
) -> list[Prediction | FollowUp]:
    """Two sites; at site b sensitivity falls from 0.87 to 0.55 halfway; 10 % resent."""
    events: list[Prediction | FollowUp] = []
    for site, late_sensitivity in (("a", 0.87), ("b", 0.55)):
        for i in range(cases_per_site):
            case, positive = f"c-{run}-{site}-{i}", rng.random() < 0.4
            sensitivity = 0.87 if i < cases_per_site // 2 else late_sensitivity
            correct = rng.random() < (sensitivity if positive else 0.9)
            label = "positive" if positive else "negative"
            decision = label if correct else ("negative" if positive else "positive")
            common = {"case_pseudonym": case, "site_id": f"site-{run}-{site}"}
            events.append(make_prediction(device_version=version, decision=decision, **common))
            events.append(make_followup(label=label, **common))
    order = rng.permutation(len(events))
    shuffled = [events[i] for i in order]
    resent = [shuffled[i] for i in rng.choice(len(shuffled), len(shuffled) // 10, replace=False)]
    return shuffled + resent


def offline_confusion(events: list[Prediction | FollowUp]) -> dict[tuple[str, str], int]:
    """Confusion counts per site, recomputed with pandas from what the collectors sent."""
    predictions = pd.DataFrame(
        [e.model_dump() for e in events if isinstance(e, Prediction)]
    ).drop_duplicates("event_id")
    followups = pd.DataFrame(
        [e.model_dump() for e in events if isinstance(e, FollowUp)]
    ).drop_duplicates("event_id")
    joined = predictions.merge(followups[["case_pseudonym", "label"]], on="case_pseudonym")
    joined["cell"] = [CELLS[(d, lbl)] for d, lbl in zip(joined.decision, joined.label, strict=True)]
    counts = joined.groupby(["site_id", "cell"]).size()
    return {(str(site), str(cell)): int(n) for (site, cell), n in counts.items()}
