"""FeederSim: mosaik adapter around :class:`models.feeder.DSSFeeder` (OpenDSS snapshot flows).

::

    feeder = world.start("FeederSim", source="ieee33", scale=1.0, step_s=60)
    grid = feeder.Grid()                     # exactly one; the feeder's results
    poi = feeder.Injection(bus="18")         # one OpenDSS constant-PQ element at bus 18

Each step (every ``step_s`` seconds) the simulator applies every input, solves one snapshot
power flow and caches the result; ``get_data`` only reads the cache.

* ``Injection`` inputs ``p_mw``, ``q_mvar`` use the load convention (+ = consumption drawn
  from the grid); several connected sources are summed, and an Injection that receives no
  input in a step draws 0. What a source is in a grid fault's shot: ``ups``, a campus's
  UPS front end (:class:`models.faults.solve.Component`), or ``fault_support``, an
  inverter's response (:meth:`models.fcm.base.FaultSupport.as_dict`); any other source is
  a constant current. Outputs: ``v_pu`` (its bus, mean of phases), the ``p_mw``,
  ``q_mvar`` applied, ``energized`` (False when its bus will be behind an open protective
  device in the coming step: an inverter ceases to energise an island) and, at a
  campus's bus, ``sags``: the shots of the coming step, solved from this step's state
  (:meth:`models.faults.GridFaults.sags`).
* ``Grid`` inputs (optional): ``load_scale`` (multiplier of the feeder's own loads; several
  inputs multiply) and ``v_source_pu`` (upstream voltage; with several inputs the lowest
  wins). Outputs: ``converged``, ``sub_p_mw``, ``sub_q_mvar`` (import, +), ``losses_mw``,
  ``losses_mvar``, ``total_load_mw``, ``v_min_pu``, ``v_min_bus``, ``v_max_pu``,
  ``pf_status`` (``ok``, ``diverged``, ``aborted``, ``invariant``: what became of the solve,
  DESIGN.md §2a), ``pf_recovery`` (``""``, ``retried``, ``frozen_controls``), and the
  dicts ``bus_v_pu`` (bus -> pu), ``line_loading_pct``, ``line_p_mw``, ``line_q_mvar``
  (OpenDSS line -> value) and ``branch_p_mw``, ``branch_q_mvar``, ``branch_loading_pct``
  (``FeederData`` branch name -> value, for the controllers' network model).
  ``load_scale`` and ``v_source_pu`` read back the values applied. The outputs by name are
  :func:`models.grid_outputs.grid_value`'s; with grid faults (``init``'s ``faults``, the
  ``[faults]`` law, ``events``, ``seed`` and ``until_s``) also ``background_shed_mw`` (the
  feeder's own load behind open devices), ``deenergized_buses`` and ``fault_shots`` (the
  shots solved at this step), and ``bus_v_pu`` is NaN on a de-energised bus.

A step whose power flow does not converge, or whose result breaks an invariant (the
injections at their set-points, the power balance), publishes ``converged = False`` and NaN
for every number; it never republishes an earlier step's results. ``init`` takes the
scenario's feeder definition (:func:`scenarios.feeder.feeder_spec`) and, as ``fingerprint``,
the :meth:`~models.network.FeederData.fingerprint` of the plan's feeder: a plant that
compiles another network refuses to start. Run it as its own process with
``python -m sim.feeder_sim HOST:PORT`` (``main``).
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Sequence
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import (
    CreateResult, InputData, Meta, ModelName, OutputData, OutputRequest, SimId, Time,
)

from models.faults import Component, FaultEvent, FaultLaw, GridFaults, components_of
from models.feeder import DSSFeeder, PowerFlowResult
from models.grid_outputs import GRID_DICTS, GRID_SCALARS, grid_value, injection_name

logger = logging.getLogger(__name__)

GRID_INPUTS = ("v_source_pu", "load_scale")
GRID_FAULT_OUTPUTS = ("background_shed_mw", "deenergized_buses", "fault_shots")
INJECTION_ATTRS = ("p_mw", "q_mvar", "v_pu", "fault_support", "ups", "sags", "energized")
INJECTION_INPUTS = ("p_mw", "q_mvar", "fault_support", "ups")

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "extra_methods": ["timing", "fault_log"],
    "models": {
        "Grid": {"public": True, "params": [], "attrs": [*GRID_SCALARS, *GRID_DICTS, *GRID_INPUTS,
                                                        *GRID_FAULT_OUTPUTS]},
        "Injection": {"public": True, "params": ["bus"], "attrs": list(INJECTION_ATTRS)},
    },
}

GRID_EID = "grid"


class FeederSim(mosaik_api_v3.Simulator):
    """One OpenDSS feeder (own engine); one ``Grid`` entity and any number of ``Injection``s."""

    def __init__(self) -> None:
        super().__init__(META)
        self.feeder: DSSFeeder | None = None
        self.step_s = 60
        self.grid_created = False
        self.injection_bus: dict[str, str] = {}
        self.result: PowerFlowResult | None = None
        self._bus_pos: dict[str, int] = {}
        self._bus_names: Sequence[str] | None = None  # the bus list _bus_pos was built from
        self.busy_s = 0.0
        self.broken_steps = 0
        self.faults: GridFaults | None = None
        self._sags: dict[str, list[dict[str, Any]]] = {}  # the coming step's shots, per campus
        self._shed_mw = 0.0
        self._shots_solved = 0
        self._dead_next: frozenset[str] = frozenset()
        self._read_back: dict[str, dict[str, Any]] = {}

    def init(self, sid: SimId, time_resolution: float = 1.0, source: str = "ieee33",
             scale: float = 1.0, step_s: int = 60, extra_commands: Sequence[str] = (),
             v_source_pu: float | None = None, fingerprint: str | None = None,
             faults: dict[str, Any] | None = None, events: Sequence[dict[str, Any]] = (),
             seed: int = 0, until_s: float | None = None, **_: Any) -> Meta:
        if time_resolution <= 0:
            raise ValueError(f"FeederSim needs time_resolution > 0, got {time_resolution}")
        if int(step_s) != step_s or step_s < 1:
            raise ValueError(f"FeederSim needs an integer step_s >= 1, got {step_s}")
        self.step_s = int(step_s)
        self.feeder = DSSFeeder.open(source, scale=scale, extra_commands=tuple(extra_commands),
                                     v_source_pu=v_source_pu)
        if fingerprint is not None and self.feeder.data.fingerprint() != fingerprint:
            raise ValueError(f"FeederSim compiled {source} into another network than the plan's "
                             f"(fingerprint {self.feeder.data.fingerprint()} != {fingerprint}); "
                             "did the model files change during the run?")
        if faults is not None and until_s is not None:
            self.faults = GridFaults.open(
                self.feeder, FaultLaw.model_validate(faults),
                [FaultEvent.model_validate(e) for e in events], int(seed), self.step_s,
                float(until_s), source)
        return self.meta

    def create(self, num: int, model: ModelName, **params: Any) -> list[CreateResult]:
        assert self.feeder is not None
        if model == "Grid":
            if self.grid_created or num != 1:
                raise ValueError("FeederSim has exactly one Grid entity")
            self.grid_created = True
            return [{"eid": GRID_EID, "type": model}]
        if model != "Injection":
            raise ValueError(f"unknown model {model!r}; FeederSim has Grid and Injection")
        bus = str(params["bus"]).lower()
        out: list[CreateResult] = []
        for _ in range(num):
            eid = injection_name(bus, self.injection_bus)
            self.feeder.add_injection(eid, bus)
            self.injection_bus[eid] = bus
            out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        assert self.feeder is not None
        t0 = _time.perf_counter()
        setpoints = {
            eid: (_sum(inputs.get(eid, {}).get("p_mw")), _sum(inputs.get(eid, {}).get("q_mvar")))
            for eid in self.injection_bus
        }
        self.feeder.set_injections(setpoints)
        grid_in = inputs.get(GRID_EID, {})
        if "load_scale" in grid_in:
            self.feeder.set_load_scale(math.prod(float(v) for v in grid_in["load_scale"].values()))
        if "v_source_pu" in grid_in:
            self.feeder.set_source_voltage(min(float(v) for v in grid_in["v_source_pu"].values()))
        if self.faults is not None:  # a lockout or a restoration since the last step
            self.faults.switch(float(time))
        self.result = self.feeder.solve()
        if self.faults is not None:
            self._fault_step(time, inputs)
        if not self.result.converged:
            self.broken_steps += 1
            if self.broken_steps <= 3:
                logger.warning("t=%s s: power flow %s (%s); publishing NaN%s", time,
                               self.result.status, self.result.cause,
                               " (later broken steps are counted, not logged)"
                               if self.broken_steps == 3 else "")
        if self._bus_names is not self.result.bus_names:  # rebuilt only when the feeder's changes
            self._bus_names = self.result.bus_names
            self._bus_pos = {b: i for i, b in enumerate(self._bus_names)}
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def _fault_step(self, time: Time, inputs: InputData) -> None:
        """The shots of the coming step, solved from this step's state, for the campuses
        (:meth:`models.faults.GridFaults.sags`), and the load behind open devices."""
        faults = self.faults
        self._shed_mw = faults.shed_mw(self.feeder.load_scale)
        components = {eid: _components(inputs.get(eid, {})) for eid in self.injection_bus}
        self._read_back = {eid: {a: dict(inputs.get(eid, {}).get(a) or {})
                                 for a in ("fault_support", "ups")} for eid in self.injection_bus}
        campuses = [eid for eid in self.injection_bus if inputs.get(eid, {}).get("ups")]
        t1 = float(time + self.step_s)
        self._sags = faults.sags(t1, t1 + self.step_s, self.result, components, campuses)
        self._shots_solved = len(faults.plan.shots_in(t1, t1 + self.step_s))
        self._dead_next = faults.deenergized_at(t1)

    def timing(self) -> dict[str, float]:
        """Wall time spent in ``step()`` (applying injections, the power flow and the fault
        shots), seconds."""
        return {"powerflow_s": self.busy_s}

    def fault_log(self) -> dict[str, Any]:
        """The run's faults (:meth:`models.faults.draws.Fault.as_dict`, those with a shot
        in the run), each shot's solve (``shots``) and the counts."""
        f = self.faults
        if f is None:
            return {"faults": [], "shots": [], "counts": {}}
        seen = {e["fault_id"] for e in f.log}
        return {"faults": [x.as_dict() for x in f.plan.faults if x.fault_id in seen],
                "shots": list(f.log), "counts": dict(vars(f.counts))}

    def _grid_value(self, res: PowerFlowResult, attr: str) -> Any:
        """A Grid output; ``load_scale`` and ``v_source_pu`` read back what was applied."""
        if attr == "load_scale":
            return self.feeder.load_scale  # type: ignore[union-attr]
        if attr == "v_source_pu":
            return self.feeder.source_voltage_pu  # type: ignore[union-attr]
        dead = self.faults.deenergized if self.faults is not None else frozenset()
        if attr == "background_shed_mw":
            return float(self._shed_mw)
        if attr == "deenergized_buses":
            return sorted(dead)
        if attr == "fault_shots":
            return int(self._shots_solved)
        if attr == "bus_v_pu" and dead:  # a de-energised bus has no voltage
            return {b: (math.nan if b in dead else v) for b, v in grid_value(res, attr).items()}
        return grid_value(res, attr)

    def get_data(self, outputs: OutputRequest) -> OutputData:
        res = self.result
        data: OutputData = {}
        if res is None:
            return data
        for eid, attrs in outputs.items():
            if eid == GRID_EID:  # mosaik lists an attribute once per consumer: build it once
                data[eid] = {attr: self._grid_value(res, attr) for attr in dict.fromkeys(attrs)}
                continue
            p_mw, q_mvar = self.feeder.injections[eid]  # type: ignore[union-attr]
            values = {"p_mw": p_mw, "q_mvar": q_mvar}
            for attr in attrs:
                if attr == "v_pu":
                    values[attr] = float(res.bus_v_pu[self._bus_pos[self.injection_bus[eid]]])
                elif attr == "sags":
                    values[attr] = self._sags.get(eid, [])
                elif attr in ("fault_support", "ups"):  # inputs, read back
                    values[attr] = self._read_back.get(eid, {}).get(attr, {})
                elif attr == "energized":  # in the coming step (a lockout is planned)
                    values[attr] = self.faults is None or (self.injection_bus[eid] not in
                                                           self._dead_next)
                elif attr not in values:
                    raise ValueError(f"Injection has no output {attr!r}")
            values = {attr: values[attr] for attr in attrs}
            data[eid] = values
        return data



def _components(inp: dict[str, Any]) -> list[Component]:
    """The sources at one injection, by source, as the fault solve models them."""
    return components_of(inp.get("p_mw") or {}, inp.get("q_mvar") or {}, inp.get("ups") or {},
                         inp.get("fault_support") or {})


def _sum(values: dict[str, Any] | None) -> float:
    return float(sum(values.values())) if values else 0.0


def main() -> None:
    """Run FeederSim as a separate process: ``python -m sim.feeder_sim HOST:PORT``."""
    mosaik_api_v3.start_simulation(FeederSim(), "FeederSim: OpenDSS feeder power flow")


if __name__ == "__main__":
    main()
