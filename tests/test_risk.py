"""Risk/ambiguity layer of Stage I (controllers/risk.py) and its laws at the Stage-I optimum.

References:
* CVaR of a discrete law (Rockafellar & Uryasev 2000): mean of the worst (1−α) tail.
* Dualised ambiguity sets against the primal LP over (p, q): strong LP duality.
* Laws of DESIGN.md §3: θ = 0 is SAA; the value is non-decreasing in θ, α, β; a large θ
  gives the worst case (l1: p*_worst = p⁰_worst + θ/2, Jiang & Guan 2018).
The Stage-I instances use a hand-solvable recourse written here in plain Pyomo:
Q_s(n) = c·Σ_t (d_st − n)⁺ (one-bus shortfall covered by n one-MW modules).
"""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.decomposition import TwoStageProblem, solve_extensive
from controllers.solve import highs
from controllers.risk import (
    RiskSpec,
    cvar,
    dual_risk_value,
    ground_distances,
    nominal_probabilities,
    worst_case,
)


class Shortfall:
    """Recourse Q_s(n) = c Σ_t e_t, e_t ≥ d_st − n, e ≥ 0 (n modules of 1 MW, Δt = 1 h)."""

    def __init__(self, demand: np.ndarray, cost: float = 150.0):
        self.d = np.atleast_2d(np.asarray(demand, dtype=float))
        self.n_scenarios = self.d.shape[0]
        self.cost = cost

    def build(self, blk, link, s):
        T = range(self.d.shape[1])
        blk.e = pyo.Var(T, domain=pyo.NonNegativeReals)
        blk.cover = pyo.Constraint(T, rule=lambda b, t: b.e[t] >= self.d[s, t] - link["n"])
        return self.cost * sum(blk.e[t] for t in T)


def first_stage(capex: float = 100.0, max_modules: int = 5, budget: float = 1e9):
    def build(blk):
        blk.n = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, max_modules))
        blk.budget = pyo.Constraint(expr=capex * blk.n <= budget)
        return capex * blk.n, {"n": blk.n}

    return build


def stage1_value(demand, spec: RiskSpec, distances=None, **kw) -> tuple[float, object]:
    rec = Shortfall(demand)
    n = rec.n_scenarios
    problem = TwoStageProblem(first_stage(**kw), rec, nominal_probabilities(n), spec, distances)
    sol = solve_extensive(problem, mip_gap=1e-9)
    return sol.objective, sol


def robust_value(demand, capex: float = 100.0, max_modules: int = 5, cost: float = 150.0) -> float:
    """min_n capex·n + max_s Q_s(n), written independently as an epigraph MILP."""
    d = np.atleast_2d(np.asarray(demand, dtype=float))
    m = pyo.ConcreteModel()
    m.n = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, max_modules))
    m.z = pyo.Var()
    S, T = range(d.shape[0]), range(d.shape[1])
    m.e = pyo.Var(S, T, domain=pyo.NonNegativeReals)
    m.c1 = pyo.Constraint(S, T, rule=lambda m, s, t: m.e[s, t] >= d[s, t] - m.n)
    m.c2 = pyo.Constraint(S, rule=lambda m, s: m.z >= cost * sum(m.e[s, t] for t in T))
    m.obj = pyo.Objective(expr=capex * m.n + m.z)
    # the project's HiGHS set-up: HiGHS fixes its thread count at a process's first solve,
    # and another count makes every later solve in the process return no result
    highs(load_solution=True).solve(m)
    return float(pyo.value(m.obj))


# --- CVaR and the distance matrix, by hand -------------------------------------------------

def test_cvar_by_hand():
    q, p = [1.0, 2.0, 3.0, 4.0], [0.25] * 4
    assert cvar(q, p, 0.0) == pytest.approx(2.5)      # α = 0: the mean
    assert cvar(q, p, 0.5) == pytest.approx(3.5)      # mean of the worst half
    assert cvar(q, p, 0.75) == pytest.approx(4.0)     # worst quarter
    assert cvar(q, p, 0.6) == pytest.approx((4 * 0.25 + 3 * 0.15) / 0.4)  # split atom


def test_ground_distances_by_hand():
    xi = np.array([[[0.0, 1.0]], [[1.0, 1.0]], [[0.0, 1.0]]])
    d1 = ground_distances(xi, "l1", scale_mw=1.0)
    assert d1[0, 1] == pytest.approx(0.5) and d1[1, 0] == pytest.approx(0.5)
    assert d1[0, 2] == 0.0 and np.allclose(np.diag(d1), 0)
    d2 = ground_distances(xi, "l2", scale_mw=2.0)
    assert d2[0, 1] == pytest.approx(np.sqrt(0.5) / 2)


# --- dualised minimisation = primal worst-case LP -----------------------------------------

@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    amb=st.sampled_from(["none", "l1", "wasserstein"]),
    theta=st.floats(0.0, 1.5),
    alpha=st.floats(0.0, 0.95),
    beta=st.floats(0.0, 1.0),
)
def test_dual_equals_primal(seed, amb, theta, alpha, beta):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    q = rng.uniform(0.0, 100.0, n)
    d = ground_distances(rng.uniform(0, 1, (n, 1, 4)), scale_mw=1.0)
    spec = RiskSpec(amb, theta, alpha, beta)
    primal = worst_case(q, nominal_probabilities(n), spec, d)
    dual = dual_risk_value(q, nominal_probabilities(n), spec, d)
    assert dual == pytest.approx(primal.value, rel=1e-7, abs=1e-7)
    # p* is a law, and the value is reproduced by (1−β)E_p* + β CVaR_p* (a saddle point).
    assert primal.probabilities.sum() == pytest.approx(1.0)
    assert (1 - beta) * primal.expected + beta * primal.cvar == pytest.approx(primal.value, rel=1e-6)
    assert q.max() + 1e-9 >= primal.value >= (1 - beta) * q.mean() + beta * cvar(
        q, nominal_probabilities(n), alpha) - 1e-7


# --- laws at the Stage-I optimum -----------------------------------------------------------

DEMAND = np.array([[1.0, 2.0], [3.0, 2.5], [4.0, 1.0], [0.5, 0.0]])


@pytest.mark.parametrize("amb", ["l1", "wasserstein"])
def test_theta_zero_is_saa(amb):
    d = ground_distances(DEMAND[:, None, :], scale_mw=4.0)
    saa, _ = stage1_value(DEMAND, RiskSpec("none", 0.0, 0.8, 0.6))
    dro, sol = stage1_value(DEMAND, RiskSpec(amb, 0.0, 0.8, 0.6), d)
    assert dro == pytest.approx(saa, rel=1e-6, abs=1e-6)
    assert np.allclose(sol.risk.probabilities, 0.25)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    amb=st.sampled_from(["l1", "wasserstein"]),
    t1=st.floats(0.0, 1.0), t2=st.floats(0.0, 1.0),
    a1=st.floats(0.0, 0.9), a2=st.floats(0.0, 0.9),
    b1=st.floats(0.0, 1.0), b2=st.floats(0.0, 1.0),
)
def test_value_non_decreasing_in_theta_alpha_beta(seed, amb, t1, t2, a1, a2, b1, b2):
    rng = np.random.default_rng(seed)
    demand = rng.uniform(0.0, 4.0, (3, 2))
    d = ground_distances(demand[:, None, :], scale_mw=4.0)
    (t1, t2), (a1, a2), (b1, b2) = sorted((t1, t2)), sorted((a1, a2)), sorted((b1, b2))
    v = lambda th, a, b: stage1_value(demand, RiskSpec(amb, th, a, b), d)[0]  # noqa: E731
    tol = 1e-6
    assert v(t1, a1, b1) <= v(t2, a1, b1) + tol   # θ
    assert v(t1, a1, b1) <= v(t1, a2, b1) + tol   # α
    assert v(t1, a1, b1) <= v(t1, a1, b2) + tol   # β


def test_l1_moves_theta_half_to_the_worst_scenario():
    # With at most 2 modules, Q = 150·(0, 1.5, 2, 0): scenario 2 (4 MW then 1 MW) is the worst.
    spec = RiskSpec("l1", 0.5, 0.5, 0.5)
    _, sol = stage1_value(DEMAND, spec, max_modules=2)
    worst = int(np.argmax(sol.recourse_costs))
    assert worst == 2
    assert sol.risk.probabilities[worst] == pytest.approx(0.25 + 0.5 / 2, abs=1e-7)
    # θ ≥ 2(1 − p⁰_worst): all weight on the worst scenario, the robust optimum.
    big, sol_big = stage1_value(DEMAND, RiskSpec("l1", 1.6, 0.5, 0.5), max_modules=2)
    worst = int(np.argmax(sol_big.recourse_costs))
    assert sol_big.risk.probabilities[worst] == pytest.approx(1.0, abs=1e-7)
    assert big == pytest.approx(robust_value(DEMAND, max_modules=2), rel=1e-7)


def test_wasserstein_large_radius_is_the_worst_case():
    d = ground_distances(DEMAND[:, None, :], scale_mw=4.0)
    spec = RiskSpec("wasserstein", float(d.max()) + 0.01, 0.3, 0.2)
    big, sol = stage1_value(DEMAND, spec, d, max_modules=2)
    assert big == pytest.approx(robust_value(DEMAND, max_modules=2), rel=1e-7)
    assert sol.risk.probabilities[np.argmax(sol.recourse_costs)] == pytest.approx(1.0, abs=1e-7)
    # a radius below every transport cost to the worst scenario leaves room below it
    small, _ = stage1_value(DEMAND, RiskSpec("wasserstein", 0.05, 0.3, 0.2), d, max_modules=2)
    assert small < big


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError):
        RiskSpec("box", 0.1)
    with pytest.raises(ValueError):
        RiskSpec("l1", -0.1)
    with pytest.raises(ValueError):
        RiskSpec("l1", 0.1, alpha=1.0)
