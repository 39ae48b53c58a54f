"""Stage II: the horizon dispatch MILP and its rolling-horizon driver (docs/optimization.md §3).

:class:`Stage2Model` is one horizon MILP: the horizon problem of
:class:`controllers.horizon.HorizonProblem` (the same builder Stage I's recourse uses: the
LinDistFlow network, one FCM block per placement, the objective terms of DESIGN.md §3) on a
``ConcreteModel`` whose objective is its cost, with the placements' sizes, and each
measurement and forecast written into its mutable parameters.

:class:`RollingMPC` keeps one :class:`Stage2Model` and one persistent HiGHS instance alive;
each ``step(measurement)`` only updates mutable parameters, warm-starts from the previous
solution and solves with a time limit. **It solves on every call**: holding the setpoints
between re-solves (every ``controller.resolve_every_steps`` co-simulation steps) is done by
:class:`sim.controller_sim.ControllerSim`, which calls ``step`` only when a re-solve is due.

Safe fallback: when the MILP is infeasible, stops without an incumbent, or the solver (or
the update) raises, ``step`` returns the answer of the ``fallback`` controller it was given
(:func:`controllers.factory.make_mpc` gives it a :class:`controllers.baseline.RuleController`
whose step is the re-solve period; without one, every FCM goes to 0) with
``fallback=True`` and ``status="fallback:<reason>"`` (``infeasible``, ``time_limit``,
``error``, ``no-measurement`` for a diverged power flow). Every fallback is logged and
counted in ``fallback_counts``; ``step`` never raises. A time-out with an incumbent is used
as it is, with status ``"feasible"``. A ``guard`` (the rule controller's ramp guard, rule 5)
corrects the held plan at every co-simulation step.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import pyomo.environ as pyo

from controllers.forecast import Forecaster, PersistenceForecaster
from controllers.horizon import (
    HorizonInputs,
    HorizonProblem,
    MPCParams,
    check_sites,
    horizon_inputs,
    placement_units,
)
from controllers.interface import Controller, Dispatch, Measurement
from controllers.network import OperatingPoint
from controllers.solve import SolveOutcome, SolveStatus, make_solver, solve
from models.fcm_catalog import FCMType, Placement
from models.network import FeederData

logger = logging.getLogger(__name__)


class Guard(Protocol):
    """Corrects a plan's setpoints for this step's measurement (the ramp guard)."""

    def trim(self, measurement: Measurement, p_mw: Mapping[str, float]) -> dict[str, float]: ...


class Stage2Model:
    """One horizon MILP over ``T = 0..H−1`` (module docstring); built once, updated in place.

    The components of :class:`controllers.horizon.HorizonProblem` sit on ``self.m`` (``fcm``,
    ``net``, ``term``, ``weight``, ``z``, ...), with ``m.obj`` minimising ``m.cost``.
    :meth:`set_state` writes a measurement and a forecast into the mutable parameters.
    ``operating_point`` is where the compact form's sensitivities (and the branch form's
    initial loss coefficients) are taken.
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: MPCParams,
                 operating_point: OperatingPoint | None = None) -> None:
        self.feeder = feeder
        self.operating_point = operating_point
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.params = params
        check_sites(feeder, self.placements, self.catalog, params.campuses)
        self.units = placement_units(self.placements, self.catalog)
        self.sizes = {u.label: (u.p_cap, u.e_cap) for u in self.units}
        self.m = pyo.ConcreteModel(name="stage2")
        self.problem = HorizonProblem(self.m, feeder, self.units, params, operating_point)
        self.compact = self.problem.compact
        self.m.obj = pyo.Objective(expr=self.m.cost)

    def set_state(self, measurement: Measurement, campus_mw: Mapping[str, Sequence[float]]) -> None:
        """Push a measurement and a campus forecast into the mutable parameters."""
        inp: HorizonInputs = horizon_inputs(self.feeder, self.placements, self.params,
                                            measurement, campus_mw)
        names = self.feeder.bus_names
        pb = self.problem
        pb.set_loads(np.array([inp.p_load[j] for j in names]), np.array([inp.q_load[j] for j in names]),
                     np.array([inp.p_background[j] for j in names]))
        pb.set_schedule(inp.p_sched)
        pb.set_offline(inp.offline)
        pb.set_grid(measurement.sub_p_mw, inp.op, inp.v_source_sq)
        for u in self.units:
            st = measurement.fcm.get(u.label)
            if st is not None:
                pb.set_unit_state(u.label, st)
        pb.refresh()

    # -- reading ----------------------------------------------------------------------------
    def dispatch(self, t: int = 0) -> dict[str, float]:
        """FCM setpoints (MW, + = injection) of horizon step ``t`` of the loaded solution."""
        return self.problem.dispatch(t)

    def schedule(self) -> dict[str, np.ndarray]:
        """FCM setpoints over the whole horizon."""
        return self.problem.schedule()

    def term_values(self) -> dict[str, float]:
        """Value of each named objective term (unweighted) of the loaded solution."""
        return self.problem.term_values()

    def predicted_v_pu(self, t: int = 0) -> dict[str, float]:
        return self.problem.predicted_v_pu(t)

    def predicted_sub_p_mw(self, t: int = 0) -> float:
        return self.problem.predicted_sub_p_mw(t)

    @property
    def labels(self) -> list[str]:
        return [pl.label for pl in self.placements]

    def n_constraints(self) -> int:
        return sum(1 for _ in self.m.component_data_objects(pyo.Constraint, active=True))


@dataclass
class HorizonResult:
    """One-shot Stage-II result: typed outcome and, when it is usable, the solution."""

    outcome: SolveOutcome
    schedule_mw: dict[str, np.ndarray] = field(default_factory=dict)
    terms: dict[str, float] = field(default_factory=dict)
    predicted_v_pu: dict[str, float] = field(default_factory=dict)
    sub_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    model: Stage2Model | None = None


def solve_horizon(feeder: FeederData, placements: Sequence[Placement],
                  catalog: Mapping[str, FCMType], params: MPCParams, measurement: Measurement,
                  campus_mw: Mapping[str, Sequence[float]] | None = None) -> HorizonResult:
    """Build, update and solve one horizon MILP (no driver state); never raises on solver
    failure: read ``result.outcome.status``. ``campus_mw`` default: persistence."""
    if campus_mw is None:
        campus_mw = PersistenceForecaster().forecast(measurement, params.horizon_steps,
                                                     params.horizon_step_s)
    op = horizon_inputs(feeder, placements, params, measurement, campus_mw).op
    model = Stage2Model(feeder, placements, catalog, params, operating_point=op)
    model.set_state(measurement, campus_mw)
    outcome = solve(model.m, make_solver(params.solver, params.time_limit_s, params.mip_gap))
    if not outcome.ok:
        return HorizonResult(outcome, model=model)
    return HorizonResult(
        outcome, model.schedule(), model.term_values(), model.predicted_v_pu(),
        np.array([model.predicted_sub_p_mw(t) for t in model.m.T]), model,
    )


class RollingMPC:
    """Stage-II rolling-horizon controller (module docstring): ``step(measurement) -> Dispatch``.

    Solves on every call (the caller decides the re-solve cadence and holds setpoints in
    between; ControllerSim does so every ``resolve_every_steps`` steps). The Pyomo model
    (``self.model.m``) and the persistent solver are created once: with
    ``linearize_at="ac"`` at the first ``step`` (its sensitivities are taken at the first
    measured operating point), with ``"flat"`` in the constructor. After that ``step``
    updates parameters only. Counters: ``solves``, ``fallbacks``, ``fallback_counts`` (by
    reason), ``solve_times_s``, ``builds`` (1 after the first step, never more).
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: MPCParams,
                 forecaster: Forecaster | None = None, fallback: Controller | None = None,
                 guard: Guard | None = None) -> None:
        self.params = params
        self.feeder = feeder
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.builds = 0
        self.model: Stage2Model | None = None
        if params.linearize_at != "ac":
            self._build(None)
        else:  # validate the inputs now, build at the first measurement
            check_sites(feeder, self.placements, self.catalog, params.campuses)
        self.forecaster = forecaster or PersistenceForecaster()
        self.solver = make_solver(params.solver, params.time_limit_s, params.mip_gap)
        self.fallback_controller = fallback
        self.guard = guard
        self.plan: Dispatch = Dispatch(p_mw={pl.label: 0.0 for pl in self.placements})
        self.trims = 0
        self.solves = 0
        self.fallbacks = 0
        self.fallback_counts: Counter[str] = Counter()
        self.solve_times_s: list[float] = []
        self.last_outcome: SolveOutcome | None = None
        self._loaded = False

    def step(self, measurement: Measurement) -> Dispatch:
        t0 = time.perf_counter()
        self.solves += 1
        if not measurement.converged:
            return self._fallback(measurement, "no-measurement", t0)
        try:
            forecast = self.forecaster.forecast(
                measurement, self.params.horizon_steps, self.params.horizon_step_s)
            if self.model is None:
                op = horizon_inputs(self.feeder, self.placements, self.params, measurement,
                                    forecast).op
                self._build(op)
            self.model.set_state(measurement, forecast)
            outcome = solve(self.model.m, self.solver,
                            warmstart=self.params.warmstart and self._loaded)
            if outcome.status is not SolveStatus.ERROR:  # the instance is loaded in HiGHS
                self._after_first_solve()
        except Exception as exc:  # never raise into the co-simulation
            logger.exception("Stage-II update/solve failed at t=%.0f s", measurement.time_s)
            outcome = SolveOutcome(SolveStatus.ERROR, message=str(exc))
        self.last_outcome = outcome
        if not outcome.ok:
            return self._fallback(measurement, outcome.status.value, t0, outcome.message)
        elapsed = time.perf_counter() - t0
        self.solve_times_s.append(elapsed)
        m = self.model
        self.plan = Dispatch(
            p_mw=m.dispatch(0), q_mvar={k: 0.0 for k in m.labels},
            predicted_v_pu=m.predicted_v_pu(0), predicted_sub_p_mw=m.predicted_sub_p_mw(0),
            status=outcome.status.value, solve_s=elapsed, fallback=False, solved=True,
        )
        return self._trimmed(measurement, self.plan)

    def hold(self, measurement: Measurement) -> Dispatch:
        """A co-simulation step between re-solves: the plan of the last ``step``, with the
        ramp guard (``trim = "ramp"``) applied to this step's measurement; no solve."""
        return replace(self._trimmed(measurement, self.plan), status="hold", solve_s=0.0,
                       solved=False, fallback=False)

    def _trimmed(self, measurement: Measurement, plan: Dispatch) -> Dispatch:
        """``plan`` with its setpoints corrected by the ``guard`` (the ramp guard, rule 5 of
        :class:`controllers.baseline.RuleController`); unchanged without one."""
        if self.guard is None:
            return plan
        try:
            p_mw = self.guard.trim(measurement, plan.p_mw)
        except Exception:  # the guard must never take the plan down with it
            logger.exception("ramp guard failed at t=%.0f s; plan applied as solved",
                             measurement.time_s)
            return plan
        if any(abs(p_mw[k] - plan.p_mw.get(k, 0.0)) > 1e-9 for k in p_mw):
            self.trims += 1
        return replace(plan, p_mw=p_mw)

    def _build(self, op: OperatingPoint | None) -> None:
        self.model = Stage2Model(self.feeder, self.placements, self.catalog, self.params,
                                 operating_point=op)
        self.builds += 1

    def _after_first_solve(self) -> None:
        """From the second solve on, tell APPSI that only parameter values change."""
        if self._loaded or not hasattr(self.solver, "update_config"):
            self._loaded = True
            return
        cfg = self.solver.update_config
        cfg.check_for_new_or_removed_constraints = False
        cfg.check_for_new_or_removed_vars = False
        cfg.check_for_new_or_removed_params = False
        cfg.check_for_new_objective = False
        cfg.update_constraints = False
        cfg.update_vars = False
        cfg.update_named_expressions = False
        cfg.update_objective = False
        cfg.update_params = True
        self._loaded = True

    def _fallback(self, measurement: Measurement, reason: str, t0: float, detail: str = "") -> Dispatch:
        self.fallbacks += 1
        self.fallback_counts[reason] += 1
        logger.warning("Stage-II fallback at t=%.0f s: %s %s (fallback %d of %d solves)",
                       measurement.time_s, reason, detail, self.fallbacks, self.solves)
        p_mw = {pl.label: 0.0 for pl in self.placements}
        if self.fallback_controller is not None:
            try:
                p_mw.update(self.fallback_controller.step(measurement).p_mw)
            except Exception:  # the fallback of the fallback: everything at zero
                logger.exception("fallback controller failed; FCMs to 0")
                p_mw = {pl.label: 0.0 for pl in self.placements}
        elapsed = time.perf_counter() - t0
        self.solve_times_s.append(elapsed)
        self.plan = Dispatch(p_mw=p_mw, q_mvar={k: 0.0 for k in p_mw}, status=f"fallback:{reason}",
                             solve_s=elapsed, fallback=True, solved=False)
        return self._trimmed(measurement, self.plan)
