"""The day-ahead substation import schedule as a controller reads it.

The schedule (:func:`models.schedule.day_ahead_schedule`) holds one value per block of
``interval_s`` seconds; block ``b = ⌊t / T⌋`` is in force over ``[b T, (b + 1) T)`` and the
last block is held after the run's end. Over a controller's horizon of ``K`` steps of
``Δτ`` seconds starting at ``t`` the schedule of horizon step ``k`` is the block in force at
that step's middle::

    P^sched_k = P_sched[⌊(t + k Δτ + Δτ/2) / T⌋],   k = 0..K−1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.schedule import schedule_value


@dataclass(frozen=True)
class SubstationSchedule:
    """``mw[b]``: the scheduled import of block ``b`` (MW); ``interval_s``: T (seconds)."""

    mw: tuple[float, ...]
    interval_s: float = 3600.0

    @classmethod
    def of(cls, schedule_mw: Sequence[float] | None, interval_s: float = 3600.0) -> SubstationSchedule:
        """From a list of block values; an empty or missing list is a flat 0 MW schedule."""
        return cls(tuple(float(x) for x in (schedule_mw or [0.0])), float(interval_s))

    def at(self, t_s: float) -> float:
        """The schedule in force at simulated time ``t_s`` (seconds since the start), MW."""
        return schedule_value(self.mw, self.interval_s, t_s)

    def over_horizon(self, t_s: float, step_s: float, steps: int) -> np.ndarray:
        """``P^sched_k`` for the ``steps`` horizon steps of ``step_s`` seconds from ``t_s``."""
        return np.array([self.at(t_s + k * step_s + step_s / 2) for k in range(steps)])
