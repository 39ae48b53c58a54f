"""``[shocks]``: the law of the campus shocks (surges, oscillation episodes, grid
disturbances, reconnections), as one validated scenario section.

Its own module so that the campus model (:mod:`models.campus`, which draws these events)
and the shock generator (:mod:`models.shocks`, which samples the campus model) both depend
on it and not on each other. Defaults and their sources: docs/campus.md.
"""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, ValidationInfo, field_validator

from models.schema import StrictModel


class ShockConfig(StrictModel):
    """``[shocks]``: probabilities and sizes of surges, trips, reconnections, oscillations.

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
    disturbance_rate_per_day: float = Field(1.0, ge=0, le=10_000.0)
    disturbance_v_pu: tuple[float, float] = (0.3, 0.9)
    disturbance_duration_s: tuple[float, float] = (0.05, 1.0)
    disturbance_sags: tuple[int, int] = (1, 3)
    disturbance_spacing_s: tuple[float, float] = (5.0, 20.0)
    reconnect_at_once_prob: float = Field(0.5, ge=0, le=1)

    @field_validator("surge_size_frac", "surge_hours", "oscillation_minutes",
                     "oscillation_swing_frac", "oscillation_hz", "disturbance_v_pu",
                     "disturbance_duration_s", "disturbance_sags", "disturbance_spacing_s")
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
    "disturbance_v_pu": (0.0, 1.2),
    "disturbance_duration_s": (0.0, 3600.0),
    "disturbance_sags": (1, 20),
    "disturbance_spacing_s": (0.0, 3600.0),
}
