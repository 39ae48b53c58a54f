"""ControllerSim: mosaik adapter that hosts a controller from :mod:`controllers`.

The controller (``none``, ``rule`` or ``mpc``, built by
:func:`controllers.baseline.make_controller`) sees measurements only: this adapter turns its
mosaik inputs into a :class:`controllers.interface.Measurement` and its
:class:`~controllers.interface.Dispatch` into outputs.

Entities
--------
``Controller`` (one): inputs are measurements, all arriving over time-shifted connections
(values of the previous step; docs/cosim.md §2). Grid: ``converged``, ``sub_p_mw``,
``sub_q_mvar``, ``bus_v_pu``, ``branch_p_mw``, ``branch_q_mvar`` (dicts; branches of the
plan's ``FeederData``). Campuses: ``campus_p_mw``, ``campus_online``,
``campus_forecast_mw``, ``campus_next_mw``. FCMs: ``fcm_p_mw``, ``fcm_q_mvar``, ``fcm_soc_mwh``,
``fcm_committed``, ``fcm_time_in_state_s``, ``fcm_debt_mwh``. Background: ``load_scale`` (feeder load
multiplier, turned into the measured background load). Outputs: ``solved``, ``fallback``,
``solve_s``, ``status``, ``pred_bus_v_pu`` (dict), ``pred_sub_p_mw``, ``p_sched_mw`` (the
schedule in force) and ``seen_sub_p_mw`` (the substation import it was told, for checks).
Sources are told apart by their mosaik full id: ``campuses`` and ``fcms`` map full ids to
campus names and FCM labels.

``Setpoint(fcm=label)`` (one per FCM): output ``p_set_mw`` (+ = injection), fed to FCMSim.

The MPC re-solves every ``controller.resolve_every_steps`` steps and holds its plan (and its
prediction for the current horizon step) in between, status ``hold``; at every held step the
adapter calls the controller's ``hold(measurement)``, where the ramp guard
(``controller.trim``) may correct the plan's storage setpoints. ``none`` and ``rule`` act
every step.

The network model is the plan's feeder, handed over in ``init`` as ``feeder``
(:meth:`models.network.FeederData.to_dict`): this adapter compiles no OpenDSS model, so the
controller optimises the network the plant runs (DESIGN.md §2a).

HIL mode: ``python -m sim.controller_sim HOST:PORT`` runs this simulator as its own process;
mosaik starts it with ``{"cmd": "python -m sim.controller_sim %(addr)s", "cwd": <repo>}``.
All parameters are plain JSON (the scenario and the feeder as dicts), so it behaves the same
over TCP.
"""

from __future__ import annotations

import logging
import math
import time as _time
from typing import Any, Callable

import mosaik_api_v3
import numpy as np
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, SimId, Time

from controllers.interface import Dispatch, FCMState, Measurement
from models.schedule import schedule_value

logger = logging.getLogger(__name__)

CONTROLLER_INPUTS = (
    "converged", "sub_p_mw", "sub_q_mvar", "bus_v_pu", "load_scale",
    "campus_p_mw", "campus_online", "campus_forecast_mw", "campus_next_mw",
    "fcm_p_mw", "fcm_q_mvar", "fcm_soc_mwh", "fcm_committed", "fcm_time_in_state_s",
    "fcm_debt_mwh", "branch_p_mw", "branch_q_mvar",
)
CONTROLLER_OUTPUTS = (
    "solved", "fallback", "solve_s", "status", "pred_bus_v_pu", "pred_sub_p_mw", "p_sched_mw",
    "seen_sub_p_mw",
)

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Controller": {
            "public": True,
            "params": ["campuses", "fcms"],
            "attrs": [*CONTROLLER_INPUTS, *CONTROLLER_OUTPUTS],
        },
        "Setpoint": {
            "public": True,
            "params": ["fcm"],
            "attrs": ["p_set_mw", "q_set_mvar"],
        },
    },
    "extra_methods": ["timing"],
}


class ControllerSim(mosaik_api_v3.Simulator):
    """Hosts one controller; ``factory(scenario, placements)`` may replace the default one
    (:func:`controllers.baseline.make_controller` on the plan's feeder)."""

    def __init__(self, factory: Callable[[Any, list[Any]], Any] | None = None) -> None:
        super().__init__(META)
        self.factory = factory or self._default_factory
        self.feeder: Any = None
        self.step_s = 60
        self.time_resolution = 1.0
        self.scenario: Any = None
        self.placements: list[Any] = []
        self.schedule_mw: np.ndarray = np.zeros(1)
        self.schedule_interval_s = 3600.0
        self.background_nominal_mw = 0.0
        self.controller: Any = None
        self.ctrl_eid: str | None = None
        self.campus_of: dict[str, str] = {}
        self.fcm_of: dict[str, str] = {}
        self.setpoints: dict[str, str] = {}
        self.dispatch = Dispatch(p_mw={})
        self.outputs: dict[str, Any] = {}
        self.steps_done = 0
        self.busy_s = 0.0
        self.solve_s = 0.0

    # -- mosaik API -------------------------------------------------------------------------
    def init(
        self, sid: SimId, time_resolution: float = 1.0, step_s: int = 60,
        scenario: dict[str, Any] | None = None, scenario_path: str = "<scenario>",
        placements: list[dict[str, Any]] | None = None, schedule_mw: list[float] | None = None,
        schedule_interval_s: float = 3600.0, background_nominal_mw: float = 0.0,
        feeder: dict[str, Any] | None = None, **_: Any,
    ) -> Meta:
        from models.fcm_catalog import Placement
        from models.network import FeederData
        from scenarios.config import validate_scenario

        self.feeder = None if feeder is None else FeederData.from_dict(feeder)
        if scenario is None:
            raise ValueError("ControllerSim needs the scenario (a dict of the validated Scenario)")
        self.time_resolution = float(time_resolution)
        self.step_s = int(step_s)
        self.scenario = validate_scenario(scenario, scenario_path)
        self.placements = [Placement.model_validate(p) for p in (placements or [])]
        self.schedule_mw = np.asarray(schedule_mw if schedule_mw else [0.0], dtype=float)
        self.schedule_interval_s = float(schedule_interval_s)
        self.background_nominal_mw = float(background_nominal_mw)
        self.controller = self.factory(self.scenario, self.placements)
        self.dispatch = Dispatch(p_mw={pl.label: 0.0 for pl in self.placements})
        return self.meta

    def create(self, num: int, model: str, **params: Any) -> list[CreateResult]:
        out: list[CreateResult] = []
        for _ in range(num):
            if model == "Controller":
                if self.ctrl_eid is not None:
                    raise ValueError("ControllerSim hosts exactly one Controller entity")
                self.ctrl_eid = "ctrl"
                self.campus_of = dict(params.get("campuses") or {})
                self.fcm_of = dict(params.get("fcms") or {})
                out.append({"eid": self.ctrl_eid, "type": model})
            else:
                label = str(params["fcm"])
                if label not in {pl.label for pl in self.placements}:
                    raise ValueError(f"Setpoint for unknown FCM {label!r}")
                eid = f"set_{label}"
                self.setpoints[eid] = label
                out.append({"eid": eid, "type": model})
        return out

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        t0 = _time.perf_counter()
        t_s = time * self.time_resolution
        if self._resolve_due():
            meas = self.measurement(t_s, inputs.get(self.ctrl_eid or "", {}))
            self.dispatch = self.controller.step(meas)
            self.solve_s += self.dispatch.solve_s
            status, solved = self.dispatch.status, self.dispatch.solved
            fallback, solve_s = self.dispatch.fallback, self.dispatch.solve_s
        else:
            hold = getattr(self.controller, "hold", None)
            if hold is not None:  # the MPC's ramp guard acts on the held plan every step
                self.dispatch = hold(self.measurement(t_s, inputs.get(self.ctrl_eid or "", {})))
            status, solved, fallback, solve_s = "hold", False, False, 0.0
        d = self.dispatch
        self.outputs = {
            "solved": bool(solved), "fallback": bool(fallback), "solve_s": float(solve_s),
            "status": str(status), "pred_bus_v_pu": dict(d.predicted_v_pu),
            "pred_sub_p_mw": math.nan if d.predicted_sub_p_mw is None else float(d.predicted_sub_p_mw),
            "p_sched_mw": self.schedule_at(t_s),
            "seen_sub_p_mw": self._seen_sub_p(inputs.get(self.ctrl_eid or "", {})),
        }
        self.steps_done += 1
        self.busy_s += _time.perf_counter() - t0
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        data: OutputData = {}
        for eid, attrs in outputs.items():
            if eid == self.ctrl_eid:
                data[eid] = {a: self.outputs.get(a) for a in attrs}
            else:
                label = self.setpoints[eid]
                values = {"p_set_mw": float(self.dispatch.p_mw.get(label, 0.0)),
                          "q_set_mvar": float(self.dispatch.q_mvar.get(label, 0.0))}
                data[eid] = {a: values[a] for a in attrs}
        return data

    def timing(self) -> dict[str, float]:
        """Wall time in ``step()`` so far and the part of it spent solving (seconds)."""
        return {"controller_s": self.busy_s, "milp_s": self.solve_s}

    def _default_factory(self, scenario: Any, placements: list[Any]) -> Any:
        from controllers.factory import make_controller

        if self.feeder is None:
            raise ValueError("ControllerSim needs the plan's feeder (init parameter 'feeder', "
                             "FeederData.to_dict()) to build its controller")
        return make_controller(scenario.controller.kind, self.feeder, placements,
                               scenario.fcm.catalog, scenario)

    # -- translation ------------------------------------------------------------------------
    def _resolve_due(self) -> bool:
        if self.scenario.controller.kind != "mpc":
            return True
        return self.steps_done % self.scenario.controller.resolve_every_steps == 0

    @staticmethod
    def _seen_sub_p(attrs: dict[str, dict[str, Any]]) -> float:
        """The substation import the controller was told this step (for coupling tests)."""
        vals = list((attrs.get("sub_p_mw") or {}).values())
        return _num(vals[0], math.nan) if vals else math.nan

    def schedule_at(self, t_s: float) -> float:
        """The day-ahead substation import schedule at simulated time ``t_s`` (MW)."""
        return schedule_value(self.schedule_mw, self.schedule_interval_s, t_s)

    def measurement(self, t_s: float, attrs: dict[str, dict[str, Any]]) -> Measurement:
        """Build what the controller may see from this step's (time-shifted) inputs."""
        cfg = self.scenario.controller
        horizon = [t_s + k * cfg.horizon_step_s for k in range(cfg.horizon_steps)]

        def one(attr: str, default: Any) -> Any:
            vals = [v for v in (attrs.get(attr) or {}).values() if v is not None]
            return vals[0] if vals else default

        def by(mapping: dict[str, str], attr: str) -> dict[str, Any]:
            return {mapping[src]: v for src, v in (attrs.get(attr) or {}).items() if src in mapping}

        fcm: dict[str, FCMState] = {}
        p, q = by(self.fcm_of, "fcm_p_mw"), by(self.fcm_of, "fcm_q_mvar")
        e, u = by(self.fcm_of, "fcm_soc_mwh"), by(self.fcm_of, "fcm_committed")
        tis = by(self.fcm_of, "fcm_time_in_state_s")
        debt = by(self.fcm_of, "fcm_debt_mwh")
        for label in self.fcm_of.values():
            fcm[label] = FCMState(
                p_mw=_num(p.get(label)), q_mvar=_num(q.get(label)), soc_mwh=_num(e.get(label)),
                committed=bool(u.get(label, False)), time_in_state_s=_num(tis.get(label), 1e12),
                debt_mwh=_num(debt.get(label)),
            )
        forecasts = {name: np.asarray(v, dtype=float)
                     for name, v in by(self.campus_of, "campus_forecast_mw").items() if v is not None}
        nxt = {k: float(v) for k, v in by(self.campus_of, "campus_next_mw").items()
               if v is not None and math.isfinite(float(v))}
        load_scale = one("load_scale", None)
        return Measurement(
            time_s=t_s,
            sub_p_mw=_num(one("sub_p_mw", 0.0)),
            sub_q_mvar=_num(one("sub_q_mvar", 0.0)),
            bus_v_pu=_floats(one("bus_v_pu", {})),
            campus_p_mw={k: _num(v) for k, v in by(self.campus_of, "campus_p_mw").items()},
            campus_online={k: bool(v) for k, v in by(self.campus_of, "campus_online").items()},
            fcm=fcm,
            p_sched_mw=np.array([self.schedule_at(tau + cfg.horizon_step_s / 2) for tau in horizon]),
            campus_forecast_mw=forecasts,
            campus_next_mw=nxt,
            background_p_mw=None if load_scale is None else float(load_scale) * self.background_nominal_mw,
            converged=bool(one("converged", True)),
            branch_p_mw=_floats(one("branch_p_mw", {})),
            branch_q_mvar=_floats(one("branch_q_mvar", {})),
        )


def _floats(d: dict[str, Any] | None) -> dict[str, float]:
    """A dict of finite floats (NaN and infinite entries, e.g. of a diverged step, are left
    out); ``x - x == 0`` holds exactly for the finite floats."""
    items = (d or {}).items()
    try:  # the common case, FeederSim's dicts of floats: one comprehension
        return {str(k): float(v) for k, v in items if v - v == 0.0}
    except TypeError:  # None or another type among the values
        return {str(k): float(v) for k, v in items
                if isinstance(v, (int, float)) and float(v) - float(v) == 0.0}


def _num(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def main() -> None:
    """HIL entry point: ``python -m sim.controller_sim HOST:PORT`` (mosaik's ``cmd`` starter)."""
    mosaik_api_v3.start_simulation(ControllerSim(), "dcshock-cosim controller (HIL)")


if __name__ == "__main__":
    main()
