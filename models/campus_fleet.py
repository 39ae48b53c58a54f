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
from models.shock_config import ShockConfig


def campus_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of campus ``index``: child ``index`` of ``SeedSequence(seed)``
    (``SeedSequence(seed).spawn(index + 1)[index]``, built from its spawn key)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def trip_record(tr: Trip, start_s: float, outcome: str = "trip",
                unsupported_too: bool = True) -> dict[str, float | str | bool]:
    """A trip as a plain dict ``{time_s, cause, v_pu, v_unsupported_pu, duration_s,
    reconnect_s, ramp_s, fault_id, outcome, unsupported_too}`` with ``time_s`` and
    ``reconnect_s`` in run time (campus clock − ``start_s``). ``outcome`` is ``"trip"`` (it
    happened; ``unsupported_too``: the counterfactual without the inverters' fault-time
    support tripped then as well) or ``"unsupported"`` (a trip only the counterfactual
    had, :mod:`models.ride_through`; ``v_unsupported_pu`` is what it was judged on)."""
    return {"time_s": float(tr.t_s - start_s), "cause": str(tr.cause), "v_pu": float(tr.v_pu),
            "v_unsupported_pu": float(tr.v_unsupported_pu if math.isfinite(tr.v_unsupported_pu)
                                      else tr.v_pu),
            "duration_s": float(tr.duration_s), "reconnect_s": float(tr.reconnect_s - start_s),
            "ramp_s": float(tr.ramp_s), "fault_id": int(tr.fault_id), "outcome": outcome,
            "unsupported_too": bool(unsupported_too)}


def shots_on_campus_clock(shots, start_s: float) -> list[dict[str, Any]]:
    """Shot records (:meth:`models.faults.GridFaults.sags`, run time) on the campus clock."""
    return [{**r, "t_s": float(r["t_s"]) + start_s,
             "restored_s": float(r.get("restored_s", math.nan)) + start_s} for r in shots]


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
        self.shots_seen: dict[str, list[dict[str, Any]]] = {}
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
             shots: Mapping[str, list[dict[str, Any]]] | None = None) -> None:
        """Step every campus over ``[t_s, t_s + dt_s)`` (campus clock) with its POI voltage
        (``None``: nominal) and the shots of grid faults at its POI in the step (run time,
        :meth:`models.faults.GridFaults.sags`)."""
        shots = shots or {}
        for name, campus in self.campuses.items():
            v = v_poi_pu.get(name)
            self.v_seen[name] = v if v is not None else math.nan
            self.shots_seen[name] = list(shots.get(name, ()))
            self.last[name] = campus.step(t_s, v, shots_on_campus_clock(shots.get(name, ()),
                                                                         self.start_s))
        self._forecasts.clear()
        self._next.clear()

    def outputs(self, name: str) -> dict[str, Any]:
        """The last step's outputs of campus ``name`` (load convention, + = consumption):
        ``p_mw``, ``q_mvar``, ``p_min_mw``, ``p_max_mw``, ``online``, ``p_demand_mw`` (its
        own load, whoever serves it), ``p_unsupported_mw`` (its draw had the inverters not
        supported the sags), ``v_poi_pu`` (the reading used), ``sags`` (the shots it judged)
        and ``ups`` (its UPS front end in a fault's shot, :func:`ups_front_end`)."""
        o = self.last.get(name)
        if o is None:
            raise ValueError(f"Campus {name!r} has no output before its first step")
        return {"p_mw": o.p_mw, "q_mvar": o.q_mvar, "p_min_mw": o.p_min_mw,
                "p_max_mw": o.p_max_mw, "online": bool(o.online),
                "p_demand_mw": o.it_mw + o.facility_mw, "p_unsupported_mw": o.p_unsupported_mw,
                "v_poi_pu": self.v_seen.get(name, math.nan),
                "sags": self.shots_seen.get(name, []),
                "ups": ups_front_end(self.campuses[name].config)}

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

    def trips(self) -> dict[str, list[dict[str, float | str | bool]]]:
        """Each campus's trips so far, and those only its counterfactual without the
        inverters' support had (:func:`trip_record`), in time order."""
        out = {}
        for name, campus in self.campuses.items():
            both = {(tr.t_s, tr.cause, tr.fault_id) for tr in campus.schedule.unsupported.trips}
            mine = {(tr.t_s, tr.cause, tr.fault_id) for tr in campus.trips}
            rows = [trip_record(tr, self.start_s, "trip", (tr.t_s, tr.cause, tr.fault_id) in both)
                    for tr in campus.trips]
            rows += [trip_record(tr, self.start_s, "unsupported")
                     for tr in campus.schedule.unsupported.trips
                     if (tr.t_s, tr.cause, tr.fault_id) not in mine]
            out[name] = sorted(rows, key=lambda r: (r["time_s"], r["outcome"]))
        return out


def ups_front_end(cfg: CampusConfig) -> dict[str, float]:
    """What the fault solve needs of a campus's UPS front end
    (:class:`models.faults.solve.Component`)."""
    return {"capacity_mw": cfg.capacity_mw, "current_limit_pu": cfg.ups_current_limit_pu,
            "transfer_v_pu": cfg.ups_transfer_v_pu, "residual_frac": cfg.backup_residual_frac}
