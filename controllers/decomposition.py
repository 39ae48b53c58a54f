"""Solving the two-stage risk-averse (DRO-CVaR) problem: extensive form and Benders.

The problem (docs/stage1.md §1) is

    min_y  c(y) + R( w·Q_1(y), …, w·Q_N(y) ),     Q_s(y) = min { f_s(z) : (y, z) ∈ Z_s }

with first-stage variables y (placement binaries and module counts; ``c`` the capex), the
recourse Q_s of sampled scenario s, a weight w (shock events the capex pays for) and the
risk functional R of :mod:`controllers.risk`. The first stage talks to the recourse only
through *linking* variables (the module counts n_k).

* :func:`solve_extensive` builds one Pyomo model with the first stage, N recourse blocks
  and the dualised risk block, and hands it to HiGHS (MILP; the recourse keeps its
  integers unless ``relax_recourse``).
* :func:`solve_benders` is a multi-cut L-shaped method on the **LP relaxation** of the
  recourse. Master: first stage + one epigraph variable t_s per scenario + the same risk
  block applied to ``w·t``; cuts ``t_s ≥ Q_s(n̂) + π_sᵀ(n − n̂)`` where π_s are the duals of
  the constraints ``n_copy = n̂`` in subproblem s. Because R is non-decreasing in every
  Q_s, the master value is a lower bound; ``c(n̂) + R(w·Q(n̂))`` at each master solution is
  an upper bound. It stops at the relative gap, the time limit or the iteration limit.
* :func:`choose_method` picks one for ``method="auto"`` from the size of the extensive form.

Recourse builders follow the :class:`Recourse` protocol; they must have relatively complete
recourse (every first-stage choice leaves a feasible second stage, which the penalised
slacks of the Stage-II objective guarantee). An infeasible subproblem is reported as
:class:`RecourseInfeasible`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Hashable, Mapping, Protocol

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition

from controllers.risk import RiskEvaluation, RiskSpec, WorstCase, add_risk_block
from controllers.solve import SolveStatus, highs, make_solver, raise_if_interrupted, solve, status_of

log = logging.getLogger(__name__)

#: ``method="auto"`` uses the extensive form while N × (variables of one recourse block)
#: stays at or below this many variables, Benders above it (docs/stage1.md §5).
AUTO_EXTENSIVE_MAX_VARS = 10_000


class Progress(Protocol):
    """Told how far a long step has come: ``progress(phase, done, total, note)`` (``done`` of
    ``total`` units of ``phase``, e.g. the scenarios of a Benders iteration, with a short
    ``note`` such as the gap). The CLI draws it as a progress bar (``site``)."""

    def __call__(self, phase: str, done: int, total: int, note: str = "") -> None:
        ...


def no_progress(phase: str, done: int, total: int, note: str = "") -> None:
    """The :class:`Progress` that shows nothing."""


class Recourse(Protocol):
    """Builds the second stage of one sampled scenario into a Pyomo block."""

    n_scenarios: int

    def build(self, blk: pyo.Block, link: Mapping[Hashable, Any], s: int) -> Any:
        """Add scenario ``s``'s recourse to ``blk``; ``link[k]`` is the Pyomo expression of
        linking quantity k (a module count). Return the cost expression Q_s."""
        ...


class RecourseInfeasible(RuntimeError):
    """A recourse problem had no feasible point (the recourse is not complete)."""


class SolveFailed(RuntimeError):
    """HiGHS ended without a usable solution (error, or a time-out before any incumbent)."""


@dataclass(frozen=True)
class TwoStageProblem:
    """Everything the solvers need. ``first_stage(blk)`` adds the first-stage variables and
    constraints to ``blk`` and returns ``(cost expression, {key: linking variable})``; the
    linking variables must have finite bounds."""

    first_stage: Callable[[pyo.Block], tuple[Any, dict[Hashable, pyo.Var]]]
    recourse: Recourse
    p0: np.ndarray
    risk: RiskSpec
    distances: np.ndarray | None = None
    recourse_weight: float = 1.0
    recourse_lower_bound: float = 0.0

    @property
    def n_scenarios(self) -> int:
        return int(np.asarray(self.p0).size)


@dataclass
class TwoStageSolution:
    """A solved two-stage problem. Costs ``recourse_costs`` are Q_s (unweighted);
    ``risk`` is R evaluated at ``w·Q`` with its worst-case law."""

    method: str
    status: str
    link: dict[Hashable, float]
    first_stage_values: dict[str, float]
    objective: float
    bound: float
    gap: float
    first_stage_cost: float
    recourse_costs: np.ndarray
    risk: RiskEvaluation
    solve_s: float
    recourse_relaxed: bool
    iterations: int = 1
    history: list[tuple[float, float, float]] = field(default_factory=list)
    #: Benders: wall time in the master MILP solves and in the subproblem rounds (s)
    master_s: float = 0.0
    subproblems_s: float = 0.0


def relax_integers(blk: pyo.Block) -> int:
    """Relax every integer/binary variable of ``blk`` to its continuous hull (keep bounds).
    Returns how many variables were relaxed."""
    count = 0
    for v in blk.component_data_objects(pyo.Var, descend_into=True):
        if v.is_integer() or v.is_binary():
            lb, ub = v.bounds
            v.domain = pyo.Reals
            v.setlb(lb)
            v.setub(ub)
            count += 1
    return count


def _first_stage_values(blk: pyo.Block) -> dict[str, float]:
    return {
        v.getname(fully_qualified=False): float(v.value)
        for v in blk.component_data_objects(pyo.Var, descend_into=True)
        if v.value is not None
    }


def recourse_size(problem: TwoStageProblem) -> int:
    """Number of variables in the recourse block of scenario 0 (for ``auto``)."""
    m = pyo.ConcreteModel()
    m.first = pyo.Block()
    _, link = problem.first_stage(m.first)
    m.scen = pyo.Block()
    problem.recourse.build(m.scen, link, 0)
    return sum(1 for _ in m.scen.component_data_objects(pyo.Var, descend_into=True))


def choose_method(problem: TwoStageProblem, method: str = "auto", recourse: str = "lp") -> str:
    """``extensive`` or ``benders``: the given one, or for ``auto`` the extensive form when
    the recourse keeps its integers (``recourse="milp"``, which Benders cannot) or while
    N × (recourse variables) ≤ :data:`AUTO_EXTENSIVE_MAX_VARS`."""
    if recourse not in ("lp", "milp"):
        raise ValueError(f"recourse {recourse!r}; allowed: lp, milp")
    if method == "benders" and recourse == "milp":
        raise ValueError("Benders works on the LP relaxation of the recourse; use "
                         "method extensive (or auto) for recourse milp")
    if method in ("extensive", "benders"):
        return method
    if method != "auto":
        raise ValueError(f"method {method!r}; allowed: auto, extensive, benders")
    if recourse == "milp":
        return "extensive"
    size = problem.n_scenarios * recourse_size(problem)
    chosen = "extensive" if size <= AUTO_EXTENSIVE_MAX_VARS else "benders"
    log.info("auto method: %d scenarios x recourse -> %d variables -> %s",
             problem.n_scenarios, size, chosen)
    return chosen


def _status(tc: TerminationCondition) -> str:
    """``optimal``, ``time_limit`` (a stop on a limit, with or without an incumbent),
    ``infeasible``, or the termination's own name."""
    status = status_of(tc)
    return tc.name if status is SolveStatus.ERROR else status.value


def solve_extensive(
    problem: TwoStageProblem,
    *,
    time_limit_s: float = 300.0,
    mip_gap: float = 1e-4,
    relax_recourse: bool = False,
    progress: Progress = no_progress,
) -> TwoStageSolution:
    """Extensive form: min c(y) + R(w·Q) with all N recourse blocks in one model.

    After the solve every recourse is re-solved on its own at the chosen first stage (one
    scenario at a time, as in Benders): in the joint model a scenario whose risk weight is
    zero (below the VaR, β = 1) need not sit at its own minimum, and the reported Q_s, E,
    CVaR and p* must be those of the true recourse values. The objective is unchanged (R is
    monotone); should a re-solve fail, the joint model's values are reported.
    """
    t0 = time.perf_counter()
    n = problem.n_scenarios
    w = float(problem.recourse_weight)
    m = pyo.ConcreteModel()
    m.first = pyo.Block()
    capex, link = problem.first_stage(m.first)
    m.scen = pyo.Block(range(n))
    q_expr = []
    for s in range(n):
        q_expr.append(problem.recourse.build(m.scen[s], link, s))
        progress("building the extensive form", s + 1, n)
    if relax_recourse:
        for s in range(n):
            relax_integers(m.scen[s])
    m.Q = pyo.Expression(range(n), rule=lambda _, s: q_expr[s])
    m.risk = pyo.Block()
    add_risk_block(m.risk, [w * m.Q[s] for s in range(n)], problem.p0, problem.risk,
                   problem.distances)
    m.capex = pyo.Expression(expr=capex)
    m.obj = pyo.Objective(expr=m.capex + m.risk.value)
    build_s = time.perf_counter() - t0
    solver = highs(time_limit_s, mip_gap)
    progress("solving the extensive form", 0, 1, f"time limit {time_limit_s:g} s")
    res = solver.solve(m)
    raise_if_interrupted(solver)
    progress("solving the extensive form", 1, 1)
    status = _status(res.termination_condition)
    if status == "infeasible":
        raise RecourseInfeasible("extensive form is infeasible")
    if res.best_feasible_objective is None:
        raise SolveFailed(f"extensive form: no solution ({status})")
    res.solution_loader.load_vars()
    bound = float(res.best_objective_bound)
    log.info("extensive form: %d scenarios, built in %.2f s, %s, obj %.6g bound %.6g",
             n, build_s, status, res.best_feasible_objective, bound)
    link_val = {k: float(pyo.value(v)) for k, v in link.items()}
    first_vals = _first_stage_values(m.first)

    # Re-evaluate each recourse at the chosen first stage (see docstring), one scenario at
    # a time with the Benders subproblem machinery (warm-started, parameters only).
    bounds = {k: v.bounds for k, v in link.items()}
    try:
        subs = _Subproblems(problem, list(link), bounds, relax=relax_recourse)
        q_vals, _ = subs.solve(link_val, duals=False,
                               progress=lambda s: progress("re-solving each scenario", s, n))
    except (SolveFailed, RecourseInfeasible) as exc:  # keep the joint solution's values
        log.warning("extensive form re-evaluation failed (%s); reporting the joint "
                    "solution's recourse values", exc)
        q_vals = np.array([float(pyo.value(m.Q[s])) for s in range(n)])
    risk = WorstCase(problem.p0, problem.risk, problem.distances).evaluate(w * q_vals)
    capex_val = float(pyo.value(m.capex))
    objective = capex_val + risk.value
    gap = max(objective - bound, 0.0) / max(abs(objective), 1e-9)
    return TwoStageSolution(
        method="extensive", status=status, link=link_val, first_stage_values=first_vals,
        objective=objective, bound=bound, gap=gap, first_stage_cost=capex_val,
        recourse_costs=q_vals, risk=risk, solve_s=time.perf_counter() - t0,
        recourse_relaxed=relax_recourse,
    )


class _IncrementalSolver:
    """A persistent HiGHS (appsi) for one LP whose mutable parameters change between solves.

    appsi's own update re-evaluates every coefficient and bound that contains a mutable
    parameter on every solve (for the LinDistFlow recourse, thousands of loss coefficients
    that never change). Here the first solve loads the model as usual; afterwards the
    automatic update is switched off and only the coefficients/bounds of constraints that
    contain a parameter whose value changed are pushed to HiGHS (appsi's per-constraint
    update helpers). A changed parameter in the objective falls back to appsi's full update
    for that solve; one in neither a constraint nor the objective is not the solver's
    business (variable bounds must not hold mutable parameters). The LP keeps its basis
    between solves, so HiGHS warm-starts.
    """

    _FLAGS = ("check_for_new_or_removed_constraints", "check_for_new_or_removed_vars",
              "check_for_new_or_removed_params", "check_for_new_objective",
              "update_constraints", "update_vars", "update_params",
              "update_named_expressions", "update_objective")

    def __init__(self, model: pyo.Block):
        self.model = model
        self.solver = highs()
        self.params = [p for p in model.component_data_objects(pyo.Param, descend_into=True)
                       if p.parent_component().mutable]
        self.last: dict[int, float] | None = None
        self.by_param: dict[int, list[Any]] | None = None
        self.in_objective: set[int] = set()

    def _snapshot(self) -> dict[int, float]:
        return {id(p): p.value for p in self.params}

    def _index(self) -> None:
        from pyomo.core.expr.visitor import identify_mutable_parameters

        helpers = getattr(self.solver, "_mutable_helpers", None)
        if helpers is None:  # another Pyomo version: keep appsi's full update
            self.by_param = None
            return
        by_param: dict[int, list[Any]] = {}
        for items in helpers.values():
            for helper in items:
                exprs = [getattr(helper, a) for a in ("expr", "lower_expr", "upper_expr")
                         if hasattr(helper, a)]
                found = {id(p) for e in exprs for p in identify_mutable_parameters(e)}
                for pid in found:
                    by_param.setdefault(pid, []).append(helper)
        self.by_param = by_param
        # a parameter in no constraint still matters in the objective; one in neither (a
        # base value the compact network keeps for its own bookkeeping) does not reach HiGHS
        self.in_objective = {id(p) for obj in self.model.component_data_objects(
            pyo.Objective, active=True, descend_into=True) for p in identify_mutable_parameters(obj.expr)}
        for flag in self._FLAGS:
            setattr(self.solver.update_config, flag, False)

    def solve(self) -> Any:
        now = self._snapshot()
        if self.last is not None and self.by_param is not None:
            changed = [k for k, v in now.items() if self.last[k] != v
                       and (k in self.by_param or k in self.in_objective)]
            if all(k in self.by_param for k in changed):
                todo = {id(h): h for k in changed for h in self.by_param[k]}
                for helper in todo.values():
                    helper.update()
            else:
                self.solver.update()  # full update (flags off: do it explicitly)
                self.solver.update_params()
        res = self.solver.solve(self.model)
        raise_if_interrupted(self.solver)
        if self.last is None:
            self._index()
        self.last = now
        return res


class _Subproblems:
    """The N recourse LPs with their linking copies ``n_copy = n̂`` (persistent HiGHS).

    A recourse that has ``reusable = True`` and ``set_scenario(blk, s)`` is built once and
    re-parameterised per scenario; otherwise one model per scenario is kept alive.
    """

    def __init__(self, problem: TwoStageProblem, keys: list[Hashable],
                 bounds: dict[Hashable, tuple[float, float]], relax: bool = True):
        self.problem = problem
        self.keys = keys
        self.relax = relax
        rec = problem.recourse
        self.reusable = bool(getattr(rec, "reusable", False)) and hasattr(rec, "set_scenario")
        count = 1 if self.reusable else problem.n_scenarios
        self.models = [self._build(s, bounds) for s in range(count)]
        self.solvers = [_IncrementalSolver(m) for m in self.models]

    def _build(self, s: int, bounds: dict[Hashable, tuple[float, float]]) -> pyo.ConcreteModel:
        m = pyo.ConcreteModel()
        m.K = pyo.Set(initialize=range(len(self.keys)))
        m.nhat = pyo.Param(m.K, initialize=0.0, mutable=True)
        m.n = pyo.Var(m.K, bounds=lambda _, k: bounds[self.keys[k]])
        m.fix_link = pyo.Constraint(m.K, rule=lambda _, k: m.n[k] == m.nhat[k])
        m.rec = pyo.Block()
        link = {key: m.n[k] for k, key in enumerate(self.keys)}
        m.Q = pyo.Expression(expr=self.problem.recourse.build(m.rec, link, s))
        if self.relax:
            relax_integers(m.rec)
        m.obj = pyo.Objective(expr=m.Q)
        return m

    def close(self) -> None:
        """Nothing to release (the Dask subproblems release their workers' models)."""

    def solve(self, nhat: dict[Hashable, float], duals: bool = True,
              progress: Callable[[int], None] = lambda done: None) -> tuple[np.ndarray, np.ndarray]:
        """Q_s(n̂) and (LP only, ``duals``) the subgradients π_s (rows) for every scenario;
        ``progress(s)`` after each of them (``s`` solved so far)."""
        n = self.problem.n_scenarios
        q = np.zeros(n)
        grad = np.zeros((n, len(self.keys)))
        for s in range(n):
            idx = 0 if self.reusable else s
            m, inc = self.models[idx], self.solvers[idx]
            if self.reusable:
                self.problem.recourse.set_scenario(m.rec, s)
            for k, key in enumerate(self.keys):
                m.nhat[k] = float(nhat[key])
            res = inc.solve()
            tc = res.termination_condition
            if tc in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
                raise RecourseInfeasible(f"recourse of scenario {s} is infeasible at n = {nhat}")
            if tc != TerminationCondition.optimal:
                raise SolveFailed(f"recourse LP of scenario {s} ended with {tc.name}")
            q[s] = float(res.best_feasible_objective)
            if duals and self.relax:
                pi = inc.solver.get_duals([m.fix_link[k] for k in m.K])
                grad[s] = [float(pi[m.fix_link[k]]) for k in m.K]
            progress(s + 1)
        return q, grad


class _ScenarioSubset:
    """Scenarios ``idx`` of a recourse, numbered ``0..len(idx)−1`` (a chunk on a worker)."""

    def __init__(self, recourse: Recourse, idx: list[int]) -> None:
        self.recourse, self.idx = recourse, list(idx)
        self.n_scenarios = len(self.idx)
        self.reusable = bool(getattr(recourse, "reusable", False)) and hasattr(recourse,
                                                                                "set_scenario")

    def build(self, blk: pyo.Block, link: Mapping[Hashable, Any], s: int) -> Any:
        return self.recourse.build(blk, link, self.idx[s])

    def set_scenario(self, blk: pyo.Block, s: int) -> None:
        self.recourse.set_scenario(blk, self.idx[s])  # type: ignore[attr-defined]


#: The chunks of :class:`DaskSubproblems` living in this (worker) process, by token.
_CHUNKS: dict[str, _Subproblems] = {}


def _solve_chunk(token: str, problem: TwoStageProblem, keys: list[Hashable],
                 bounds: dict[Hashable, tuple[float, float]], idx: list[int],
                 nhat: dict[Hashable, float]) -> tuple[np.ndarray, np.ndarray]:
    """Run in a Dask worker: ``(Q_s, π_s)`` of scenarios ``idx`` at ``n̂``. The chunk's models
    and HiGHS instances are built at its first call and kept in this process (``_CHUNKS``),
    so later iterations only push n̂ and warm-start."""
    subs = _CHUNKS.get(token)
    if subs is None:
        m = len(idx)
        part = replace(problem, recourse=_ScenarioSubset(problem.recourse, idx),
                       p0=np.full(m, 1.0 / m), distances=None)
        subs = _CHUNKS[token] = _Subproblems(part, keys, bounds)
    return subs.solve(nhat)


def _drop_chunks(prefix: str) -> int:
    """Run on every worker when a Benders solve ends: forget its chunks."""
    gone = [t for t in _CHUNKS if t.startswith(prefix)]
    for t in gone:
        del _CHUNKS[t]
    return len(gone)


class DaskSubproblems:
    """The N recourse LPs split into one contiguous chunk per Dask worker. Each chunk is
    built once on its worker and kept there (:func:`_solve_chunk`); every iteration is one
    task per chunk, pinned to that worker, that pushes n̂ and re-solves from the previous
    basis. The problem is sent to each worker once (``scatter``). Same interface and
    results as :class:`_Subproblems` (the chunks solve the same LPs)."""

    def __init__(self, problem: TwoStageProblem, keys: list[Hashable],
                 bounds: dict[Hashable, tuple[float, float]], client: Any) -> None:
        import uuid

        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise SolveFailed("benders on Dask: the cluster has no worker")
        n = problem.n_scenarios
        parts = np.array_split(np.arange(n), max(1, min(n, len(workers))))
        self.parts = [p for p in parts if p.size]
        self.workers = workers[:len(self.parts)]  # one chunk per worker
        self.client, self.keys, self.bounds = client, keys, bounds
        self.n, self.k = n, len(keys)
        self.prefix = f"benders-{uuid.uuid4().hex[:8]}"
        self.problem = client.scatter(problem, broadcast=True, hash=False)

    def solve(self, nhat: dict[Hashable, float], duals: bool = True,
              progress: Callable[[int], None] = lambda done: None) -> tuple[np.ndarray, np.ndarray]:
        pending = [self.client.submit(_solve_chunk, f"{self.prefix}-{i}", self.problem, self.keys,
                                      self.bounds, part.tolist(), dict(nhat), workers=[w],
                                      allow_other_workers=False, pure=False)
                   for i, (part, w) in enumerate(zip(self.parts, self.workers))]
        q, grad = np.zeros(self.n), np.zeros((self.n, self.k))
        done = 0
        for part, fut in zip(self.parts, pending):
            q[part], grad[part] = fut.result()
            done += part.size
            progress(done)
        return q, grad

    def close(self) -> None:
        """Forget the chunks on the workers."""
        try:
            self.client.run(_drop_chunks, self.prefix)
        except Exception:  # a worker gone: its chunks went with it
            log.debug("benders on Dask: dropping chunks failed", exc_info=True)


def solve_benders(
    problem: TwoStageProblem,
    *,
    time_limit_s: float = 300.0,
    mip_gap: float = 1e-4,
    max_iterations: int = 200,
    progress: Progress = no_progress,
    client: Any = None,
) -> TwoStageSolution:
    """Multi-cut L-shaped method on the LP relaxation of the recourse (module docstring).

    Lower bound: the master MILP's best bound. Upper bound: ``c(n̂) + R(w·Q(n̂))`` with
    Q(n̂) the recourse LP values at the master's solution. Stops when
    ``(UB − LB)/|UB| ≤ mip_gap``; the master itself is solved to ``mip_gap/4``.

    ``client``: a ``dask.distributed`` Client; the subproblems then run on its workers, one
    chunk of scenarios per worker (:class:`DaskSubproblems`), the master in this process.
    """
    t0 = time.perf_counter()
    n = problem.n_scenarios
    w = float(problem.recourse_weight)
    master = pyo.ConcreteModel()
    master.first = pyo.Block()
    capex, link = problem.first_stage(master.first)
    keys = list(link)
    bounds = {}
    for key, var in link.items():
        lb, ub = var.bounds
        if lb is None or ub is None:
            raise ValueError(f"linking variable {key!r} needs finite bounds for Benders")
        bounds[key] = (lb, ub)
    master.S = pyo.Set(initialize=range(n))
    master.t = pyo.Var(master.S, bounds=(problem.recourse_lower_bound, None))
    master.risk = pyo.Block()
    add_risk_block(master.risk, [w * master.t[s] for s in range(n)], problem.p0,
                   problem.risk, problem.distances)
    master.capex = pyo.Expression(expr=capex)
    master.obj = pyo.Objective(expr=master.capex + master.risk.value)
    master.cuts = pyo.ConstraintList()
    subs = (_Subproblems(problem, keys, bounds) if client is None
            else DaskSubproblems(problem, keys, bounds, client))
    evaluator = WorstCase(problem.p0, problem.risk, problem.distances)
    msolver = highs(None, mip_gap / 4)
    log.info("benders: %d scenarios, %d linking variables, setup %.2f s",
             n, len(keys), time.perf_counter() - t0)

    best: dict[str, Any] | None = None
    lb, ub = -np.inf, np.inf
    status = "iteration_limit"
    history: list[tuple[float, float, float]] = []
    master_s = subproblems_s = 0.0
    it = 0
    # Start from the master without cuts (t_s at their lower bound).
    try:
        for it in range(1, max_iterations + 1):
            remaining = time_limit_s - (time.perf_counter() - t0)
            if remaining <= 0:
                status = "time_limit"
                break
            msolver.config.time_limit = max(remaining, 0.1)
            t_m = time.perf_counter()
            res = msolver.solve(master)
            master_s += time.perf_counter() - t_m
            raise_if_interrupted(msolver)
            if res.best_feasible_objective is None:
                if res.termination_condition == TerminationCondition.maxTimeLimit:
                    status = "time_limit"
                    break
                raise SolveFailed(f"benders master ended with {res.termination_condition.name}")
            res.solution_loader.load_vars()
            lb = max(lb, float(res.best_objective_bound))
            nhat = {k: float(pyo.value(v)) for k, v in link.items()}
            capex_val = float(pyo.value(master.capex))
            note = "" if not np.isfinite(ub) else f"gap {max(ub - lb, 0.0) / max(abs(ub), 1e-9):.2%}"
            t_s = time.perf_counter()
            q, grad = subs.solve(nhat, progress=lambda s: progress(f"Benders iteration {it}", s, n,
                                                                    note))
            subproblems_s += time.perf_counter() - t_s
            risk = evaluator.evaluate(w * q)
            value = capex_val + risk.value
            if value < ub:
                ub = value
                best = dict(link=nhat, first=_first_stage_values(master.first), capex=capex_val,
                            q=q, risk=risk)
            gap = max(ub - lb, 0.0) / max(abs(ub), 1e-9)
            history.append((time.perf_counter() - t0, lb, ub))
            log.info("benders it %d: LB %.6g UB %.6g gap %.2e", it, lb, ub, gap)
            if gap <= mip_gap:
                status = "optimal"
                break
            for s in range(n):
                master.cuts.add(
                    master.t[s] >= float(q[s]) + sum(
                        float(grad[s, k]) * (link[key] - nhat[key])
                        for k, key in enumerate(keys) if abs(grad[s, k]) > 1e-12
                    )
                )
    finally:
        subs.close()
    if best is None:
        raise SolveFailed(f"benders: no first-stage solution before {status}")
    gap = max(ub - lb, 0.0) / max(abs(ub), 1e-9)
    return TwoStageSolution(
        method="benders", status=status, link=best["link"], first_stage_values=best["first"],
        objective=ub, bound=lb, gap=gap, first_stage_cost=best["capex"],
        recourse_costs=best["q"], risk=best["risk"], solve_s=time.perf_counter() - t0,
        recourse_relaxed=True, iterations=it, history=history, master_s=master_s,
        subproblems_s=subproblems_s,
    )


def evaluate_recourse(
    problem: TwoStageProblem,
    link: Mapping[Hashable, float],
    *,
    time_limit_s: float | None = None,
    mip_gap: float = 1e-4,
    progress: Progress = no_progress,
) -> tuple[np.ndarray, RiskEvaluation, str]:
    """Every scenario's recourse at fixed first-stage values ``link`` (module counts), with
    its integers kept: ``Q_s(n̂)`` by one MILP per scenario (a reusable recourse is built once
    and moved between scenarios), and R at ``w·Q(n̂)``. Returns ``(Q, R, status)`` with
    status ``optimal``, or ``feasible`` when a scenario stopped at its time limit with an
    incumbent (its Q_s is then an upper bound). Raises :class:`RecourseInfeasible` or
    :class:`SolveFailed`."""
    rec = problem.recourse
    reusable = bool(getattr(rec, "reusable", False)) and hasattr(rec, "set_scenario")
    fixed = {k: float(v) for k, v in link.items()}
    q = np.empty(problem.n_scenarios)
    status = "optimal"
    m = solver = None
    for s in range(problem.n_scenarios):
        if m is None or not reusable:
            m = pyo.ConcreteModel()
            m.rec = pyo.Block()
            m.obj = pyo.Objective(expr=rec.build(m.rec, fixed, s))
            solver = make_solver("appsi_highs", time_limit_s, mip_gap)
        else:
            rec.set_scenario(m.rec, s)
        out = solve(m, solver)
        if out.status is SolveStatus.INFEASIBLE:
            raise RecourseInfeasible(f"recourse of scenario {s} is infeasible at n = {fixed}")
        if not out.ok:
            raise SolveFailed(f"recourse MILP of scenario {s} ended with {out.status.value} "
                              f"{out.message}")
        if out.status is SolveStatus.FEASIBLE:
            status = "feasible"
        q[s] = out.objective
        progress("integer recourse of each scenario", s + 1, problem.n_scenarios)
    risk = WorstCase(problem.p0, problem.risk, problem.distances).evaluate(problem.recourse_weight * q)
    return q, risk, status


def solve_two_stage(
    problem: TwoStageProblem,
    method: str = "auto",
    *,
    time_limit_s: float = 300.0,
    mip_gap: float = 1e-4,
    recourse: str = "lp",
    progress: Progress = no_progress,
) -> TwoStageSolution:
    """Solve with the given method, or the one :func:`choose_method` picks for ``auto``.

    ``recourse="lp"`` (default) values every scenario by the LP relaxation of its
    recourse in both methods, so they solve the same problem; ``"milp"`` keeps the
    recourse integers (extensive form only)."""
    chosen = choose_method(problem, method, recourse)
    if chosen == "extensive":
        return solve_extensive(problem, time_limit_s=time_limit_s, mip_gap=mip_gap,
                               relax_recourse=recourse == "lp", progress=progress)
    return solve_benders(problem, time_limit_s=time_limit_s, mip_gap=mip_gap, progress=progress)
