"""What the surveillance plan fixed in advance for the alarms (the acceptable level, the
fleet's false-alarm budget) and what that promises for one device in one period."""

from __future__ import annotations

from dataclasses import dataclass

from postmarket.claim_levels import AcceptableRule
from postmarket.config import Settings


@dataclass(frozen=True)
class SurveillancePlan:
    """What the plan fixed in advance for the alarms: the acceptable level and the budget."""

    acceptable_level: AcceptableRule
    budget_per_year: float
    fleet_streams: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SurveillancePlan:
        return cls(
            settings.acceptable_level,
            settings.fleet_false_alarms_per_year,
            settings.fleet_streams,
        )


@dataclass(frozen=True)
class AlarmPromise:
    """What the device's alarms promise in the report's window, beside what they raised."""

    plan: SurveillancePlan
    streams: int
    """The device's streams with data in the window."""
    years: float
    alerts_raised: int

    @property
    def expected_false_alarms(self) -> float:
        """At most, for the device's streams over the window, were every site in control."""
        return self.plan.budget_per_year / self.plan.fleet_streams * self.streams * self.years

    def sentence(self) -> str:
        level = {
            "ci_lower": "the lower 95 % confidence bound of its registered claim",
            "point_estimate": "its registered point estimate",
        }[self.plan.acceptable_level]
        return (
            f"Every alarm's false-alarm rate holds for any site performing at or above {level}: "
            f"the fleet's tests are designed to raise at most {self.plan.budget_per_year:g} "
            f"false alarms a year among {self.plan.fleet_streams} planned streams, so this "
            f"device's {self.streams} stream(s) expect at most {self.expected_false_alarms:.2f} "
            f"in this period; {self.alerts_raised} alert(s) were raised, true or false. The "
            "budget includes the claims tests restarted after a reviewed rejection. This "
            "assumes independent cases, complete and unbiased ground truth, and each stream's "
            "volume as planned."
        )
