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
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

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
from controllers.highs_direct import DirectHighs
from controllers.solve import SolveOutcome, SolveStatus, make_solver, solve
from models.fcm_catalog import FCMType, Placement
from models.network import FeederData

logger = logging.getLogger(__name__)


#: HiGHS options of the rolling solves (BENCHMARKS.md, "Stage II in real time"). On the
#: default day nearly every solve ends at the root node; a restart after root presolve and
#: the RINS sub-MIP took up to 3/4 of the slowest solves' time, and the root reduced-cost
#: and feasibility-jump heuristics a tenth of the median one, while the warm start and the
#: root cuts find the incumbent within the gap anyway (the objective over the day's 288
#: solves moved by 0.001 %).
ROLLING_HIGHS_OPTIONS = {
    "mip_allow_restart": False,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_feasibility_jump": False,
}


def time_shift_columns(direct: DirectHighs, model: pyo.Block, k: int) -> np.ndarray:
    """For every column of ``direct``, the column holding the same variable ``k`` steps later
    in the horizon, or at the variable's last step when ``t + k`` is beyond it (so a
    monotone sequence, ``z_{t−1} ≥ z_t``, stays monotone); its own column for a variable
    without a time index. A variable's time step is the last element of its index, as in
    every block of the horizon problem (``p[t]``, ``E[t]``, ``sv_lo[g, t]``)."""
    src = np.arange(direct.n_cols)
    if k <= 0:
        return src
    for var in model.component_objects(pyo.Var, descend_into=True):
        if not var.is_indexed():
            continue
        keys = [idx if isinstance(idx, tuple) else (idx,) for idx in var.keys()]
        if not all(isinstance(key[-1], int) for key in keys):
            continue  # not indexed by time last
        last: dict[tuple[Any, ...], int] = {}
        for key in keys:
            last[key[:-1]] = max(last.get(key[:-1], key[-1]), key[-1])
        for key in keys:
            later = key[:-1] + (min(key[-1] + k, last[key[:-1]]),)
            v, w = (var[key if len(key) > 1 else key[0]],
                    var[later if len(later) > 1 else later[0]])
            if v.fixed or w.fixed:
                continue
            src[direct.column(v)] = direct.column(w)
    return src


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
    def first_step_vars(self) -> list[Any]:
        """The variables that :meth:`dispatch`, :meth:`dispatch_q`, :meth:`predicted_v_pu` and
        :meth:`predicted_sub_p_mw` read at ``t = 0`` (a rolling controller loads only these)."""
        from pyomo.core.expr.visitor import identify_variables

        m, t0 = self.m, self.m.T.first()
        exprs = ([m.fcm[u.label].p_mw[t0] for u in self.units]
                 + [m.fcm[u.label].q_mvar[t0] for u in self.units] + [m.net.p_sub_mw[t0]])
        if self.compact is None:  # the branch form's voltages are variables
            exprs += [m.net.v[j, t0] for j in m.net.N]
        found: dict[int, Any] = {}
        for e in exprs:
            for v in identify_variables(e, include_fixed=False):
                found.setdefault(id(v), v)
        return list(found.values())

    def dispatch(self, t: int = 0) -> dict[str, float]:
        """FCM setpoints (MW, + = injection) of horizon step ``t`` of the loaded solution."""
        return self.problem.dispatch(t)

    def dispatch_q(self, t: int = 0) -> dict[str, float]:
        """FCM reactive setpoints (Mvar, + = injection) of horizon step ``t``."""
        return self.problem.dispatch_q(t)

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
    schedule_mvar: dict[str, np.ndarray] = field(default_factory=dict)


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
        {k: np.array([model.dispatch_q(t)[k] for t in model.m.T]) for k in model.labels},
    )


class RollingMPC:
    """Stage-II rolling-horizon controller (module docstring): ``step(measurement) -> Dispatch``.

    Solves on every call (the caller decides the re-solve cadence and holds setpoints in
    between; ControllerSim does so every ``resolve_every_steps`` steps). The Pyomo model
    (``self.model.m``) and its solver instance are created once: with ``linearize_at="ac"``
    at the first ``step`` (its sensitivities are taken at the first measured operating
    point), with ``"flat"`` in the constructor. After that ``step`` updates parameters only.

    With HiGHS (``solver = "appsi_highs"``, the default) the instance is a
    :class:`controllers.highs_direct.DirectHighs`: each step pushes the parameters that
    changed straight into HiGHS, starts from the last plan's integer decisions moved on by
    the re-solve period (:meth:`_start`; HiGHS completes them into an incumbent when they are
    still feasible), runs HiGHS with :data:`ROLLING_HIGHS_OPTIONS`, and loads only the
    first step's variables back into the model. Another solver goes through
    :func:`controllers.solve.solve` and is rebuilt by Pyomo at each step.

    ``Dispatch.solve_s`` and ``solve_times_s`` are the time of one step's update and solve
    (the forecast, the parameter update, the solve and reading the plan); building the model
    and loading it into the solver, once, is ``build_s``. Counters: ``solves``,
    ``fallbacks``, ``fallback_counts`` (by reason), ``builds`` (1 after the first step,
    never more).
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
        self.build_s = 0.0
        self.model: Stage2Model | None = None
        self.direct: DirectHighs | None = None
        self.solver: Any = None
        self._read_vars: list[Any] = []
        self._shift: np.ndarray | None = None
        self._last_x: np.ndarray | None = None
        if params.linearize_at != "ac":
            self._build(None)
        else:  # validate the inputs now, build at the first measurement
            check_sites(feeder, self.placements, self.catalog, params.campuses)
        self.forecaster = forecaster or PersistenceForecaster()
        self.fallback_controller = fallback
        self.guard = guard
        self.plan: Dispatch = Dispatch(p_mw={pl.label: 0.0 for pl in self.placements})
        self.trims = 0
        self.solves = 0
        self.fallbacks = 0
        self.fallback_counts: Counter[str] = Counter()
        self.solve_times_s: list[float] = []
        self.last_outcome: SolveOutcome | None = None

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
                t_build = time.perf_counter()
                self._build(op)
                t0 += time.perf_counter() - t_build  # a step's time leaves the build out
            self.model.set_state(measurement, forecast)
            if self.direct is not None:
                outcome = self._solve_direct()
            else:
                outcome = solve(self.model.m, self.solver,
                                warmstart=self.params.warmstart and self.solves > 1)
        except Exception as exc:  # never raise into the co-simulation
            logger.exception("Stage-II update/solve failed at t=%.0f s", measurement.time_s)
            outcome = SolveOutcome(SolveStatus.ERROR, message=str(exc))
        self.last_outcome = outcome
        if not outcome.ok:
            return self._fallback(measurement, outcome.status.value, t0, outcome.message)
        m = self.model
        p_mw, v_pu, sub_mw = m.dispatch(0), m.predicted_v_pu(0), m.predicted_sub_p_mw(0)
        elapsed = time.perf_counter() - t0  # reading the plan included
        self.solve_times_s.append(elapsed)
        self.plan = Dispatch(
            p_mw=p_mw, q_mvar=m.dispatch_q(0), predicted_v_pu=v_pu,
            predicted_sub_p_mw=sub_mw, status=outcome.status.value, solve_s=elapsed,
            fallback=False, solved=True,
        )
        return self._trimmed(measurement, self.plan)

    def _solve_direct(self) -> SolveOutcome:
        """Push the new parameter values into HiGHS, start from :meth:`_start`, solve, and
        load the first step's variables into the model (what :meth:`step` reads)."""
        d = self.direct
        d.push()
        outcome = d.solve(start=self._start())
        if outcome.ok:
            d.load(self._read_vars)
            self._last_x = d.x
        else:
            self._last_x = None
        return outcome

    def _start(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The MIP start of the next solve: the last solution's integer columns, each taken
        from ``k`` horizon steps later (``k`` = the re-solve period over the horizon step,
        so that the plan's remaining decisions line up with the new horizon; the last
        steps repeat their own), for HiGHS to complete with the new data. None before
        the first solution, after a failed solve, or with ``warmstart`` off."""
        if self._last_x is None or not self.params.warmstart:
            return None
        cols = self.direct.integer_cols
        return cols, np.round(self._last_x[self._shift[cols]])

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
        """Build the model at ``op`` and load it into its solver (timed as ``build_s``). The
        controller takes the model only once all of it is built: a build that fails leaves
        it unbuilt (the step falls back, the next step builds again)."""
        t0 = time.perf_counter()
        try:
            p = self.params
            m = Stage2Model(self.feeder, self.placements, self.catalog, p, operating_point=op)
            if p.solver in ("appsi_highs", "highs"):
                direct = DirectHighs(m.m, p.time_limit_s, p.mip_gap, ROLLING_HIGHS_OPTIONS)
                read_vars = m.first_step_vars()
                shift = time_shift_columns(direct, m.m,
                                           int(round(p.resolve_period_s / p.horizon_step_s)))
                self.direct, self._read_vars, self._shift = direct, read_vars, shift
            else:
                self.solver = make_solver(p.solver, p.time_limit_s, p.mip_gap)
            self.model = m
            self.builds += 1
        finally:
            self.build_s += time.perf_counter() - t0

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
