"""Extensive form against Benders (controllers/decomposition.py): the same optimum, within
the gap, wherever both run, for every ambiguity set.

Both methods value the recourse by its LP relaxation here (``relax_recourse=True`` for the
extensive form; Benders always does), so they solve the same problem and must agree. One
instance is a multi-period storage/shortfall recourse in plain Pyomo with three candidates;
the other is the real ieee33 recourse (shared LinDistFlow and FCM blocks) on a short horizon.
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from controllers.decomposition import (
    AUTO_EXTENSIVE_MAX_VARS,
    TwoStageProblem,
    choose_method,
    solve_benders,
    solve_extensive,
)
from controllers.risk import RiskSpec, ground_distances, nominal_probabilities


class StorageShortfall:
    """Candidates k with p_k MW and e_k MWh per module; d_st MW to cover each hour, 150 $/MWh
    unserved, 1 $/MWh throughput. Storage starts half full; binary c/d mode per step."""

    P = {"a": 1.0, "b": 2.0, "c": 0.5}
    E = {"a": 2.0, "b": 1.0, "c": 4.0}

    def __init__(self, d: np.ndarray):
        self.d = d
        self.n_scenarios = d.shape[0]

    def build(self, blk, link, s):
        K, T = list(self.P), range(self.d.shape[1])
        blk.y = pyo.Var(K, T, domain=pyo.NonNegativeReals)
        blk.ch = pyo.Var(K, T, domain=pyo.NonNegativeReals)
        blk.z = pyo.Var(K, T, domain=pyo.Binary)
        blk.soc = pyo.Var(K, range(len(T) + 1), domain=pyo.NonNegativeReals)
        blk.e = pyo.Var(T, domain=pyo.NonNegativeReals)
        blk.cap_d = pyo.Constraint(K, T, rule=lambda b, k, t: b.y[k, t] <= self.P[k] * link[k])
        blk.cap_c = pyo.Constraint(K, T, rule=lambda b, k, t: b.ch[k, t] <= self.P[k] * link[k])
        blk.mode_c = pyo.Constraint(K, T, rule=lambda b, k, t: b.ch[k, t] <= 10 * b.z[k, t])
        blk.mode_d = pyo.Constraint(K, T, rule=lambda b, k, t: b.y[k, t] <= 10 * (1 - b.z[k, t]))
        blk.soc0 = pyo.Constraint(K, rule=lambda b, k: b.soc[k, 0] == 0.5 * self.E[k] * link[k])
        blk.dyn = pyo.Constraint(
            K, T, rule=lambda b, k, t: b.soc[k, t + 1] == b.soc[k, t] - b.y[k, t] + 0.9 * b.ch[k, t])
        blk.emax = pyo.Constraint(
            K, range(len(T) + 1), rule=lambda b, k, t: b.soc[k, t] <= self.E[k] * link[k])
        blk.bal = pyo.Constraint(
            T, rule=lambda b, t: b.e[t] >= self.d[s, t] - sum(b.y[k, t] - b.ch[k, t] for k in K))
        return 150.0 * sum(blk.e[t] for t in T) + sum(blk.y[k, t] for k in K for t in T)


def toy_problem(amb: str, theta: float, n: int = 8, budget: float = 900.0) -> TwoStageProblem:
    rng = np.random.default_rng(7)
    d = np.clip(rng.normal(2.0, 1.5, (n, 6)), -1.0, None)
    capex = {"a": 100.0, "b": 180.0, "c": 60.0}
    mmax = {"a": 6, "b": 4, "c": 5}

    def first(blk):
        K = list(capex)
        blk.x = pyo.Var(K, domain=pyo.Binary)
        blk.n = pyo.Var(K, domain=pyo.NonNegativeIntegers, bounds=lambda b, k: (0, mmax[k]))
        blk.ub = pyo.Constraint(K, rule=lambda b, k: b.n[k] <= mmax[k] * b.x[k])
        blk.lb = pyo.Constraint(K, rule=lambda b, k: b.n[k] >= b.x[k])
        cost = sum(capex[k] * blk.n[k] for k in K)
        blk.budget = pyo.Constraint(expr=cost <= budget)
        return cost, {k: blk.n[k] for k in K}

    return TwoStageProblem(first, StorageShortfall(d), nominal_probabilities(n),
                           RiskSpec(amb, theta, 0.8, 0.5),
                           ground_distances(d[:, None, :], scale_mw=3.0), recourse_weight=2.0)


@pytest.mark.parametrize("amb, theta", [("none", 0.0), ("l1", 0.3), ("wasserstein", 0.2)])
def test_benders_equals_extensive_form(amb, theta):
    problem = toy_problem(amb, theta)
    ext = solve_extensive(problem, mip_gap=1e-8, relax_recourse=True)
    ben = solve_benders(problem, mip_gap=1e-7)
    assert ext.status == "optimal" and ben.status == "optimal"
    assert ben.objective == pytest.approx(ext.objective, rel=1e-6)
    assert ben.bound <= ext.objective * (1 + 1e-6)
    # The reported costs are those of the chosen first stage: re-evaluating R at them
    # (by the worst-case LP) reproduces the objective in both methods.
    for sol in (ext, ben):
        assert sol.first_stage_cost + sol.risk.value == pytest.approx(sol.objective, rel=1e-9)


def test_benders_bounds_bracket_the_optimum_at_every_iteration():
    problem = toy_problem("wasserstein", 0.2)
    opt = solve_extensive(problem, mip_gap=1e-8, relax_recourse=True).objective
    for it in (1, 2, 3):
        sol = solve_benders(problem, mip_gap=1e-9, max_iterations=it)
        assert sol.iterations == it
        assert sol.bound <= opt * (1 + 1e-7) and sol.objective >= opt * (1 - 1e-7)
        assert sol.gap == pytest.approx((sol.objective - sol.bound) / sol.objective)


def test_integer_recourse_costs_at_least_its_relaxation():
    problem = toy_problem("l1", 0.3, n=4)
    lp = solve_extensive(problem, mip_gap=1e-8, relax_recourse=True)
    milp = solve_extensive(problem, mip_gap=1e-8)
    assert milp.recourse_relaxed is False
    assert milp.objective >= lp.objective - 1e-6


def test_auto_method_choice():
    small = toy_problem("none", 0.0, n=2)
    assert choose_method(small, "auto") == "extensive"
    assert choose_method(small, "benders") == "benders"
    assert choose_method(small, "auto", recourse="milp") == "extensive"
    with pytest.raises(ValueError):
        choose_method(small, "benders", recourse="milp")
    n_big = AUTO_EXTENSIVE_MAX_VARS // 50 + 1  # > threshold: each recourse has > 50 variables
    assert choose_method(toy_problem("none", 0.0, n=n_big), "auto") == "benders"


def test_benders_equals_extensive_on_ieee33():
    from models.feeder import DSSFeeder
    from models.shocks import sample_campus_trajectories
    from scenarios.config import DEFAULT_SCENARIO, load_scenario
    from controllers.stage1 import build_problem

    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(siting={
        "scenarios": 3, "horizon_hours": 1.0, "step_s": 900.0, "candidate_buses": ["18", "33"],
        "kinds": ["bess", "dr"], "ambiguity": "wasserstein", "radius": 0.1,
    })
    feeder = DSSFeeder.open(sc.feeder_source(), sc.feeder.scale).data
    xi = sample_campus_trajectories(sc, 3, sc.seed, step_s=900.0, hours=1.0)
    problem, _, _ = build_problem(sc, feeder, xi)
    ext = solve_extensive(problem, mip_gap=1e-7, relax_recourse=True)
    ben = solve_benders(problem, mip_gap=1e-6)
    assert ben.objective == pytest.approx(ext.objective, rel=1e-5)
    assert ben.recourse_costs.max() > 0  # the shocks cost something on this feeder
