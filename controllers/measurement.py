"""What a controller is told: a :class:`~controllers.interface.Measurement` from the
readings of one step (docs/cosim.md §2), without mosaik.

The readings come in three groups, each ``{attr: value}`` or ``{attr: {name: value}}``:

* ``grid``: one value per attribute (``converged``, ``sub_p_mw``, ``sub_q_mvar``,
  ``bus_v_pu``, ``branch_p_mw``, ``branch_q_mvar`` and ``load_scale``);
* ``campus``: ``{attr: {campus name: value}}`` for ``p_mw``, ``online``, ``forecast_mw``,
  ``next_mw``;
* ``fcm``: ``{attr: {FCM label: value}}`` for ``p_mw``, ``q_mvar``, ``soc_mwh``,
  ``committed``, ``time_in_state_s``, ``debt_mwh``.

A missing or non-finite number (no reading yet, a diverged step's NaN) reads as its
default: 0 for powers and energies, "long ago" (10¹² s) for an FCM's time in state, so a
generator is free to start or stop. Dicts of numbers keep only their finite entries.

Two figures are derived here rather than measured:

* the background load the controller may assume, from the feeder's load multiplier
  ``s_t`` and the feeder's nominal load ``P_nom`` (MW)::

      P̂_bg,t = s_t · P_nom

* the schedule over the horizon, ``P^sched_k`` of :class:`controllers.schedule.
  SubstationSchedule` for the ``horizon_steps`` steps of ``horizon_step_s`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from controllers.interface import FCMState, Measurement
from controllers.schedule import SubstationSchedule
from models.fcm import NEVER_SWITCHED_S



def finite(x: Any, default: float = 0.0) -> float:
    """``x`` as a float, or ``default`` when it is missing, not a number or not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def finite_floats(d: Mapping[Any, Any] | None) -> dict[str, float]:
    """A dict of finite floats with string keys (NaN, infinite and non-numeric entries, e.g.
    of a diverged step, are left out); ``x - x == 0`` holds exactly for the finite floats."""
    items = (d or {}).items()
    try:  # the common case, a feeder's dicts of floats: one comprehension
        return {str(k): float(v) for k, v in items if v - v == 0.0}
    except TypeError:  # None or another type among the values
        return {str(k): float(v) for k, v in items
                if isinstance(v, (int, float)) and float(v) - float(v) == 0.0}


def background_estimate_mw(load_scale: float | None, nominal_mw: float) -> float | None:
    """``P̂_bg = s · P_nom`` (MW); ``None`` without a multiplier reading."""
    return None if load_scale is None else float(load_scale) * float(nominal_mw)


@dataclass(frozen=True)
class MeasurementBuilder:
    """Builds the :class:`Measurement` of each step for one run.

    ``fcm_labels``: the FCMs the controller is told about, in order (each gets a state,
    measured or default); ``schedule``: the day-ahead import schedule; ``background_nominal_mw``:
    the feeder's nominal background load ``P_nom``; ``horizon_steps`` and ``horizon_step_s``:
    the controller's horizon ``K`` and ``Δτ`` (seconds).
    """

    fcm_labels: tuple[str, ...]
    schedule: SubstationSchedule
    background_nominal_mw: float
    horizon_steps: int
    horizon_step_s: float

    @classmethod
    def of(cls, controller: Any, fcm_labels: Sequence[str], schedule: SubstationSchedule,
           background_nominal_mw: float) -> MeasurementBuilder:
        """For a ``[controller]`` section (its horizon)."""
        return cls(tuple(fcm_labels), schedule, float(background_nominal_mw),
                   int(controller.horizon_steps), float(controller.horizon_step_s))

    def for_fcms(self, labels: Iterable[str]) -> MeasurementBuilder:
        """The same builder, telling the controller about the FCMs ``labels``."""
        return replace(self, fcm_labels=tuple(labels))

    def fcm_state(self, fcm: Mapping[str, Mapping[str, Any]], label: str) -> FCMState:
        """One FCM's state from its readings (defaults where it reported nothing)."""
        def get(attr: str) -> Any:
            return (fcm.get(attr) or {}).get(label)

        committed = (fcm.get("committed") or {}).get(label, False)
        return FCMState(
            p_mw=finite(get("p_mw")), q_mvar=finite(get("q_mvar")), soc_mwh=finite(get("soc_mwh")),
            committed=bool(committed), time_in_state_s=finite(get("time_in_state_s"), NEVER_SWITCHED_S),
            debt_mwh=finite(get("debt_mwh")),
        )

    def build(self, t_s: float, grid: Mapping[str, Any],
              campus: Mapping[str, Mapping[str, Any]],
              fcm: Mapping[str, Mapping[str, Any]]) -> Measurement:
        """The measurement at simulated time ``t_s`` (seconds) from this step's readings."""
        def of_campus(attr: str) -> Mapping[str, Any]:
            return campus.get(attr) or {}

        forecasts = {name: np.asarray(v, dtype=float)
                     for name, v in of_campus("forecast_mw").items() if v is not None}
        nxt = {k: float(v) for k, v in of_campus("next_mw").items()
               if v is not None and math.isfinite(float(v))}
        return Measurement(
            time_s=t_s,
            sub_p_mw=finite(grid.get("sub_p_mw", 0.0)),
            sub_q_mvar=finite(grid.get("sub_q_mvar", 0.0)),
            bus_v_pu=finite_floats(grid.get("bus_v_pu", {})),
            campus_p_mw={k: finite(v) for k, v in of_campus("p_mw").items()},
            campus_online={k: bool(v) for k, v in of_campus("online").items()},
            fcm={label: self.fcm_state(fcm, label) for label in self.fcm_labels},
            p_sched_mw=self.schedule.over_horizon(t_s, self.horizon_step_s, self.horizon_steps),
            campus_forecast_mw=forecasts,
            campus_next_mw=nxt,
            background_p_mw=background_estimate_mw(grid.get("load_scale"), self.background_nominal_mw),
            converged=bool(grid.get("converged", True)),
            branch_p_mw=finite_floats(grid.get("branch_p_mw", {})),
            branch_q_mvar=finite_floats(grid.get("branch_q_mvar", {})),
        )
