"""DataCenterSim: mosaik adapter around the SimPy campus model of :mod:`models.campus`.

One entity per campus (model ``Campus``), created from the ``[[campus]]`` section as a plain
dict (so the simulator also works over TCP)::

    dc = world.start("DataCenterSim", step_s=60, seed=42, scenario=sc.model_dump(mode="json"))
    campus = dc.Campus(config=sc.campus[0].model_dump(mode="json"))
    world.connect(campus, injection, "p_mw", "q_mvar")
    world.connect(injection, campus, ("v_pu", "v_poi_pu"), time_shifted=True,
                  initial_data={"v_pu": 1.0})

Input ``v_poi_pu``: the POI voltage of the previous step (time-shifted connection); the
minimum over several sources counts, none means nominal. Input ``sags``: the shots of grid
faults at the POI in the coming step (FeederSim's Injection publishes them, time-shifted
with ``v_poi_pu``; :meth:`models.faults.GridFaults.sags`). Outputs (load convention,
+ = consumption): ``p_mw``, ``q_mvar`` (step means), ``p_min_mw``, ``p_max_mw`` (within the
step), ``online``, ``p_demand_mw`` (the campus's own load, whether the grid or its backup
serves it), ``p_unsupported_mw`` (the draw of the counterfactual without the inverters'
fault-time support), ``v_poi_pu`` (the reading used), ``ups`` (the UPS front end the fault
solve models, to the POI's Injection), ``forecast_mw`` (list of step means the
operator shares over the controller's horizon, :meth:`models.campus.Campus.forecast`) and
``next_mw`` (the operator's forecast of the mean draw over the coming co-simulation step:
planned reconnections, scheduled job starts and stops).

The campuses, their random streams, their outputs and the forecasts (computed when a
consumer asks for them, once per step and campus; a World connects them only to a controller
that reads them, ``scenarios.world.campus_reads``) are those of
:class:`models.campus_fleet.CampusFleet`; this adapter translates.

Extra methods (called by the runner after the run): ``timing()`` (wall time of this
adapter) and ``trips()`` (every campus's trip log, :meth:`DataCenterSim.trips`).
Random streams: the entity with ``index`` i (default: creation order) uses
:func:`models.campus_fleet.campus_rng`; shocks come from ``scenario["shocks"]`` or
``shocks`` when given, else there are none.
"""

from __future__ import annotations

import math
import time as _time
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from models.campus import CampusConfig
from models.campus_fleet import CampusFleet
from models.shock_config import ShockConfig

OUTPUTS = ("p_mw", "q_mvar", "p_min_mw", "p_max_mw", "online", "p_demand_mw",
           "p_unsupported_mw", "v_poi_pu", "ups", "forecast_mw", "next_mw")

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Campus": {
            "public": True,
            "params": ["config", "index"],
            "attrs": ["sags", *OUTPUTS],
        },
    },
    "extra_methods": ["timing", "trips"],
}


class DataCenterSim(mosaik_api_v3.Simulator):
    """Steps every campus once per ``step_s`` seconds of simulated time."""

    def __init__(self) -> None:
        super().__init__(META)
        self.step_s = 60
        self.time_resolution = 1.0
        self.fleet = CampusFleet(0, 60.0)
        self.busy_s = 0.0

    def init(
        self, sid: SimId, time_resolution: float = 1.0, step_s: int = 60, seed: int = 0,
        start_s: float | None = None, scenario: dict[str, Any] | None = None,
        shocks: dict[str, Any] | None = None, forecast_horizon_s: float | None = None,
        forecast_step_s: float | None = None, **_: Any,
    ) -> Meta:
        if time_resolution <= 0 or step_s < 1:
            raise ValueError(f"DataCenterSim needs time_resolution > 0 and step_s >= 1 "
                             f"(got {time_resolution}, {step_s})")
        self.time_resolution, self.step_s = float(time_resolution), int(step_s)
        scenario = scenario or {}
        sim, ctrl = scenario.get("simulation", {}), scenario.get("controller", {})
        shock_data = shocks if shocks is not None else scenario.get("shocks")
        fc_step = float(forecast_step_s or ctrl.get("horizon_step_s", 300.0))
        self.fleet = CampusFleet(
            int(seed), self.step_s * self.time_resolution,
            float(start_s if start_s is not None else sim.get("start_hour", 0.0) * 3600.0),
            ShockConfig.model_validate(shock_data) if shock_data is not None else None,
            float(forecast_horizon_s or ctrl.get("horizon_steps", 24) * fc_step), fc_step)
        return self.meta

    def create(self, num: int, model: str, config: dict[str, Any], index: int | None = None
               ) -> list[CreateResult]:
        cfg = CampusConfig.model_validate(config)
        out: list[CreateResult] = []
        for i in range(num):
            eid = cfg.name if num == 1 else f"{cfg.name}_{i}"
            idx = (index if index is not None else len(self.fleet.campuses)) + (i if num > 1 else 0)
            self.fleet.add(eid, cfg, idx)
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        t0 = _time.perf_counter()
        v_poi = {eid: _min(inputs.get(eid, {}).get("v_poi_pu")) for eid in self.fleet.campuses}
        shots = {eid: [r for src in (inputs.get(eid, {}).get("sags") or {}).values()
                       for r in (src or ())] for eid in self.fleet.campuses}
        self.fleet.step(self.fleet.start_s + time * self.time_resolution, v_poi, shots)
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        t0 = _time.perf_counter()
        data: OutputData = {}
        for eid, attrs in outputs.items():
            values = self.fleet.outputs(eid)
            lazy = {"forecast_mw": self.fleet.forecast_mw, "next_mw": self.fleet.next_mw}
            data[eid] = {a: lazy[a](eid) if a in lazy else values[a] for a in attrs}
        self.busy_s += _time.perf_counter() - t0
        return data

    def timing(self) -> dict[str, float]:
        """Wall time spent in ``step()`` and ``get_data()`` (forecasts) so far (seconds), for
        the run's timing breakdown."""
        return {"dc_s": self.busy_s}

    def trips(self) -> dict[str, list[dict[str, float | str]]]:
        """Each campus's trips so far and those its inverters' support avoided, as plain
        dicts ``{time_s, cause, v_pu, v_unsupported_pu, duration_s, reconnect_s, ramp_s,
        outcome}`` (:func:`models.campus_fleet.trip_record`), in the order they happened. ``time_s`` and ``reconnect_s`` are simulated seconds since the start of the
        run, as the time series index (the campus clock runs ``start_s`` ahead of it). A trip
        at ``time_s`` lies in the step that starts at ``⌊time_s/Δ⌋·Δ``."""
        return self.fleet.trips()


def _min(values: dict[str, Any] | None) -> float | None:
    """The lowest finite reading of several sources (``None`` without one)."""
    if not values:
        return None
    finite = [float(v) for v in values.values() if v is not None and math.isfinite(float(v))]
    return min(finite) if finite else None


def main() -> None:
    """Run DataCenterSim as a separate process: ``python -m sim.datacenter_sim HOST:PORT``."""
    mosaik_api_v3.start_simulation(DataCenterSim(), "dcshock-cosim AI campus (SimPy)")


if __name__ == "__main__":
    main()
