"""The campuses of a run, stepped together on one clock, without mosaik.

:class:`CampusFleet` holds one :class:`models.campus.Campus` per name, each with its own
random stream (:func:`campus_rng`), steps them at the same time, keeps each one's last
output and the POI voltage it used, and serves the operator's forecasts of the state at
the end of the last step, computed at most once per step and campus (they are the most
expensive outputs, and the state they depend on does not change between steps).

Times: the campus clock runs ``start_s`` ahead of the run's time (``t = 0`` at the start of
the run); the trip log (:meth:`CampusFleet.trips`) is in run time, as the time series.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.campus import Campus, CampusConfig, CampusOutput, Trip
from models.fault_support import SupportSource
from models.shock_config import ShockConfig


def campus_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of campus ``index``: child ``index`` of ``SeedSequence(seed)``
    (``SeedSequence(seed).spawn(index + 1)[index]``, built from its spawn key)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def trip_record(tr: Trip, start_s: float, outcome: str = "trip") -> dict[str, float | str]:
    """A trip as a plain dict ``{time_s, cause, v_pu, v_unsupported_pu, duration_s,
    reconnect_s, ramp_s, outcome}`` with ``time_s`` and ``reconnect_s`` in run time (campus
    clock − ``start_s``); ``outcome`` is ``"trip"`` or ``"avoided"`` (the trip the inverters'
    fault current prevented: ``v_pu`` with the support, ``v_unsupported_pu`` without)."""
    return {"time_s": float(tr.t_s - start_s), "cause": str(tr.cause), "v_pu": float(tr.v_pu),
            "v_unsupported_pu": float(tr.v_unsupported_pu if math.isfinite(tr.v_unsupported_pu)
                                      else tr.v_pu),
            "duration_s": float(tr.duration_s), "reconnect_s": float(tr.reconnect_s - start_s),
            "ramp_s": float(tr.ramp_s), "outcome": outcome}


class CampusFleet:
    """Campuses stepped every ``dt_s`` seconds from the campus clock's ``start_s``.

    ``forecast_horizon_s`` and ``forecast_step_s``: the horizon and step of the published
    forecast (:meth:`forecast_mw`); ``shocks``: the law of surges, oscillation episodes and
    disturbances (``None``: none).
    """

    def __init__(self, seed: int, dt_s: float, start_s: float = 0.0,
                 shocks: ShockConfig | None = None, forecast_horizon_s: float = 7200.0,
                 forecast_step_s: float = 300.0) -> None:
        self.seed, self.dt_s, self.start_s, self.shocks = int(seed), float(dt_s), float(start_s), shocks
        self.forecast_horizon_s, self.forecast_step_s = float(forecast_horizon_s), float(forecast_step_s)
        self.campuses: dict[str, Campus] = {}
        self.last: dict[str, CampusOutput] = {}
        self.v_seen: dict[str, float] = {}
        self.support_seen: dict[str, list[dict[str, Any]]] = {}
        self._forecasts: dict[str, list[float]] = {}  # of the last step, filled on request
        self._next: dict[str, float] = {}  # likewise

    def add(self, name: str, cfg: CampusConfig, index: int | None = None) -> Campus:
        """Add campus ``name`` with stream ``index`` (default: the order of addition)."""
        if name in self.campuses:
            raise ValueError(f"Campus entity {name!r} exists already; give campuses unique names")
        idx = len(self.campuses) if index is None else index
        campus = self.campuses[name] = Campus(cfg, self.dt_s, campus_rng(self.seed, idx),
                                              self.start_s, self.shocks)
        return campus

    def step(self, t_s: float, v_poi_pu: dict[str, float | None],
             support: Mapping[str, list[SupportSource]] | None = None) -> None:
        """Step every campus over ``[t_s, t_s + dt_s)`` (campus clock) with its POI voltage
        (``None``: nominal) and the inverters that support its sags (none when absent)."""
        support = support or {}
        for name, campus in self.campuses.items():
            campus.set_support(support.get(name, []))
            self.support_seen[name] = [s.as_dict() for s in support.get(name, [])]
            v = v_poi_pu.get(name)
            self.v_seen[name] = v if v is not None else math.nan
            self.last[name] = campus.step(t_s, v)
        self._forecasts.clear()
        self._next.clear()

    def outputs(self, name: str) -> dict[str, Any]:
        """The last step's outputs of campus ``name`` (load convention, + = consumption):
        ``p_mw``, ``q_mvar``, ``p_min_mw``, ``p_max_mw``, ``online``, ``p_demand_mw`` (its
        own load, whoever serves it), ``v_poi_pu`` (the reading used) and ``fault_support``
        (the inverters that supported its sags, :meth:`SupportSource.as_dict`)."""
        o = self.last.get(name)
        if o is None:
            raise ValueError(f"Campus {name!r} has no output before its first step")
        return {"p_mw": o.p_mw, "q_mvar": o.q_mvar, "p_min_mw": o.p_min_mw,
                "p_max_mw": o.p_max_mw, "online": bool(o.online),
                "p_demand_mw": o.it_mw + o.facility_mw, "v_poi_pu": self.v_seen.get(name, math.nan),
                "fault_support": self.support_seen.get(name, [])}

    def next_mw(self, name: str) -> float:
        """The operator's forecast of the mean draw over the coming step: the first value of
        :meth:`Campus.forecast` on the step (MW)."""
        nxt = self._next.get(name)
        if nxt is None:
            nxt = self._next[name] = float(self.campuses[name].forecast(self.dt_s, self.dt_s)[0])
        return nxt

    def forecast_mw(self, name: str) -> list[float]:
        """The operator's forecast from the end of the last step, one mean per forecast step
        over the horizon (MW)."""
        fc = self._forecasts.get(name)
        if fc is None:
            fc = self._forecasts[name] = [float(x) for x in self.campuses[name].forecast(
                self.forecast_horizon_s, self.forecast_step_s)]
        return fc

    def trips(self) -> dict[str, list[dict[str, float | str]]]:
        """Each campus's trips so far and the trips its inverters' support avoided
        (:func:`trip_record`), in time order."""
        return {name: sorted([trip_record(tr, self.start_s) for tr in campus.trips]
                             + [trip_record(tr, self.start_s, "avoided") for tr in campus.avoided],
                             key=lambda r: r["time_s"])
                for name, campus in self.campuses.items()}
