"""FCM blocks: hand-solvable optima, MILP vs LP relaxation, SoC rebuilt by the device model.

Each instance is small enough to solve by hand; the expected optimum is written next to the
assertion. Prices are $/MWh, steps of Δt_h hours, injection + = into the grid.
"""

from __future__ import annotations

import pyomo.environ as pyo
import pytest

from controllers.solve import SolveStatus, make_solver, solve
from models.fcm.dr import DRType, add_dr
from models.fcm.generator import GeneratorType, add_generator, carried_min_time
from models.fcm.storage import Storage, add_storage
from models.fcm_catalog import Placement, StorageType


def _revenue_model(price, builder, **kw):
    """max Σ price_t p_t Δt_h − op_cost for one block (as a min of the negative)."""
    dt_h = kw.pop("dt_h", 1.0)
    m = pyo.ConcreteModel()
    m.fcm = pyo.Block()
    builder(m.fcm, range(len(price)), dt_h, **kw)
    m.obj = pyo.Objective(
        expr=m.fcm.op_cost - sum(price[t] * m.fcm.p_mw[t] * dt_h for t in range(len(price)))
    )
    return m


def _solve(m, relax=False):
    if relax:  # APPSI-HiGHS has no relax option: relax a copy with Pyomo's transformation
        m = m.clone()
        pyo.TransformationFactory("core.relax_integer_vars").apply_to(m)
    out = solve(m, make_solver())
    assert out.status is SolveStatus.OPTIMAL, out
    return out.objective


def test_storage_arbitrage_hand_optimum():
    # 1 MW / 1 MWh, η_c = η_d = 0.9, starts empty, SoC in [0, 1]. Prices 1, 1, 5, 5.
    # Filling the store needs 1/0.9 MWh bought at 1 $; it returns 0.9 MWh sold at 5 $.
    spec = StorageType(eta_charge=0.9, eta_discharge=0.9, soc_min=0.0, soc_max=1.0, cost_per_mwh=0.0)
    m = _revenue_model([1, 1, 5, 5], add_storage, spec=spec, p_cap=1.0, e_cap=1.0, e_init=0.0)
    obj = _solve(m)
    assert obj == pytest.approx(-(5 * 0.9 - 1 / 0.9), abs=1e-7)
    assert pyo.value(m.fcm.E[4]) == pytest.approx(0.0, abs=1e-7)
    # With non-negative prices simultaneous charge/discharge never pays: LP relaxation agrees.
    assert _solve(m, relax=True) == pytest.approx(obj, abs=1e-7)


def test_storage_binary_forbids_burning_energy_where_the_relaxation_would():
    # Full store, negative price: being paid to consume. The MILP cannot charge a full store
    # (value 0); the LP relaxation charges and discharges at once and burns the losses.
    spec = StorageType(eta_charge=0.9, eta_discharge=0.9, soc_min=0.0, soc_max=1.0, cost_per_mwh=0.0)
    m = _revenue_model([-10.0], add_storage, spec=spec, p_cap=1.0, e_cap=1.0, e_init=1.0)
    assert _solve(m) == pytest.approx(0.0, abs=1e-9)
    # relaxed: P^d ≤ u, P^c ≤ 1 − u, P^d ≥ 0.81 P^c ⇒ P^c = 1/1.81, net 0.19 P^c consumed
    assert _solve(m, relax=True) == pytest.approx(-10 * 0.19 / 1.81, abs=1e-7)


def test_storage_end_target_shortfall_is_soft():
    spec = StorageType(eta_charge=1.0, eta_discharge=1.0, soc_min=0.0, soc_max=1.0, cost_per_mwh=0.0)
    m = pyo.ConcreteModel()
    m.fcm = pyo.Block()
    add_storage(m.fcm, range(2), 0.5, spec, p_cap=0.4, e_cap=1.0, e_init=0.2, e_target=0.9)
    m.obj = pyo.Objective(expr=m.fcm.target_shortfall_mwh)
    _solve(m)
    # two half-hour steps at 0.4 MW add 0.4 MWh: 0.2 + 0.4 = 0.6, short of 0.9 by 0.3
    assert pyo.value(m.fcm.target_shortfall_mwh) == pytest.approx(0.3, abs=1e-7)


def test_storage_soc_rebuilt_by_the_device_model_matches():
    tech = StorageType(p_mw_per_module=0.5, e_mwh_per_module=1.0, eta_charge=0.92,
                       eta_discharge=0.95, soc_min=0.1, soc_max=0.9, soc_init=0.5)
    spec = tech
    price = [30, 10, 10, 80, 90, 20, 100, 40]
    dt_h = 0.25
    m = pyo.ConcreteModel()
    m.fcm = pyo.Block()
    add_storage(m.fcm, range(len(price)), dt_h, spec, p_cap=1.0, e_cap=2.0, e_init=1.0)
    m.obj = pyo.Objective(expr=-sum(price[t] * m.fcm.p_mw[t] * dt_h for t in range(len(price))))
    _solve(m)
    device = Storage(Placement(kind="bess", bus="1", p_mw=1.0, e_mwh=2.0), tech)
    for t in range(len(price)):
        p = pyo.value(m.fcm.p_mw[t])
        out = device.step(p, dt_h * 3600.0)
        assert out.p_mw == pytest.approx(p, abs=1e-6)  # the plan is physically deliverable
        assert out.soc_mwh == pytest.approx(pyo.value(m.fcm.E[t + 1]), abs=1e-6)


def test_generator_min_up_time_makes_a_one_step_peak_unprofitable():
    # Price 200 $/MWh for one hour only, fuel 120 $/MWh, start-up 50 $, P̄ = 1 MW, Pmin 0.3.
    # Min up 1 h: run one hour at 1 MW, profit 80 − 50 = 30. Min up 3 h: two more hours at
    # Pmin lose 2 × 0.3 × 120 = 72, so 30 − 72 < 0 and the unit stays off (profit 0).
    price = [0, 200, 0, 0, 0]
    for min_up_h, expect in ((1, -30.0), (3, 0.0)):
        spec = GeneratorType(p_mw_per_module=1.0, p_min_frac=0.3, ramp_mw_per_min=1.0,
                             min_up_s=min_up_h * 3600, min_down_s=0, startup_cost=50.0,
                             cost_per_mwh=120.0)
        m = _revenue_model(price, add_generator, spec=spec, p_cap=1.0)
        assert _solve(m) == pytest.approx(expect, abs=1e-7)


def test_generator_ramp_limit_and_carried_min_down_time():
    # Ramp 0.5 %/min of 1 MW = 0.3 MW per hour step once running; a start jumps freely.
    spec = GeneratorType(p_mw_per_module=1.0, p_min_frac=0.0, ramp_mw_per_min=0.005, min_up_s=0,
                         min_down_s=7200, startup_cost=0.0, cost_per_mwh=0.0)
    m = _revenue_model([100, 100, 100], add_generator, spec=spec, p_cap=1.0, u_init=1, p_init=0.2)
    _solve(m)
    assert [pyo.value(m.fcm.pg[t]) for t in range(3)] == pytest.approx([0.5, 0.8, 1.0], abs=1e-7)
    # Stopped 1 h ago with a 2 h minimum down time: off for the first hour step.
    on, off = carried_min_time(False, 3600.0, spec, 3600.0, 3)
    assert (on, off) == ([0, 0, 0], [1, 0, 0])
    m = _revenue_model([100, 100, 100], add_generator, spec=spec, p_cap=1.0, must_on=on, must_off=off)
    _solve(m)
    assert [round(pyo.value(m.fcm.u[t])) for t in range(3)] == [0, 1, 1]


@pytest.mark.parametrize("seed", range(6))
def test_generator_start_stop_indicators_are_integral_without_being_declared_binary(seed):
    # Only the commitment u is binary; y and z follow from it (add_generator's docstring).
    # Reference: the same block with y and z declared binary. Random prices around the fuel
    # cost, random initial state and minimum times, start-up costs and ramps.
    import random

    rng = random.Random(seed)
    price = [rng.uniform(0, 250) for _ in range(8)]
    spec = GeneratorType(p_mw_per_module=1.0, p_min_frac=rng.choice([0.0, 0.3]),
                         ramp_mw_per_min=rng.choice([0.002, 0.01, 1.0]),
                         min_up_s=rng.choice([0, 3600, 7200]), min_down_s=rng.choice([0, 3600, 10800]),
                         startup_cost=rng.choice([0.0, 40.0]), cost_per_mwh=120.0)
    on = rng.random() < 0.5
    kw = dict(spec=spec, p_cap=1.0, u_init=int(on), p_init=0.5 if on else 0.0)
    m = _revenue_model(price, add_generator, **kw)
    assert all(v.is_continuous() for v in m.fcm.y.values())
    obj = _solve(m)
    for t in range(len(price)):
        for x in (m.fcm.y[t], m.fcm.z[t]):
            assert min(abs(pyo.value(x)), abs(1 - pyo.value(x))) < 1e-9
    ref = _revenue_model(price, add_generator, **kw)
    for v in list(ref.fcm.y.values()) + list(ref.fcm.z.values()):
        v.domain = pyo.Binary
    assert _solve(ref) == pytest.approx(obj, abs=1e-7)


def test_dr_energy_cap_and_payback_hand_optimum():
    # D̄ = 1 MW, budget 0.5 MWh, φ = 1, window 2 h. Price 100 $/MWh in hour 1, else 10;
    # curtailing costs 20 $/MWh. Best: curtail 0.5 MWh in hour 1 (100·0.5 − 20·0.5 = 40) and
    # pay the 0.5 MWh back at 10 $ (−5), profit 35.
    spec = DRType(payback_frac=1.0, payback_window_s=7200.0, cost_per_mwh=20.0)
    m = _revenue_model([10, 100, 10, 10], add_dr, spec=spec, p_cap=1.0, e_cap=0.5)
    assert _solve(m) == pytest.approx(-35.0, abs=1e-7)
    assert pyo.value(m.fcm.D[4]) == pytest.approx(0.0, abs=1e-9)
    # Budget already used up this event: nothing to gain (profit 0).
    m = _revenue_model([10, 100, 10, 10], add_dr, spec=spec, p_cap=1.0, e_cap=0.5, e_used_init=0.5)
    assert _solve(m) == pytest.approx(0.0, abs=1e-9)


def test_variable_size_equals_fixed_size_when_the_size_is_fixed():
    spec = StorageType(eta_charge=0.9, eta_discharge=0.9, soc_min=0.0, soc_max=1.0, cost_per_mwh=0.0)
    price = [1, 1, 5, 5]
    fixed = _solve(_revenue_model(price, add_storage, spec=spec, p_cap=1.0, e_cap=1.0, e_init=0.0))
    # Stage-I style: modules n ≤ 4 x, size 0.25 MW / 0.25 MWh per module, capex 0.1 $/module
    m = pyo.ConcreteModel()
    m.x = pyo.Var(domain=pyo.Binary)
    m.n = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, 8))
    m.cap = pyo.Constraint(expr=m.n <= 8 * m.x)
    m.fcm = pyo.Block()
    add_storage(m.fcm, range(4), 1.0, spec, p_cap=0.25 * m.n, e_cap=0.25 * m.n, e_init=0.0, p_max=2.0)
    m.obj = pyo.Objective(expr=0.1 * m.n + m.fcm.op_cost
                          - sum(price[t] * m.fcm.p_mw[t] for t in range(4)))
    best = _solve(m)
    # revenue scales linearly with size (fixed = 1 MW), so the optimum is the largest size
    assert round(pyo.value(m.n)) == 8
    assert best == pytest.approx(2.0 * fixed + 0.8, abs=1e-6)
    m.n.fix(4)
    assert _solve(m) == pytest.approx(fixed + 0.4, abs=1e-6)


def test_variable_size_needs_a_big_m():
    m = pyo.ConcreteModel()
    m.n = pyo.Var(bounds=(0, 4))
    m.fcm = pyo.Block()
    with pytest.raises(ValueError, match="p_max"):
        add_storage(m.fcm, range(2), 1.0, StorageType(), p_cap=m.n, e_cap=m.n, e_init=0.0)
