"""Solving a Pyomo model and turning the termination status into a typed outcome.

:func:`make_solver` returns a solver object; :func:`solve` runs it and returns a
:class:`SolveOutcome` whose ``status`` is one of :class:`SolveStatus`. Callers branch on the
status and never look at solver-specific termination codes.

The default solver is HiGHS through Pyomo's persistent APPSI interface (``appsi_highs``):
the first ``solve`` of a model loads it into HiGHS; later solves of the same model object
only push what changed (mutable Params, fixed variables), and with ``warmstart`` the current
variable values are handed to HiGHS as a MIP start. Any other name is passed to
``pyo.SolverFactory`` (e.g. ``"gurobi"``, ``"cbc"`` when installed); those are rebuilt on
each solve.

Statuses:

* ``optimal``: solved to the requested gap; values are loaded into the model.
* ``feasible``: stopped by the time limit with an incumbent; values are loaded. A rolling
  controller may use it (Dispatch status ``"feasible"``).
* ``infeasible``: infeasible (or infeasible-or-unbounded); nothing loaded.
* ``time_limit``: stopped by the time limit without an incumbent; nothing loaded.
* ``error``: anything else, including exceptions raised by the solver; nothing loaded.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo

logger = logging.getLogger(__name__)


class SolveStatus(str, enum.Enum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    ERROR = "error"


@dataclass(frozen=True)
class SolveOutcome:
    """Result of one solve: status, objective (NaN if none), relative MIP gap, wall time."""

    status: SolveStatus
    objective: float = math.nan
    mip_gap: float = math.nan
    solve_s: float = 0.0
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the model holds a usable solution (optimal or feasible)."""
        return self.status in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


#: HiGHS threads: one for every instance of the process. HiGHS keeps one thread scheduler
#: per process, set by its first run; an instance asking for another count later fails
#: (``Option 'threads' ... scheduler has already been initialized``), so every instance
#: must ask for the same. One: its MIP search is serial, and the co-simulation has the
#: other core.
HIGHS_THREADS = 1


def highs(time_limit_s: float | None = None, mip_gap: float | None = None, *,
          load_solution: bool = False) -> Any:
    """The one HiGHS set-up of the project: a persistent APPSI instance that does not print
    (HiGHS writes warnings, e.g. for every zero coefficient a mutable parameter pushes,
    straight to stdout, and library code must not print), on :data:`HIGHS_THREADS`
    threads, with an optional time limit (s) and relative MIP gap; solutions are loaded only
    when asked (``load_solution``; :func:`solve` loads them itself)."""
    from pyomo.contrib.appsi.solvers import Highs

    solver = Highs()
    solver.config.load_solution = load_solution
    solver.highs_options["output_flag"] = False
    solver.highs_options["threads"] = HIGHS_THREADS
    if time_limit_s is not None:
        solver.config.time_limit = max(float(time_limit_s), 0.1)
    if mip_gap is not None:
        solver.config.mip_gap = float(mip_gap)
    return solver


_INTERRUPTED = threading.Event()


def note_interrupt() -> None:
    """Record that the process got Ctrl-C (the command line's SIGINT handler calls this)."""
    _INTERRUPTED.set()


def clear_interrupt() -> None:
    """Forget an earlier Ctrl-C (the command line calls this when its command ends)."""
    _INTERRUPTED.clear()


def raise_if_interrupted(solver: Any = None) -> None:
    """Ctrl-C reaches the caller as KeyboardInterrupt, never as a solver status. APPSI lets
    highspy catch the interrupt, stop HiGHS and report a termination APPSI does not know
    (which would read as a solver error: a fallback, or a failed Stage I). Called after each
    solve: raises when :func:`note_interrupt` was called or the solver's last run was
    interrupted."""
    import highspy

    model = getattr(solver, "_solver_model", None)
    if _INTERRUPTED.is_set() or (model is not None and model.getModelStatus() in (
            highspy.HighsModelStatus.kInterrupt, highspy.HighsModelStatus.kHighsInterrupt)):
        raise KeyboardInterrupt


def status_of(tc: Any, has_solution: bool = False) -> SolveStatus:
    """The :class:`SolveStatus` of an APPSI termination condition (``has_solution``: an
    incumbent exists, which turns a stop on a limit into ``feasible``)."""
    from pyomo.contrib.appsi.base import TerminationCondition as TC

    if tc == TC.optimal:
        return SolveStatus.OPTIMAL
    if tc in (TC.maxTimeLimit, TC.maxIterations, TC.interrupted):
        return SolveStatus.FEASIBLE if has_solution else SolveStatus.TIME_LIMIT
    if tc in (TC.infeasible, TC.infeasibleOrUnbounded):
        return SolveStatus.INFEASIBLE
    return SolveStatus.ERROR


def highs_status(model_status: Any, has_solution: bool = False) -> SolveStatus:
    """The :class:`SolveStatus` of a HiGHS model status read from highspy directly
    (:class:`controllers.highs_direct.DirectHighs`), as :func:`status_of` for APPSI's."""
    import highspy

    S = highspy.HighsModelStatus
    if model_status == S.kOptimal:
        return SolveStatus.OPTIMAL
    if model_status in (S.kTimeLimit, S.kIterationLimit, S.kSolutionLimit):
        return SolveStatus.FEASIBLE if has_solution else SolveStatus.TIME_LIMIT
    if model_status in (S.kInfeasible, S.kUnboundedOrInfeasible):
        return SolveStatus.INFEASIBLE
    return SolveStatus.ERROR


def solver_available(name: str) -> bool:
    """Whether :func:`make_solver` can make ``name`` on this machine."""
    if name in ("appsi_highs", "highs"):
        return True
    quiet = logging.getLogger("pyomo.opt")  # an unknown name makes Pyomo log a traceback
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        solver = pyo.SolverFactory(name)
        return solver is not None and bool(solver.available(exception_flag=False))
    except Exception:  # an unknown name: an unusable stub, or an exception
        return False
    finally:
        quiet.setLevel(level)


def make_solver(name: str = "appsi_highs", time_limit_s: float | None = None,
                mip_gap: float | None = None) -> Any:
    """A solver object; ``appsi_highs`` is persistent (keep it to reuse a loaded model)."""
    if name in ("appsi_highs", "highs"):
        solver = highs(mip_gap=mip_gap)
        solver.config.time_limit = time_limit_s
        return solver
    solver = pyo.SolverFactory(name)
    if solver is None or not solver.available(exception_flag=False):
        raise ValueError(f"solver {name!r} is not available; use 'appsi_highs'")
    solver._dcshock_opts = {"time_limit_s": time_limit_s, "mip_gap": mip_gap}
    return solver


def solve(model: pyo.Block, solver: Any = None, *, warmstart: bool = False,
          time_limit_s: float | None = None, mip_gap: float | None = None) -> SolveOutcome:
    """Solve ``model`` and return the typed outcome (never raises for solver failures).

    ``time_limit_s``/``mip_gap`` override the solver's settings for this call when given.
    """
    solver = solver if solver is not None else make_solver()
    t0 = time.perf_counter()
    try:
        if _is_appsi(solver):
            return _solve_appsi(model, solver, warmstart, time_limit_s, mip_gap, t0)
        return _solve_factory(model, solver, warmstart, time_limit_s, mip_gap, t0)
    except Exception as exc:  # a solver crash becomes a typed outcome for the caller
        logger.warning("solver error: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        return SolveOutcome(SolveStatus.ERROR, solve_s=time.perf_counter() - t0, message=str(exc))


def _is_appsi(solver: Any) -> bool:
    from pyomo.contrib.appsi.base import PersistentSolver

    return isinstance(solver, PersistentSolver)


def _solve_appsi(model, solver, warmstart, time_limit_s, mip_gap, t0) -> SolveOutcome:
    solver.config.load_solution = False
    solver.config.warmstart = bool(warmstart)
    limit = time_limit_s if time_limit_s is not None else getattr(solver, "_dcshock_limit", None)
    if limit is None:
        limit = solver.config.time_limit
    solver._dcshock_limit = limit
    if mip_gap is not None:
        solver.config.mip_gap = mip_gap
    if limit is not None:  # per run: HiGHS (highspy >= 1.16) times each run() from its start
        solver.config.time_limit = limit
    res = solver.solve(model)
    raise_if_interrupted(solver)
    dt = time.perf_counter() - t0
    tc = res.termination_condition
    status = status_of(tc, res.best_feasible_objective is not None)
    gap = _gap(res.best_feasible_objective, res.best_objective_bound)
    if status is SolveStatus.OPTIMAL:
        res.solution_loader.load_vars()
        return SolveOutcome(status, float(res.best_feasible_objective), gap, dt)
    if status is SolveStatus.FEASIBLE:
        res.solution_loader.load_vars()
        return SolveOutcome(status, float(res.best_feasible_objective), gap, dt, f"stopped: {tc.name}")
    if status is SolveStatus.TIME_LIMIT:
        return SolveOutcome(status, solve_s=dt, message=f"stopped: {tc.name}")
    if status is SolveStatus.INFEASIBLE:
        return SolveOutcome(status, solve_s=dt, message=tc.name)
    return SolveOutcome(status, solve_s=dt, message=f"termination {tc.name}")


def _solve_factory(model, solver, warmstart, time_limit_s, mip_gap, t0) -> SolveOutcome:
    from pyomo.opt import TerminationCondition as TC

    opts = getattr(solver, "_dcshock_opts", {})
    options = {}
    limit = time_limit_s if time_limit_s is not None else opts.get("time_limit_s")
    gap = mip_gap if mip_gap is not None else opts.get("mip_gap")
    name = str(getattr(solver, "name", "")).lower()
    limit_key, gap_key = _OPTION_NAMES.get(name, ("timelimit", "mipgap"))
    if limit is not None:
        options[limit_key] = limit
    if gap is not None:
        options[gap_key] = gap
    kwargs: dict[str, Any] = {"load_solutions": False, "options": options}
    if warmstart and getattr(solver, "warm_start_capable", lambda: False)():
        kwargs["warmstart"] = True
    res = solver.solve(model, **kwargs)
    dt = time.perf_counter() - t0
    tc = res.solver.termination_condition
    if tc == TC.optimal:
        model.solutions.load_from(res)
        return SolveOutcome(SolveStatus.OPTIMAL, pyo.value(_objective(model)), math.nan, dt)
    if tc in (TC.maxTimeLimit,):
        if len(res.solution) > 0:
            model.solutions.load_from(res)
            return SolveOutcome(SolveStatus.FEASIBLE, pyo.value(_objective(model)), math.nan, dt)
        return SolveOutcome(SolveStatus.TIME_LIMIT, solve_s=dt)
    if tc in (TC.infeasible, TC.infeasibleOrUnbounded):
        return SolveOutcome(SolveStatus.INFEASIBLE, solve_s=dt, message=str(tc))
    return SolveOutcome(SolveStatus.ERROR, solve_s=dt, message=f"termination {tc}")


_OPTION_NAMES = {  # solver name -> (time-limit option, relative-gap option)
    "cbc": ("seconds", "ratioGap"),
    "gurobi": ("TimeLimit", "MIPGap"),
    "glpk": ("tmlim", "mipgap"),
    "cplex": ("timelimit", "mipgap"),
    "scip": ("limits/time", "limits/gap"),
}


def _objective(model: pyo.Block) -> Any:
    return next(model.component_data_objects(pyo.Objective, active=True))


def _gap(primal: float | None, bound: float | None) -> float:
    if primal is None or bound is None or not math.isfinite(primal) or not math.isfinite(bound):
        return math.nan
    return abs(primal - bound) / max(abs(primal), 1e-9)
