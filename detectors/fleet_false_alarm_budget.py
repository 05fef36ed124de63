"""Per-stream in-control ARL from a fleet-level false-alarm budget.

A fleet has thousands of (device, version, site, task) streams, each watched by one or
more detectors that restart after every signal. While a stream is in control its false
alarms form a renewal process whose mean gap is the detector's in-control ARL in cases,
so a stream that sees ``n`` cases a year raises on average ``n / ARL0`` false alarms a
year (exactly, in the long run, by the renewal theorem; CUSUM run lengths are close to
geometric, so the alarms are close to a Poisson process). Expected false alarms add up
across streams whatever their dependence, so for a fleet budget ``B`` a year

    sum over streams k and detectors d of  n_k / ARL0_kd  =  B.

How the budget is shared is a policy choice; two are offered:

``"equal_alarms"``
    every stream gets the same share ``B / K`` of alarms: ``ARL0_k = K n_k / B``. A
    quiet site is watched as tightly (in alarms per year) as a busy one, so its ARL0
    in cases is lower and it detects a given drift in fewer cases. The default, because
    each site's staff bear their own false alarms.
``"equal_arl0"``
    every stream gets the same ARL0, ``sum(n) / B``: detection delay in cases is the
    same everywhere and busy sites absorb most of the false alarms.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from detectors.base import check_finite, check_finite_array, check_integer

__all__ = ["expected_fleet_false_alarms", "per_stream_arl0", "stream_false_alarm_probability"]

Allocation = Literal["equal_alarms", "equal_arl0"]


def per_stream_arl0(
    cases_per_year: npt.ArrayLike,
    fleet_false_alarms_per_year: float,
    allocation: Allocation = "equal_alarms",
    detectors_per_stream: int = 1,
) -> npt.NDArray[np.float64]:
    """The in-control ARL (in cases) each stream's detectors need to meet the fleet budget.

    Parameters
    ----------
    cases_per_year
        Expected monitored cases a year for each stream (for a sensitivity chart: the
        referable cases with ground truth; for specificity: the non-referable ones).
    fleet_false_alarms_per_year
        The whole fleet's budget of expected false alarms a year.
    allocation
        ``"equal_alarms"`` or ``"equal_arl0"`` (see the module docstring).
    detectors_per_stream
        Detectors running on each stream (e.g. 2 for a sensitivity and a specificity
        chart); the stream's share is split evenly between them.

    Examples
    --------
    Three sites seeing 500, 2,000 and 10,000 referable cases a year, two false alarms a
    year for the whole fleet:

    >>> per_stream_arl0([500, 2000, 10000], 2.0).round().tolist()
    [750.0, 3000.0, 15000.0]
    >>> per_stream_arl0([500, 2000, 10000], 2.0, allocation="equal_arl0").round().tolist()
    [6250.0, 6250.0, 6250.0]
    """
    n = _cases_per_year(cases_per_year)
    budget = check_finite(fleet_false_alarms_per_year, "fleet_false_alarms_per_year", positive=True)
    per_detector_budget = budget / check_integer(
        "detectors_per_stream", detectors_per_stream, minimum=1
    )
    if allocation == "equal_alarms":
        arl0: npt.NDArray[np.float64] = n * n.size / per_detector_budget
    elif allocation == "equal_arl0":
        arl0 = np.full(n.size, n.sum() / per_detector_budget)
    else:
        raise ValueError(f"allocation must be 'equal_alarms' or 'equal_arl0', got {allocation!r}")
    return arl0


def _cases_per_year(cases_per_year: npt.ArrayLike) -> npt.NDArray[np.float64]:
    n = check_finite_array("cases_per_year", cases_per_year).ravel()
    if n.size == 0 or not np.all(n > 0):
        raise ValueError("cases_per_year must be a non-empty array of positive numbers")
    return n


def expected_fleet_false_alarms(
    cases_per_year: npt.ArrayLike, arl0: npt.ArrayLike, detectors_per_stream: int = 1
) -> float:
    """Expected false alarms a year for the fleet when stream k's detectors have ``arl0[k]``.

    >>> expected_fleet_false_alarms([500, 2000, 10000], [750, 3000, 15000])
    2.0
    """
    n = _cases_per_year(cases_per_year)
    arl0s = check_finite_array("arl0", arl0).ravel()
    if arl0s.size not in (1, n.size) or not np.all(arl0s > 0):
        raise ValueError(f"arl0 must be positive, one per stream ({n.size}) or one for all")
    detectors = check_integer("detectors_per_stream", detectors_per_stream, minimum=1)
    return float(detectors * np.sum(n / arl0s))


def stream_false_alarm_probability(cases_per_year: float, arl0: float) -> float:
    """Probability that one detector raises at least one false alarm in a year.

    Uses the geometric (memoryless) approximation to the in-control run length, good when
    ``arl0`` is large: ``1 - exp(-n / ARL0)``.

    >>> round(stream_false_alarm_probability(2000, 3000), 3)
    0.487
    """
    cases = check_finite(cases_per_year, "cases_per_year")
    if cases < 0:
        raise ValueError(f"cases_per_year must be non-negative, got {cases_per_year!r}")
    return float(-np.expm1(-cases / check_finite(arl0, "arl0", positive=True)))
