"""The one contract every detector follows.

A detector is fed one case at a time with :meth:`Detector.update` and answers with a
:class:`DetectorResult` that reads the same way on every detector: did it fire, the
statistic, the threshold it is compared with, and the evidence counts behind it.
Its whole state round-trips through a plain JSON-able dict (:meth:`Detector.to_state`,
:meth:`Detector.from_state`) so it can live in a Faust table and move between workers.

Observations
------------
``x`` is the per-case observation. Binary detectors take ``x = 1`` when the case is an
*adverse event* for the monitored metric (a miss among referable cases when watching
sensitivity, a false positive among non-referable cases when watching specificity) and
``x = 0`` otherwise; continuous detectors take a real number (a score, a residual).
``risk`` is the case's expected probability of the adverse event; detectors with
``uses_risk = True`` require it and all others reject it, so a caller's mix-up is an
error rather than a silently ignored argument.

Invalid input (not finite, outside the detector's domain) raises :class:`ValueError`
and leaves the detector's state untouched; the stream layer sends such cases to the
dead-letter topic.
"""

from __future__ import annotations

import abc
import json
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "SCHEMA_VERSION",
    "Detector",
    "DetectorResult",
    "StateError",
    "TumblingWindow",
    "state_size_bytes",
]

SCHEMA_VERSION = 2
"""Version of the ``to_state`` layout; bumped whenever a stored state would be misread.

1 -> 2: states are checked against their settings (a CUSUM at or above its threshold, more
events than cases are refused), ``WindowedCalibrationTest`` sums ``p (1 - p)`` of scores
kept ``SCORE_FLOOR`` inside [0, 1] (its version-1 states are upgraded), and
``BernoulliCUSUM`` refuses a ``gamma`` its resolution cannot represent (version 1 clamped
it: such a state is refused). Layouts that changed while the version stayed 1 (the
windowed drift tests' ``last``, the prior-shift histogram, the claims test's
``alternative``) gained keys whose defaults reproduce what the older release ran, so every
version-1 state that release wrote is read; see :meth:`Detector._upgrade_state`.
"""

_READABLE_VERSIONS = (1, SCHEMA_VERSION)


class StateError(ValueError):
    """A stored state cannot be restored (wrong detector, schema version or shape)."""


@dataclass(frozen=True, slots=True, init=False)
class DetectorResult:
    """What a detector concluded after one case.

    Attributes
    ----------
    fired
        True when this case made the statistic cross the threshold (a signal).
    statistic
        The detector's statistic after this case, before any restart that the signal
        triggers; compare it with ``threshold``. A windowed test (tumbling windows) reports
        its last completed window's statistic, the only one its threshold applies to.
    threshold
        The value the statistic is compared with (the detector signals at or above it,
        unless the detector's docstring says otherwise).
    n_cases
        Cases seen since the last restart (construction, :meth:`Detector.reset` or a signal),
        including this one.
    n_events
        Of those, the cases counted as adverse events (``x = 1``) for binary detectors;
        for continuous detectors, the cases that pushed the reported side's statistic up.
    run_length
        Cases since the statistic last sat at its floor: the CUSUM estimate of how long
        ago the change began (0 when the statistic is at its floor).
    """

    fired: bool
    statistic: float
    threshold: float
    n_cases: int
    n_events: int
    run_length: int

    def __init__(
        self,
        fired: bool,
        statistic: float,
        threshold: float,
        n_cases: int,
        n_events: int,
        run_length: int,
    ) -> None:
        # The dataclass's own __init__ of a frozen class sets each field through
        # object.__setattr__; its slots' setters cost half as much (every update builds one).
        _set_fired(self, fired)
        _set_statistic(self, statistic)
        _set_threshold(self, threshold)
        _set_n_cases(self, n_cases)
        _set_n_events(self, n_events)
        _set_run_length(self, run_length)

    @property
    def change_began(self) -> int | None:
        """The case, numbered from 1 since the detector's last restart, at which the change is
        estimated to have begun; None while the statistic sits at its floor.

        For a CUSUM this is Page's (1954) maximum-likelihood estimate of the change point:
        the case after the statistic was last zero (Montgomery, *Introduction to Statistical
        Quality Control*, "the CUSUM provides an estimate of the time of the change"). It is
        exact for a one-sided CUSUM tuned to the true shift with a known in-control rate, and
        never earlier than the last restart (an alarm, or :meth:`Detector.reset`).

        >>> DetectorResult(True, 4.1, 4.0, n_cases=120, n_events=30, run_length=21).change_began
        100
        """
        return self.n_cases - self.run_length + 1 if self.run_length > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-able dict (for the alerts topic)."""
        return asdict(self)


_SLOTS = vars(DetectorResult)
_set_fired = _SLOTS["fired"].__set__
_set_statistic = _SLOTS["statistic"].__set__
_set_threshold = _SLOTS["threshold"].__set__
_set_n_cases = _SLOTS["n_cases"].__set__
_set_n_events = _SLOTS["n_events"].__set__
_set_run_length = _SLOTS["run_length"].__set__


class Detector(abc.ABC):
    """Base class of all sequential detectors in this package.

    Subclasses set their settings as public attributes in ``__init__`` (the same names
    as the constructor's arguments, returned by :meth:`settings`), keep their running
    state in private attributes, and implement :meth:`update`, :meth:`reset`,
    :meth:`_dump_state` and :meth:`_load_state`. Memory is bounded: no detector keeps a
    window of past cases.
    """

    __slots__ = ()

    uses_risk: ClassVar[bool] = False
    """Whether :meth:`update` needs the case's expected risk."""

    _registry: ClassVar[dict[str, type[Detector]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            Detector._registry[cls.__name__] = cls

    @abc.abstractmethod
    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        """Feed one case and return what the detector concludes after it."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget all cases, as if freshly constructed with the same settings."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild this detector (JSON-able)."""

    @abc.abstractmethod
    def _dump_state(self) -> dict[str, Any]:
        """The private running state as a JSON-able dict."""

    @abc.abstractmethod
    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the private running state from :meth:`_dump_state`'s output."""

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume this detector, as a JSON-able dict.

        The dict has the keys ``schema_version``, ``detector`` (the class name),
        ``settings`` and ``state``; ``json.loads(json.dumps(d))`` gives it back unchanged.
        """
        return {
            "schema_version": SCHEMA_VERSION,
            "detector": type(self).__name__,
            "settings": self.settings(),
            "state": self._dump_state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector from :meth:`to_state`'s output.

        Called on :class:`Detector` itself it returns whichever detector the state names;
        called on a subclass it also checks that the state belongs to that subclass.

        Raises
        ------
        StateError
            If the schema version is unknown, the state names another detector, its
            settings are refused, or its running state is malformed or inconsistent with
            them (a CUSUM at or above its threshold, more events than cases).
        """
        try:
            version = state["schema_version"]
            name = state["detector"]
            settings = state["settings"]
            running = state["state"]
        except (KeyError, TypeError) as exc:
            raise StateError(f"not a detector state: {exc!r}") from exc
        if type(version) is not int or version not in _READABLE_VERSIONS:
            raise StateError(
                f"unsupported schema_version {version!r} (this release reads {_READABLE_VERSIONS})"
            )
        target = Detector._registry.get(name)
        if target is None or not issubclass(target, cls):
            raise StateError(f"state of {name!r} cannot be restored as {cls.__name__}")
        if not (isinstance(settings, Mapping) and isinstance(running, Mapping)):
            raise StateError(f"settings and state of {name} must be objects")
        if version != SCHEMA_VERSION:
            running = target._upgrade_state(version, settings, running)
        try:
            detector = target(**settings)
        except (TypeError, ValueError) as exc:
            raise StateError(f"settings of {name} are refused: {exc}") from exc
        try:
            detector._load_state(running)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"malformed state for {name}: {exc!r}") from exc
        return detector

    @classmethod
    def _upgrade_state(
        cls, version: int, settings: Mapping[str, Any], running: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """A running state written under an older ``schema_version``, in this release's layout.

        Raise :class:`StateError` saying why when the old layout cannot be read without
        guessing. The default takes it as it is: every version-1 layout reads unchanged, its
        later keys defaulting in ``_load_state`` and the constructor. Note that
        ``streams.stream_state`` restores running states under the designed (current)
        version, so ``_load_state`` must keep reading the older layouts as well.
        """
        return running

    def _check_risk(self, risk: float | None) -> None:
        """Reject a risk given to a detector that does not use one."""
        if risk is not None:
            raise ValueError(f"{type(self).__name__} does not use risk; got risk={risk!r}")

    def _require_risk(self, risk: float | None) -> float:
        """The case's risk as a probability, for detectors with ``uses_risk = True``."""
        if risk is None:
            raise ValueError(f"{type(self).__name__}.update needs the case's risk")
        return check_probability("risk", risk, open_interval=False)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def check_binary(x: float) -> int:
    """``x`` as 0 or 1, or :class:`ValueError` (bools and 0.0/1.0 are accepted)."""
    if x in (0, 1) and not (isinstance(x, float) and math.isnan(x)):
        return int(x)
    raise ValueError(f"x must be 0 or 1 (adverse event indicator), got {x!r}")


def check_window(window: int, arl0: float) -> tuple[int, float]:
    """A windowed test's ``(window, arl0)``, or :class:`ValueError`: each window is tested at
    ``window / arl0``, so ``arl0`` must exceed the window."""
    window = check_integer("window", window, minimum=2)
    if not check_finite(arl0, "arl0") > window:
        raise ValueError(f"arl0 must exceed the window ({window} cases), got {arl0}")
    return window, float(arl0)


class TumblingWindow:
    """A windowed test's cases before its next test: a case can fire it only by completing a
    window, so the cases before that one can be added at once (``add_untested``, each class
    its own), with the state and the result that adding them one by one gives."""

    window: int
    _n_cases: int

    def cases_before_test(self) -> int:
        """Cases that can be added now without completing the window: at most what
        ``add_untested`` takes (none of them can fire)."""
        return self.window - 1 - self._n_cases

    def _check_untested(self, cases: int) -> None:
        room = self.cases_before_test()
        if not 0 < cases <= room:
            raise ValueError(f"{cases} cases added untested: the window takes {room} before a test")


def window_result(
    fired: bool, statistic: float, threshold: float, n_cases: int, n_events: int
) -> DetectorResult:
    """A windowed test's result: its last completed window's statistic, the current
    window's cases and events (the window is the run)."""
    return DetectorResult(fired, statistic, threshold, n_cases, n_events, n_cases)


def dump_window_state(
    n_cases: int, n_events: int, sums: list[float], last: list[float]
) -> dict[str, Any]:
    """A tumbling-window test's running state: ``open`` is ``[n_cases, n_events, *sums]``
    of the current window, ``last`` is ``None`` before the first completed window, else
    ``[n_events, *sums]`` of the last one (``last[0] < 0`` marks "none yet" in memory)."""
    completed = None if last[0] < 0 else [int(last[0]), *last[1:]]
    return {"open": [n_cases, n_events, *sums], "last": completed}


WindowSumsCheck = Callable[[int, Any, list[Any]], list[float]]
"""``(n_cases, n_events, sums) -> sums as floats``, or ValueError if inconsistent."""


def load_window_state(
    state: Mapping[str, Any],
    window: int,
    n_sums: int,
    checked_sums: WindowSumsCheck,
    events: str = "n_events",
) -> tuple[int, int, list[float], list[float]]:
    """:func:`dump_window_state`'s output back as ``(n_cases, n_events, sums, last)``, with
    ``last = [-1.0, 0.0, ...]`` before the first window; ValueError naming what is wrong."""
    current, last = state["open"], state["last"]
    if not (isinstance(current, list) and len(current) == 2 + n_sums):
        raise ValueError(f"open must be [n_cases, {events}, {n_sums} sums], got {current!r}")
    n_cases, n_events, *sums = current
    if not (type(n_cases) is int and 0 <= n_cases < window):
        raise ValueError(f"n_cases must be an integer in [0, {window}), got {n_cases!r}")
    current_sums = checked_sums(n_cases, n_events, sums)
    last_sums = [-1.0] + [0.0] * n_sums
    if last is not None:
        if not (isinstance(last, list) and len(last) == 1 + n_sums):
            raise ValueError(f"last must be null or [{events}, {n_sums} sums], got {last!r}")
        last_sums = [float(last[0]), *checked_sums(window, last[0], last[1:])]
    return n_cases, n_events, current_sums, last_sums


def check_finite(x: float, name: str = "x", *, positive: bool = False) -> float:
    """``x`` (any real number: int, float, numpy scalar, bool) as a finite float, positive if
    asked, or :class:`ValueError` naming ``name``."""
    exact = type(x)
    # float and int first: the ABC check costs more than the rest of a detector's update
    if exact is not float and exact is not int and not isinstance(x, numbers.Real | np.bool_):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    value = float(x)
    if not math.isfinite(value) or (positive and not value > 0.0):
        kind = "a positive finite" if positive else "a finite"
        raise ValueError(f"{name} must be {kind} number, got {x!r}")
    return value


def positive_or_none(value: Any) -> bool:
    """Whether a state's optional number (a threshold kept once known) is absent or a
    positive finite number."""
    return value is None or (isinstance(value, int | float) and math.isfinite(value) and value > 0)


def check_integer(name: str, x: int, *, minimum: int = 0) -> int:
    """``x`` (int or numpy integer, not a bool) as an int ``>= minimum``, or :class:`ValueError`."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {x!r}")
    return int(x)


def check_finite_array(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``values`` as a float array with every element finite, or :class:`ValueError` naming it."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers: {exc}") from exc
    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} must be finite numbers, got {bad} NaN or infinite")
    return array


def check_probability(name: str, p: float, *, open_interval: bool = True) -> float:
    """``p`` as a float in (0, 1) (or [0, 1]), or :class:`ValueError`."""
    value = check_finite(p, name)
    ok = 0.0 < value < 1.0 if open_interval else 0.0 <= value <= 1.0
    if not ok:
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must lie in {bounds}, got {p!r}")
    return value


def state_size_bytes(detector: Detector) -> tuple[int, int]:
    """Memory of one detector: (bytes in the process, bytes of its JSON state).

    The in-process figure is ``sys.getsizeof`` of the instance plus its slot values;
    small ints and interned values shared with the rest of the process are counted
    anyway, so it is an upper bound.
    """
    in_process = sys.getsizeof(detector)
    for klass in type(detector).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if hasattr(detector, slot):
                in_process += sys.getsizeof(getattr(detector, slot))
    return in_process, len(json.dumps(detector.to_state()).encode())
