"""``[shocks]``: the law of the campus shocks (surges, oscillation episodes, reconnections),
as one validated scenario section. Grid faults are the feeder's (``[faults]``,
:mod:`models.faults`): the campus's own ``disturbance_*`` fields are gone, and a scenario
that still sets one is told where they went.

Its own module so that the campus model (:mod:`models.campus`, which draws these events)
and the shock generator (:mod:`models.shocks`, which samples the campus model) both depend
on it and not on each other. Defaults and their sources: docs/campus.md.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from models.schema import StrictModel


class ShockConfig(StrictModel):
    """``[shocks]``: probabilities and sizes of surges, reconnections, oscillations.

    Rates are of a Poisson process per campus, in events per day; ``[low, high]`` pairs are
    uniform ranges. Defaults and their sources: docs/campus.md.
    """

    # rates drive the event loops: bounded (10 000 a day is one every 9 s)
    surge_rate_per_day: float = Field(2.0, ge=0, le=10_000.0)
    surge_size_frac: tuple[float, float] = (0.2, 0.5)
    surge_hours: tuple[float, float] = (0.5, 4.0)
    oscillation_rate_per_day: float = Field(3.0, ge=0, le=10_000.0)
    oscillation_minutes: tuple[float, float] = (5.0, 45.0)
    oscillation_swing_frac: tuple[float, float] = (0.3, 1.5)
    oscillation_hz: tuple[float, float] = (0.2, 3.0)
    reconnect_at_once_prob: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in data:
                if isinstance(name, str) and name in MOVED_TO_FAULTS:
                    raise ValueError(
                        f"{name}: grid faults are events of the feeder now, not of a campus; "
                        f"allowed: [faults] {MOVED_TO_FAULTS[name]} (docs/faults.md)")
        return data

    @field_validator("surge_size_frac", "surge_hours", "oscillation_minutes",
                     "oscillation_swing_frac", "oscillation_hz")
    @classmethod
    def _range(cls, v: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        a, b = _BOUNDS[info.field_name]
        lo, hi = v
        if not (a <= lo <= hi <= b):
            raise ValueError(f"must be [low, high] with {a:g} <= low <= high <= {b:g}, "
                             f"got [{lo}, {hi}]")
        return v


_BOUNDS = {
    "surge_size_frac": (0.0, 1.0),
    "surge_hours": (1e-3, 1e3),
    "oscillation_minutes": (1e-3, 1e4),
    "oscillation_swing_frac": (0.0, 10.0),
    "oscillation_hz": (0.01, 10.0),
}

#: the campus's former disturbance fields and the ``[faults]`` fields that replace them
MOVED_TO_FAULTS = {
    "disturbance_rate_per_day": "transmission_per_day",
    "disturbance_v_pu": "transmission_retained_pu",
    "disturbance_duration_s": "transmission_clearing_s",
    "disturbance_sags": "temporary_shots (and reclose_dead_s)",
    "disturbance_spacing_s": "reclose_dead_s",
}
