"""Stage II: hand-solvable horizon MILP, rolling driver (reuse, fallback), SoC re-check, AC check.

Real HiGHS through APPSI; the AC check uses OpenDSS through :mod:`models.feeder`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyomo.environ as pyo
import pytest

from controllers.config import ObjectiveWeights
from controllers.forecast import PersistenceForecaster
from controllers.interface import FCMState, Measurement
from controllers.solve import SolveStatus
from controllers.factory import make_mpc
from controllers.horizon import CampusSite, MPCParams
from controllers.stage2 import RollingMPC, solve_horizon
from models.fcm.generator import Generator
from models.fcm.storage import Storage
from models.fcm_catalog import GeneratorType, Placement, StorageType, default_catalog
from models.network import Branch, Bus, BusLoad, FeederData

LOSSLESS = StorageType(p_mw_per_module=0.5, e_mwh_per_module=1.0, eta_charge=1.0,
                       eta_discharge=1.0, soc_min=0.0, soc_max=1.0, soc_init=0.5, cost_per_mwh=0.0)


def two_bus(load_mw: float = 1.0) -> FeederData:
    """Stiff source bus "1", a short line to bus "2" with the load (negligible impedance)."""
    return FeederData(
        name="two_bus", source_bus="1", base_kv_ll=11.0, s_base_mva=10.0,
        buses=(Bus("1", 11.0), Bus("2", 11.0)),
        branches=(Branch("l12", "1", "2", 1e-4, 1e-4, 1e-5, 1e-5),),
        loads=(BusLoad("2", load_mw, 0.0),),
    )


def _meas(t_s=0.0, sub=1.0, sched=(1.0,), soc=0.5, fcm=None, bus_v_pu=None, **kw) -> Measurement:
    return Measurement(
        time_s=t_s, sub_p_mw=sub, sub_q_mvar=0.0, bus_v_pu=bus_v_pu or {}, campus_p_mw={},
        campus_online={}, fcm=fcm if fcm is not None else {"bess_2": FCMState(soc_mwh=soc)},
        p_sched_mw=np.asarray(sched, dtype=float), **kw,
    )


def _params(**kw) -> MPCParams:
    base = dict(horizon_steps=4, horizon_step_s=3600.0, v_min_pu=0.5, v_max_pu=1.5,
                ramp_limit_mw_per_min=100.0, linearize_at="flat", time_limit_s=20.0, mip_gap=1e-6)
    base.update(kw)
    return MPCParams(**base)


def test_one_bus_one_battery_follows_the_schedule_with_the_hand_optimum():
    # Load 1 MW, schedule 1.5, 1.5, 0.5, 0.5 MW over four 1-h steps; battery 0.5 MW / 1 MWh,
    # lossless, starts at 0.5 MWh with end target 0.5 MWh. Charging C ≤ 0.5 MWh (room),
    # discharging D ≤ 0.5 + C; imbalance 2 − C − D MWh at 1000 $/MWh, shortfall D − C at
    # 200 $/MWh: optimum C = 0.5, D = 1, cost 1000·0.5 + 200·0.5 = 600. The 0.5 MWh left
    # over is an import 0.5 MW off its schedule, beyond the normal band (5 % of 1.5 MW), in
    # one step: abnormal, so the restoration term counts the steps up to it (10 $ each).
    # Leaving it in the first step costs one (charging in the second): 610.
    res = solve_horizon(two_bus(), [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)],
                        {"bess": LOSSLESS}, _params(), _meas(sched=(1.5, 1.5, 0.5, 0.5)))
    assert res.outcome.status is SolveStatus.OPTIMAL
    assert res.outcome.objective == pytest.approx(610.0, abs=1e-6)
    assert res.terms["imbalance_mwh"] == pytest.approx(0.5, abs=1e-7)
    assert res.terms["soc_shortfall_mwh"] == pytest.approx(0.5, abs=1e-7)
    assert res.terms["restoration_steps"] == pytest.approx(1.0, abs=1e-9)
    sched = res.schedule_mw["bess_2"]
    assert sched[:2] == pytest.approx([0.0, -0.5], abs=1e-7)  # charges 0.5 MWh, in step 2
    assert sched[2:] == pytest.approx([0.5, 0.5], abs=1e-7)
    # predicted import = load − injection
    assert res.sub_p_mw == pytest.approx(1.0 - sched, abs=1e-6)


def test_branch_and_compact_network_forms_give_the_same_plan():
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)]
    meas = _meas(sched=(1.5, 1.5, 0.5, 0.5))
    a = solve_horizon(two_bus(), pl, {"bess": LOSSLESS}, _params(network_form="compact"), meas)
    b = solve_horizon(two_bus(), pl, {"bess": LOSSLESS}, _params(network_form="branch"), meas)
    assert a.outcome.objective == pytest.approx(b.outcome.objective, abs=1e-6)
    assert a.predicted_v_pu == pytest.approx(b.predicted_v_pu, abs=1e-9)


def test_rolling_driver_reuses_its_model_and_updates_parameters():
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)]
    mpc = RollingMPC(two_bus(), pl, {"bess": LOSSLESS}, _params(linearize_at="ac"))
    # import 1.5 wanted in the first hour only (the load's 1.0 after): charge now
    d1 = mpc.step(_meas(sched=(1.5, 1.0, 1.0, 1.0), bus_v_pu={"1": 1.0, "2": 1.0}))
    model, n_con = mpc.model.m, mpc.model.n_constraints()
    assert d1.solved and not d1.fallback and d1.status == "optimal"
    assert d1.p_mw["bess_2"] == pytest.approx(-0.5, abs=1e-4)  # (less the loss)
    # import 0.5 wanted in the first hour only (the load's 1.0 after): discharge now; a flat
    # 0.5 schedule would leave the hour of the discharge free (equal optima)
    d2 = mpc.step(_meas(t_s=3600.0, sub=1.5, sched=(0.5, 1.0, 1.0, 1.0), soc=1.0,
                        bus_v_pu={"1": 1.0, "2": 1.0}))
    assert mpc.model.m is model and mpc.model.n_constraints() == n_con and mpc.builds == 1
    assert d2.p_mw["bess_2"] == pytest.approx(0.5, abs=1e-4)
    assert d2.predicted_sub_p_mw == pytest.approx(0.5, abs=1e-6)
    assert set(d2.predicted_v_pu) == {"1", "2"}
    assert mpc.solves == 2 and mpc.fallbacks == 0 and len(mpc.solve_times_s) == 2


def test_fallback_on_infeasible_measurement_error_and_diverged_flow_never_raises():
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)]
    mpc = make_mpc(two_bus(), pl, {"bess": LOSSLESS}, _params())
    # 5 MWh in a 1 MWh store: even discharging at full power leaves E_1 > Ē, infeasible
    d = mpc.step(_meas(soc=5.0))
    assert d.fallback and not d.solved and d.status == "fallback:infeasible"
    assert mpc.last_outcome.status is SolveStatus.INFEASIBLE
    # a diverged power flow is not a measurement
    d = mpc.step(_meas(converged=False))
    assert d.fallback and d.status == "fallback:no-measurement"

    class Broken:
        def forecast(self, *a):
            raise RuntimeError("forecast service down")

    mpc.forecaster = Broken()
    d = mpc.step(_meas())
    assert d.fallback and d.status == "fallback:error"
    assert mpc.fallbacks == 3 and dict(mpc.fallback_counts) == {
        "infeasible": 1, "no-measurement": 1, "error": 1}
    # the fallback is the rule controller's answer: finite setpoints for every FCM
    assert set(d.p_mw) == {"bess_2"} and np.isfinite(d.p_mw["bess_2"])
    # and the driver recovers when the inputs are sane again
    mpc.forecaster = PersistenceForecaster()
    assert mpc.step(_meas(sched=(1.5,) * 4)).status == "optimal"


def test_soc_rebuilt_by_the_device_model_matches_the_plan():
    tech = StorageType(p_mw_per_module=0.25, e_mwh_per_module=0.5, eta_charge=0.9,
                       eta_discharge=0.92, soc_min=0.1, soc_max=0.9, soc_init=0.5)
    pl = Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)
    params = _params(horizon_steps=6, horizon_step_s=900.0)
    res = solve_horizon(two_bus(), [pl], {"bess": tech}, params,
                        _meas(sched=(1.4, 1.4, 0.7, 0.6, 1.3, 0.8), soc=0.5))
    assert res.outcome.ok
    device = Storage(pl, tech)
    e_model = [pyo.value(res.model.m.fcm["bess_2"].E[k]) for k in range(7)]
    assert device.e_mwh == pytest.approx(e_model[0])
    for k, p in enumerate(res.schedule_mw["bess_2"]):
        out = device.step(p, 900.0)
        assert out.p_mw == pytest.approx(p, abs=1e-6)
        assert out.soc_mwh == pytest.approx(e_model[k + 1], abs=1e-6)


@pytest.fixture(scope="module")
def ieee33():
    from models.feeder import DSSFeeder

    return DSSFeeder.open("ieee33")


def test_ieee33_plan_voltages_match_opendss_with_the_dispatch_applied(ieee33):
    """AC validation: the MILP's first-step voltages vs OpenDSS with that dispatch."""
    fd = ieee33
    base = fd.solve()
    cat = default_catalog()
    pls = [Placement(kind="bess", bus="18", p_mw=0.5, e_mwh=1.0),
           Placement(kind="gen", bus="33", p_mw=0.5),
           Placement(kind="dr", bus="18", p_mw=0.2, e_mwh=0.4)]
    params = dataclasses.replace(
        _params(horizon_steps=6, horizon_step_s=300.0, v_min_pu=0.92, v_max_pu=1.05,
                ramp_limit_mw_per_min=0.2, linearize_at="ac", mip_gap=0.01),
        campuses=(CampusSite("campus1", "18", 0.2, 1.2),),
        weights=ObjectiveWeights(imbalance_per_mwh=10.0),
    )
    # the measured state: the campus draws 0.6 MW, the FCMs are idle
    fd.add_injection("campus", "18", 0.6, 0.6 * 0.2)
    now = fd.solve()
    meas = Measurement(
        time_s=0.0, sub_p_mw=now.sub_p_mw, sub_q_mvar=now.sub_q_mvar,
        bus_v_pu=now.bus_voltages(), campus_p_mw={"campus1": 0.6}, campus_online={"campus1": True},
        fcm={"bess_18": FCMState(soc_mwh=0.5), "gen_33": FCMState(), "dr_18": FCMState()},
        p_sched_mw=np.full(6, base.sub_p_mw),
        branch_p_mw=dict(zip(now.branch_names, now.branch_p_mw.tolist())),
        branch_q_mvar=dict(zip(now.branch_names, now.branch_q_mvar.tolist())),
    )
    res = solve_horizon(fd.data, pls, cat, params, meas)
    assert res.outcome.ok
    first = {k: float(v[0]) for k, v in res.schedule_mw.items()}
    assert sum(abs(v) for v in first.values()) > 0.1  # the plan does something
    for label, p in first.items():
        bus = label.split("_")[1]
        q = float(res.schedule_mvar[label][0])
        fd.add_injection(f"t_{label}", bus, -p, -q)  # load convention: injection < 0
    ac = fd.solve()
    assert ac.converged
    v_ac = ac.bus_voltages()
    err = max(abs(res.predicted_v_pu[b] - v_ac[b]) for b in fd.data.bus_names)
    assert err < 0.005


# ---- controllers.solve: the typed outcome ---------------------------------------------------

def test_solve_outcome_statuses():
    from controllers.solve import make_solver, solve

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.c = pyo.Constraint(expr=m.x >= 2)
    m.o = pyo.Objective(expr=m.x)
    assert solve(m).status is SolveStatus.INFEASIBLE
    m.c.deactivate()
    out = solve(m)
    assert out.status is SolveStatus.OPTIMAL and out.ok and out.objective == pytest.approx(0.0)
    m.n = pyo.Constraint(expr=m.x * m.x >= 0.5)  # nonlinear: APPSI-HiGHS refuses it
    out = solve(m, make_solver())
    assert out.status is SolveStatus.ERROR and not out.ok and out.message


def test_persistent_solver_time_limit_holds_for_every_solve():
    """HiGHS times each run from its start (highspy >= 1.16). An earlier solve() offset the
    limit by the instance's accumulated run time, which doubled it at every solve: five
    solves of a knapsack HiGHS cannot close at 0.2 s must each stop at the limit, the fifth
    well before 1.5 s (it took 3.2 s with the offset)."""
    import time as _t

    from controllers.solve import make_solver, solve
    from tests._synthetic import knapsack

    m = knapsack()
    solver = make_solver(time_limit_s=0.2, mip_gap=0.0)
    for _ in range(5):
        t0 = _t.perf_counter()
        out = solve(m, solver)
        wall = _t.perf_counter() - t0
        assert out.status is SolveStatus.FEASIBLE
    assert wall < 1.5


def test_first_step_ramp_row_limits_the_change_applied_within_one_cosim_step():
    """The first setpoints act within one co-simulation step (60 s), so the import may move
    only a·R·1 min there, not R × a whole (1 h) horizon step. Hand optimum: load 1 MW,
    measured import 1.0, schedule 0.5; a 0.5 MW battery with plenty of energy; R = 0.1
    MW/min; ramp excess priced far above imbalance: the first step moves exactly a·0.1."""
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=10.0)]
    w = ObjectiveWeights(ramp_violation_per_mwh=1e7)
    meas = _meas(sub=1.0, sched=(0.5,) * 4, soc=5.0)
    free = solve_horizon(two_bus(), pl, {"bess": LOSSLESS},
                         _params(ramp_limit_mw_per_min=0.1, weights=w), meas)
    assert free.schedule_mw["bess_2"][0] == pytest.approx(0.5, abs=1e-7)  # no first-step row
    for frac in (1.0, 0.5):
        res = solve_horizon(two_bus(), pl, {"bess": LOSSLESS},
                            _params(ramp_limit_mw_per_min=0.1, weights=w, apply_step_s=60.0,
                                    first_step_ramp_frac=frac), meas)
        assert res.outcome.status is SolveStatus.OPTIMAL
        assert res.schedule_mw["bess_2"][0] == pytest.approx(0.1 * frac, abs=1e-6)
        assert res.schedule_mw["bess_2"][1:] == pytest.approx([0.5] * 3, abs=1e-6)
        assert res.terms["ramp_violation_mwh"] == pytest.approx(0.0, abs=1e-9)


def test_hold_applies_the_ramp_guard_to_the_held_plan_only_when_asked():
    """Load 1 MW, measured import 1.0, schedule 0.5 MW all horizon, R = 0.1 MW/min, no
    first-step row: the plan discharges the battery at 0.5 MW at once. Held as solved
    (``trim="none"``) the import would fall 0.5 MW in one 60-s step; with the guard the
    battery is asked for a·RΔt = 0.05 MW only, and in the next step (import measured at
    0.95, battery at 0.05) for 0.05 more; the plan itself is unchanged."""
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=10.0)]
    meas = _meas(sub=1.0, sched=(0.5,) * 4, soc=5.0, fcm={"bess_2": FCMState(soc_mwh=5.0)})
    held = make_mpc(two_bus(), pl, {"bess": LOSSLESS},
                      _params(ramp_limit_mw_per_min=0.1, apply_step_s=60.0, trim="none"))
    d = held.step(meas)
    assert d.p_mw["bess_2"] == pytest.approx(0.5, abs=1e-6)
    assert held.hold(meas).p_mw == d.p_mw
    mpc = make_mpc(two_bus(), pl, {"bess": LOSSLESS},
                     _params(ramp_limit_mw_per_min=0.1, apply_step_s=60.0, trim="ramp",
                             trim_ramp_frac=0.5))
    d = mpc.step(meas)
    assert d.solved and d.p_mw["bess_2"] == pytest.approx(0.05, abs=1e-6)
    assert mpc.plan.p_mw["bess_2"] == pytest.approx(0.5, abs=1e-6)
    nxt = _meas(sub=0.95, sched=(0.5,) * 4, fcm={"bess_2": FCMState(p_mw=0.05, soc_mwh=5.0)})
    h = mpc.hold(nxt)
    assert h.status == "hold" and not h.solved and h.p_mw["bess_2"] == pytest.approx(0.10, abs=1e-6)
    assert mpc.trims == 2


def test_generator_plan_ramps_per_module_like_the_plant():
    """A 1 MW placement of two 0.5 MW modules, each ramping 0.25 MW/min, ramps 0.5 MW/min
    (Stage I's sizing, the plant and Stage II agree). Hand optimum: load 1 MW, schedule 0
    (every MW imported is imbalance), the unit on at 0.3 MW, 1-min horizon steps: the plan
    is 0.8, 1.0, 1.0, 1.0 MW, and the plant, brought to 0.3 MW and given that plan,
    delivers the same."""
    tech = GeneratorType(p_mw_per_module=0.5, ramp_mw_per_min=0.25, p_min_frac=0.3,
                         min_up_s=0.0, min_down_s=0.0, startup_cost=0.0, cost_per_mwh=0.0)
    pl = Placement(kind="gen", bus="2", p_mw=1.0)
    assert tech.ramp_mw_per_min_for(pl.p_mw) == pytest.approx(0.5)
    meas = _meas(sub=0.7, sched=(0.0,) * 4,
                 fcm={pl.label: FCMState(p_mw=0.3, committed=True, time_in_state_s=3600.0)})
    res = solve_horizon(two_bus(), [pl], {"gen": tech}, _params(horizon_step_s=60.0), meas)
    assert res.outcome.status is SolveStatus.OPTIMAL
    assert res.schedule_mw[pl.label] == pytest.approx([0.8, 1.0, 1.0, 1.0], abs=1e-6)
    plant = Generator(pl, tech)
    assert plant.step(0.3, 60.0).p_mw == pytest.approx(0.3)
    delivered = [plant.step(p, 60.0).p_mw for p in res.schedule_mw[pl.label]]
    assert delivered == pytest.approx(list(res.schedule_mw[pl.label]), abs=1e-6)


@pytest.mark.parametrize("form", ["compact", "branch"])
def test_restoration_counts_what_the_kpi_counts_at_gw_scale(form):
    """Restoration, by hand, on a 1 GW two-bus feeder (no FCM, four 1-h steps): a campus
    forecast to reconnect from 20 to 1 000 MW at step 2 against a flat 1 020 MW schedule
    puts the import 980 MW off it (beyond the 5 % band of 51 MW) in steps 2-3, so every step
    up to the last abnormal one counts: 4. It must solve at any scale: the big-M follows the
    feeder's data (the import's a_t is 980/51 ≈ 19 pu, which the old fixed big-M of 10
    would have made infeasible). A campus measured offline counts
    until its forecast rises: 2 steps when it reconnects at step 2, 4 when it stays off,
    even with the import on its schedule."""
    feeder = two_bus(load_mw=1000.0)
    params = _params(network_form=form, campuses=(CampusSite("c", "2", 0.0, 1000.0),))

    def solve(online, now_mw, forecast, sched):
        meas = dataclasses.replace(_meas(sub=1000.0 + now_mw, sched=sched, fcm={}),
                                   campus_p_mw={"c": now_mw}, campus_online={"c": online})
        res = solve_horizon(feeder, [], {}, params, meas, {"c": np.asarray(forecast, float)})
        assert res.outcome.status is SolveStatus.OPTIMAL
        return res.terms

    terms = solve(True, 20.0, [20, 20, 1000, 1000], (1020.0,) * 4)
    assert terms["restoration_steps"] == pytest.approx(4.0)
    assert terms["imbalance_mwh"] == pytest.approx(2 * 980.0, rel=1e-6)
    terms = solve(False, 20.0, [20, 20, 1000, 1000], (1020.0, 1020.0, 2000.0, 2000.0))
    assert terms["restoration_steps"] == pytest.approx(2.0)
    assert terms["imbalance_mwh"] == pytest.approx(0.0, abs=1e-6)
    terms = solve(False, 20.0, [20] * 4, (1020.0,) * 4)
    assert terms["restoration_steps"] == pytest.approx(4.0)


def test_warm_started_rolling_solves_equal_cold_solves_and_the_build_is_timed_apart():
    # The MIP start (last plan's integer decisions moved on by the re-solve period) must not
    # change what a solve finds: the same sequence of measurements solved with and without
    # it gives the same optimum at every step (gap 1e-6). Storage and a generator whose
    # commitment carries over from step to step.
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0), Placement(kind="gen", bus="2", p_mw=0.4)]
    cat = {"bess": LOSSLESS, "gen": default_catalog()["gen"]}
    params = _params(linearize_at="ac", horizon_step_s=3600.0, resolve_period_s=3600.0)
    warm = RollingMPC(two_bus(), pl, cat, params)
    cold = RollingMPC(two_bus(), pl, cat, dataclasses.replace(params, warmstart=False))
    scheds = [(1.5, 1.0, 0.6, 0.6), (1.0, 0.6, 0.6, 1.2), (0.6, 0.6, 1.2, 1.4), (0.6, 1.2, 1.4, 0.9)]
    soc, gen = 0.5, FCMState()
    for k, sched in enumerate(scheds):
        meas = _meas(t_s=3600.0 * k, sched=sched, fcm={"bess_2": FCMState(soc_mwh=soc), "gen_2": gen},
                     bus_v_pu={"1": 1.0, "2": 1.0})
        a, b = warm.step(meas), cold.step(meas)
        assert a.solved and b.solved
        assert warm.last_outcome.objective == pytest.approx(cold.last_outcome.objective, rel=1e-6, abs=1e-6)
        soc = min(max(soc - a.p_mw["bess_2"] * 1.0, 0.0), 1.0)  # lossless, 1-h steps
        on = a.p_mw["gen_2"] > 1e-6
        gen = FCMState(p_mw=a.p_mw["gen_2"], committed=on,
                       time_in_state_s=(gen.time_in_state_s + 3600.0) if on == gen.committed else 3600.0)
    assert warm.builds == 1 and warm.build_s > 0 and len(warm.solve_times_s) == len(scheds)
    assert warm.direct is not None and warm.direct.integer_cols.size > 0
