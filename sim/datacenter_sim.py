"""DataCenterSim: mosaik adapter around the SimPy campus model of :mod:`models.campus`.

One entity per campus (model ``Campus``), created from the ``[[campus]]`` section as a plain
dict (so the simulator also works over TCP)::

    dc = world.start("DataCenterSim", step_s=60, seed=42, scenario=sc.model_dump(mode="json"))
    campus = dc.Campus(config=sc.campus[0].model_dump(mode="json"))
    world.connect(campus, injection, "p_mw", "q_mvar")
    world.connect(injection, campus, ("v_pu", "v_poi_pu"), time_shifted=True,
                  initial_data={"v_pu": 1.0})

Input ``v_poi_pu``: the POI voltage of the previous step (time-shifted connection); the
minimum over several sources counts, none means nominal. Outputs (load convention,
+ = consumption): ``p_mw``, ``q_mvar`` (step means), ``p_min_mw``, ``p_max_mw`` (within the
step), ``online``, ``p_demand_mw`` (the campus's own load, whether the grid or its backup
serves it), ``v_poi_pu`` (the reading used), ``forecast_mw`` (list of step means the
operator shares over the controller's horizon, :meth:`models.campus.Campus.forecast`) and
``next_mw`` (the operator's forecast of the mean draw over the coming co-simulation step:
planned reconnections, scheduled job starts and stops).

Both forecasts are computed when a consumer asks for them (``get_data``, once per step and
campus), not in ``step``: they are the most expensive outputs, and a World connects them
only to a controller that reads them (``scenarios.world.campus_reads``). They depend only on
the campus's state at the end of the step, which ``get_data`` does not change, so they are
the values ``step`` would have computed.

Extra methods (called by the runner after the run): ``timing()`` (wall time of this
adapter) and ``trips()`` (every campus's trip log, :meth:`DataCenterSim.trips`).

Random streams: the entity with ``index`` i (default: creation order) uses
``SeedSequence(seed).spawn(i + 1)[i]``; shocks (surges, oscillation episodes, disturbances)
come from ``scenario["shocks"]`` or ``shocks`` when given, else there are none.
"""

from __future__ import annotations

import logging
import math
import time as _time
from typing import Any

import mosaik_api_v3
import numpy as np
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from models.campus import Campus, CampusConfig, CampusOutput, Trip
from models.shock_config import ShockConfig

logger = logging.getLogger(__name__)

OUTPUTS = ("p_mw", "q_mvar", "p_min_mw", "p_max_mw", "online", "p_demand_mw", "v_poi_pu",
           "forecast_mw", "next_mw")

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Campus": {
            "public": True,
            "params": ["config", "index"],
            "attrs": ["v_poi_pu", *[a for a in OUTPUTS if a != "v_poi_pu"]],
        },
    },
    "extra_methods": ["timing", "trips"],
}


def campus_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of campus ``index``: child ``index`` of ``SeedSequence(seed)``
    (``SeedSequence(seed).spawn(index + 1)[index]``, built from its spawn key)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


class DataCenterSim(mosaik_api_v3.Simulator):
    """Steps every campus once per ``step_s`` seconds of simulated time."""

    def __init__(self) -> None:
        super().__init__(META)
        self.step_s = 60
        self.time_resolution = 1.0
        self.seed = 0
        self.start_s = 0.0
        self.shocks: ShockConfig | None = None
        self.forecast_horizon_s = 7200.0
        self.forecast_step_s = 300.0
        self.campuses: dict[str, Campus] = {}
        self.last: dict[str, CampusOutput] = {}
        self.v_seen: dict[str, float] = {}
        self.forecasts: dict[str, list[float]] = {}  # of the last step, filled on request
        self.next_mw: dict[str, float] = {}  # likewise
        self.busy_s = 0.0

    def init(
        self,
        sid: SimId,
        time_resolution: float = 1.0,
        step_s: int = 60,
        seed: int = 0,
        start_s: float | None = None,
        scenario: dict[str, Any] | None = None,
        shocks: dict[str, Any] | None = None,
        forecast_horizon_s: float | None = None,
        forecast_step_s: float | None = None,
        **_: Any,
    ) -> Meta:
        if time_resolution <= 0 or step_s < 1:
            raise ValueError(f"DataCenterSim needs time_resolution > 0 and step_s >= 1 "
                             f"(got {time_resolution}, {step_s})")
        self.time_resolution = float(time_resolution)
        self.step_s = int(step_s)
        self.seed = int(seed)
        scenario = scenario or {}
        sim = scenario.get("simulation", {})
        ctrl = scenario.get("controller", {})
        self.start_s = float(start_s if start_s is not None else sim.get("start_hour", 0.0) * 3600.0)
        shock_data = shocks if shocks is not None else scenario.get("shocks")
        self.shocks = ShockConfig.model_validate(shock_data) if shock_data is not None else None
        self.forecast_step_s = float(forecast_step_s or ctrl.get("horizon_step_s", 300.0))
        self.forecast_horizon_s = float(
            forecast_horizon_s or ctrl.get("horizon_steps", 24) * self.forecast_step_s)
        return self.meta

    def create(self, num: int, model: str, config: dict[str, Any], index: int | None = None
               ) -> list[CreateResult]:
        cfg = CampusConfig.model_validate(config)
        out: list[CreateResult] = []
        for i in range(num):
            eid = cfg.name if num == 1 else f"{cfg.name}_{i}"
            if eid in self.campuses:
                raise ValueError(f"Campus entity {eid!r} exists already; give campuses unique names")
            idx = (index if index is not None else len(self.campuses)) + (i if num > 1 else 0)
            dt = self.step_s * self.time_resolution
            self.campuses[eid] = Campus(cfg, dt, campus_rng(self.seed, idx), self.start_s, self.shocks)
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        t0 = _time.perf_counter()
        t_s = self.start_s + time * self.time_resolution
        for eid, campus in self.campuses.items():
            v = _min(inputs.get(eid, {}).get("v_poi_pu"))
            self.v_seen[eid] = v if v is not None else math.nan
            self.last[eid] = campus.step(t_s, v)
        self.forecasts.clear()
        self.next_mw.clear()
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        data: OutputData = {}
        for eid, attrs in outputs.items():
            o = self.last.get(eid)
            if o is None:
                raise ValueError(f"Campus {eid!r} has no output before its first step")
            values = {
                "p_mw": o.p_mw, "q_mvar": o.q_mvar, "p_min_mw": o.p_min_mw,
                "p_max_mw": o.p_max_mw, "online": bool(o.online),
                "p_demand_mw": o.it_mw + o.facility_mw, "v_poi_pu": self.v_seen.get(eid, math.nan),
            }
            lazy = {"forecast_mw": self._forecast, "next_mw": self._next}
            data[eid] = {a: lazy[a](eid) if a in lazy else values[a] for a in attrs}
        return data

    def _next(self, eid: str) -> float:
        """The operator's forecast of the mean draw over the coming step (computed once per
        step): the first value of :meth:`Campus.forecast` on the co-simulation step."""
        nxt = self.next_mw.get(eid)
        if nxt is None:
            t0 = _time.perf_counter()
            dt = self.step_s * self.time_resolution
            nxt = float(self.campuses[eid].forecast(dt, dt)[0])
            self.next_mw[eid] = nxt
            self.busy_s += _time.perf_counter() - t0
        return nxt

    def _forecast(self, eid: str) -> list[float]:
        """The operator's forecast from the end of the last step (computed once per step)."""
        fc = self.forecasts.get(eid)
        if fc is None:
            t0 = _time.perf_counter()
            fc = [float(x) for x in self.campuses[eid].forecast(self.forecast_horizon_s,
                                                                self.forecast_step_s)]
            self.forecasts[eid] = fc
            self.busy_s += _time.perf_counter() - t0
        return fc

    def timing(self) -> dict[str, float]:
        """Wall time spent in ``step()`` and on forecasts so far (seconds), for the run's
        timing breakdown."""
        return {"dc_s": self.busy_s}

    def trips(self) -> dict[str, list[dict[str, float | str]]]:
        """Each campus's trips so far (:attr:`models.campus.Campus.trips`), as plain dicts
        ``{time_s, cause, v_pu, duration_s, reconnect_s, ramp_s}``, in the order they happened.

        ``time_s`` and ``reconnect_s`` are simulated seconds since the start of the run, the
        convention of the time series index ``time_s`` (mosaik time × ``time_resolution``);
        the campus clock runs ``start_s`` ahead of it. A trip at ``time_s`` lies in the step
        that starts at ``⌊time_s/Δ⌋·Δ``: a ride-through trip on the POI voltage at the step's
        start, a sag mid-step. ``v_pu`` and ``duration_s`` are the voltage and duration that
        caused it; ``ramp_s`` is the reconnection ramp (0: all load back at once).
        """
        return {eid: [_trip_record(tr, self.start_s) for tr in campus.trips]
                for eid, campus in self.campuses.items()}


def _trip_record(tr: Trip, start_s: float) -> dict[str, float | str]:
    return {"time_s": float(tr.t_s - start_s), "cause": str(tr.cause), "v_pu": float(tr.v_pu),
            "duration_s": float(tr.duration_s), "reconnect_s": float(tr.reconnect_s - start_s),
            "ramp_s": float(tr.ramp_s)}


def _min(values: dict[str, Any] | None) -> float | None:
    if not values:
        return None
    finite = [float(v) for v in values.values() if v is not None and math.isfinite(float(v))]
    return min(finite) if finite else None


def main() -> None:
    """Run DataCenterSim as a separate process: ``python -m sim.datacenter_sim HOST:PORT``."""
    mosaik_api_v3.start_simulation(DataCenterSim(), "dcshock-cosim AI campus (SimPy)")


if __name__ == "__main__":
    main()
