"""FCM device physics (models/fcm/), checked independently of the implementation:
state of charge rebuilt from the delivered power, limits, commitment rules, DR budgets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.fcm import make_device
from models.fcm.dr import DemandResponse
from models.fcm.generator import Generator
from models.fcm.storage import Storage
from models.fcm_catalog import DRType, GeneratorType, Placement, StorageType


setpoints = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=60, deadline=None)
@given(p_set=setpoints, dt_s=st.sampled_from([1.0, 60.0, 300.0]),
       ramp=st.sampled_from([None, 0.002, 0.05]))
def test_storage_soc_rebuilt_from_delivered_power(p_set, dt_s, ramp):
    tech = StorageType(eta_charge=0.9, eta_discharge=0.8, soc_min=0.1, soc_max=0.9,
                       soc_init=0.5, ramp_mw_per_s=ramp)
    dev = Storage(Placement(kind="bess", bus="18", p_mw=1.0, e_mwh=2.0), tech)
    e = 0.5 * 2.0
    p_prev = 0.0
    for ps in p_set:
        out = dev.step(ps, dt_s)
        # energy balance written from the definition, not from the device code
        e += (0.9 * max(-out.p_mw, 0.0) - max(out.p_mw, 0.0) / 0.8) * dt_s / 3600.0
        assert out.soc_mwh == pytest.approx(e, abs=1e-9)
        assert 0.2 - 1e-9 <= out.soc_mwh <= 1.8 + 1e-9
        assert out.soc == pytest.approx(out.soc_mwh / 2.0)
        assert abs(out.p_mw) <= 1.0 + 1e-12
        if ramp is None:  # never more than asked, never the opposite direction
            assert out.p_mw * ps >= -1e-12 and abs(out.p_mw) <= abs(ps) + 1e-12
        else:  # the ramp may be broken only by the energy bound, which forces p towards 0
            assert abs(out.p_mw - p_prev) <= ramp * dt_s + 1e-9 or abs(out.p_mw) < abs(p_prev)
        assert out.cost == pytest.approx(tech.cost_per_mwh * abs(out.p_mw) * dt_s / 3600)
        p_prev = out.p_mw


def test_storage_hand_solved_discharge_to_empty():
    # 1 MW / 1 MWh, soc 0.5 -> 0.1 with η_d = 0.8: 0.4 MWh stored = 0.32 MWh deliverable.
    tech = StorageType(eta_charge=1.0, eta_discharge=0.8, soc_min=0.1, soc_max=0.9, soc_init=0.5)
    dev = Storage(Placement(kind="bess", bus="2", p_mw=1.0, e_mwh=1.0), tech)
    delivered = sum(dev.step(1.0, 60.0).p_mw * 60 / 3600 for _ in range(60))
    assert delivered == pytest.approx(0.32, abs=1e-9)
    assert dev.step(1.0, 60.0).p_mw == 0.0
    # charging 1 MW for 6 min at η_c = 1 adds exactly 0.1 MWh
    for _ in range(6):
        dev.step(-1.0, 60.0)
    assert dev.e_mwh == pytest.approx(0.2)


def test_storage_reactive_power_within_inverter_rating():
    dev = Storage(Placement(kind="bess", bus="2", p_mw=1.0, e_mwh=4.0), StorageType())
    out = dev.step(0.6, 60.0, q_set_mvar=5.0)
    assert out.q_mvar == pytest.approx(0.8)


@settings(max_examples=60, deadline=None)
@given(p_set=setpoints)
def test_generator_limits_and_min_up_down(p_set):
    tech = GeneratorType(p_mw_per_module=1.0, p_min_frac=0.3, ramp_mw_per_min=0.25,
                         min_up_s=300, min_down_s=180, startup_cost=50.0, cost_per_mwh=100.0)
    dev = Generator(Placement(kind="gen", bus="33", p_mw=1.0), tech)  # one module: R = 0.25/min
    dt = 60.0
    states, powers, costs = [], [], []
    for ps in p_set:
        out = dev.step(ps, dt)
        states.append(out.committed)
        powers.append(out.p_mw)
        costs.append(out.cost)
    # output bounds given the commitment
    for u, p in zip(states, powers):
        assert (0.3 - 1e-12 <= p <= 1.0 + 1e-12) if u else p == 0.0
    # ramps between consecutive committed steps (a start may jump to P_min)
    for k in range(1, len(powers)):
        if states[k] and states[k - 1]:
            assert abs(powers[k] - powers[k - 1]) <= 0.25 + 1e-9
        if states[k] and not states[k - 1]:
            assert powers[k] <= max(0.3, 0.25) + 1e-12
    # run lengths: every completed on-run ≥ 5 steps, every off-run between runs ≥ 3 steps
    runs, cur, n = [], states[0], 0
    for u in states:
        if u == cur:
            n += 1
        else:
            runs.append((cur, n))
            cur, n = u, 1
    for i, (u, n) in enumerate(runs):
        if u:
            assert n >= 5
        elif i > 0:
            assert n >= 3
    starts = sum(1 for k, u in enumerate(states) if u and (k == 0 or not states[k - 1]))
    energy = sum(powers) * dt / 3600
    assert sum(costs) == pytest.approx(100.0 * energy + 50.0 * starts)


def test_demand_response_budget_and_payback():
    tech = DRType(payback_frac=1.0, payback_window_s=1800.0, cost_per_mwh=200.0)
    dev = DemandResponse(Placement(kind="dr", bus="18", p_mw=0.2, e_mwh=0.05), tech)
    dt = 60.0
    out = [dev.step(1.0, dt) for _ in range(30)]  # asks for more than cap and budget
    p = np.array([o.p_mw for o in out])
    assert p.max() <= 0.2 + 1e-12
    curtailed = p[p > 0].sum() * dt / 3600
    assert curtailed == pytest.approx(0.05)  # the event budget, exactly
    # once the budget is spent, no more curtailment; payback starts
    rest = [dev.step(0.0, dt) for _ in range(40)]
    p_all = np.concatenate([p, [o.p_mw for o in rest]])
    paid = -p_all[p_all < 0].sum() * dt / 3600
    assert paid == pytest.approx(curtailed)  # φ = 1: all deferred energy returns
    # ... within the window after curtailment ended
    last_curtail = int(np.nonzero(p_all > 0)[0].max())
    last_payback = int(np.nonzero(p_all < 0)[0].max())
    assert (last_payback - last_curtail) * dt <= 1800.0 + dt
    # left alone, it pays back as late as the deadline allows: at D̄ over the last 15 min
    pay = p_all[p_all < 0]
    assert np.allclose(pay, -0.2) and len(pay) == 15
    assert rest[-1].soc_mwh == 0.0  # event over, budget restored
    assert sum(o.cost for o in out) == pytest.approx(200.0 * curtailed)


def test_demand_response_pays_back_when_asked():
    tech = DRType(payback_frac=0.5, payback_window_s=3600.0)
    dev = DemandResponse(Placement(kind="dr", bus="18", p_mw=0.2, e_mwh=0.1), tech)
    for _ in range(10):
        dev.step(0.2, 60.0)  # 1/30 MWh curtailed, debt φ·that = 1/60 MWh
    assert dev.debt_mwh == pytest.approx(0.2 * 10 / 60 * 0.5)
    out = dev.step(-0.05, 60.0)  # the controller asks for early payback
    assert out.p_mw == pytest.approx(-0.05) and out.debt_mwh == pytest.approx(1 / 60 - 0.05 / 60)


def test_make_device_dispatches_on_technology():
    assert isinstance(make_device(Placement(kind="x", bus="2", p_mw=1), GeneratorType()), Generator)
    s = make_device(Placement(kind="x", bus="2", p_mw=0.5), StorageType())
    assert s.e_max_mwh == pytest.approx(1.0)  # 2 modules × 0.5 MWh when e_mwh is omitted
    assert math.isnan(make_device(Placement(kind="x", bus="2", p_mw=1), DRType()).step(0, 60).soc)
