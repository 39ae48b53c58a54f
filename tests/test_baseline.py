"""Baseline controllers: idle, the transparent rule controller (hand-checked), the factory."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.baseline import IdleController, RuleController, RuleParams
from controllers.factory import make_controller
from controllers.interface import FCMState, Measurement
from models.fcm.storage import Storage
from models.errors import ScenarioError
from models.fcm_catalog import DRType, GeneratorType, Placement, StorageType
from models.network import Branch, Bus, BusLoad, FeederData

FEEDER = FeederData(
    name="two_bus", source_bus="1", base_kv_ll=11.0, s_base_mva=10.0,
    buses=(Bus("1", 11.0), Bus("2", 11.0)),
    branches=(Branch("l12", "1", "2", 0.1, 0.1, 0.01, 0.01),),
    loads=(BusLoad("2", 1.0, 0.0),),
)
CATALOG = {
    "bess": StorageType(p_mw_per_module=0.5, e_mwh_per_module=1.0, eta_charge=1.0,
                        eta_discharge=1.0, soc_min=0.0, soc_max=1.0, soc_init=0.5),
    "gen": GeneratorType(p_mw_per_module=1.0),
    "dr": DRType(p_mw_per_module=0.2),
}
PLACEMENTS = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0),
              Placement(kind="gen", bus="2", p_mw=1.0),
              Placement(kind="dr", bus="2", p_mw=0.2)]
# 60 s steps, 0.2 MW/min: RΔt = 0.2 MW; the controller's own move a·RΔt = 0.1 MW;
# dead band 0.05 MW around the schedule; DR sheds below 0.92 pu (v_min − 0.03)
PARAMS = RuleParams(step_s=60.0, ramp_limit_mw_per_min=0.2, v_min_pu=0.95, deadband_mw=0.05,
                    ramp_use_frac=0.5)


def _meas(sub: float, soc: float = 0.5, fcm_p: dict | None = None, v2: float = 1.0,
          converged: bool = True, sched: float | None = None, gen_on: bool = False,
          debt: float = 0.0) -> Measurement:
    fcm_p = fcm_p or {}
    return Measurement(
        time_s=0.0, sub_p_mw=sub, sub_q_mvar=0.0, bus_v_pu={"1": 1.0, "2": v2}, campus_p_mw={},
        campus_online={}, p_sched_mw=np.array([sub if sched is None else sched]),
        converged=converged,
        fcm={"bess_2": FCMState(p_mw=fcm_p.get("bess_2", 0.0), soc_mwh=soc),
             "gen_2": FCMState(p_mw=fcm_p.get("gen_2", 0.0), committed=gen_on,
                               time_in_state_s=1e6),
             "dr_2": FCMState(p_mw=fcm_p.get("dr_2", 0.0), debt_mwh=debt)},
    )


def test_idle_sets_every_fcm_to_zero():
    d = IdleController(PLACEMENTS).step(_meas(1.0))
    assert d.p_mw == {"bess_2": 0.0, "gen_2": 0.0, "dr_2": 0.0} and d.status == "idle"


def test_rule_walks_the_import_to_the_schedule_within_its_ramp_share():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # import 1.5, schedule 1.0: T = clip(clip(1.5, 0.95, 1.05), 1.4, 1.6) = 1.4, gap 0.1;
    # below the generator's 0.3 MW minimum: storage alone
    d = rule.step(_meas(1.5, sched=1.0))
    assert d.p_mw["bess_2"] == pytest.approx(0.1) and d.p_mw["gen_2"] == 0.0
    assert d.status == "rule"
    # next step: U = 1.4 + 0.1 = 1.5, T = 1.3, gap 0.2
    d = rule.step(_meas(1.4, sched=1.0, fcm_p={"bess_2": 0.1}))
    assert d.p_mw["bess_2"] == pytest.approx(0.2)
    # inside the dead band nothing moves
    assert rule.step(_meas(1.04, sched=1.0)).p_mw["bess_2"] == 0.0


def test_rule_generation_follows_the_positive_gap_storage_covers_its_ramp():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # U = 2.0 + 0.3 = 2.3, T = 1.9, gap 0.4 > P_min 0.3: generator asked for 0.4; running
    # at 0.3 it reaches min(0.4, 0.3 + 0.25) = 0.4 → storage 0
    d = rule.step(_meas(2.0, sched=1.0, fcm_p={"gen_2": 0.3}, gen_on=True))
    assert d.p_mw["gen_2"] == pytest.approx(0.4) and d.p_mw["bess_2"] == pytest.approx(0.0)
    # gap 0.6 with the unit off: a start reaches max(P_min, RΔt) = 0.3, storage the other 0.3
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    d = rule.step(_meas(2.1, sched=1.0, fcm_p={"bess_2": 0.5}))  # U 2.6, T 2.0, gap 0.6
    assert d.p_mw["gen_2"] == pytest.approx(0.6)
    assert d.p_mw["bess_2"] == pytest.approx(0.6 - 0.3)


def test_rule_storage_is_limited_by_its_energy_and_charges_only_at_a_healthy_bus():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # gap 0.1 but only 0.001 MWh stored: 0.001 / (1/60 h) = 0.06 MW
    assert rule.step(_meas(1.5, sched=1.0, soc=0.001)).p_mw["bess_2"] == pytest.approx(0.06)
    # import 0.5 below a 1.0 schedule: T = 0.6, charge 0.1
    assert rule.step(_meas(0.5, sched=1.0)).p_mw["bess_2"] == pytest.approx(-0.1)
    # the same at a bus below v_min: no charging for the schedule (it would deepen the sag)
    assert rule.step(_meas(0.5, sched=1.0, v2=0.94)).p_mw["bess_2"] == 0.0


def test_rule_drifts_soc_only_inside_the_dead_band_and_ramp_share():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # on schedule, 0.3 MWh below target: drift min(10 % of 0.5, ...) = 0.05 → T' = 1.05
    assert rule.step(_meas(1.0, soc=0.2)).p_mw["bess_2"] == pytest.approx(-0.05)
    assert rule.step(_meas(1.0, soc=0.9)).p_mw["bess_2"] == pytest.approx(0.05)
    # 0.04 above schedule: only 0.01 of room left in the dead band
    assert rule.step(_meas(1.04, sched=1.0, soc=0.2)).p_mw["bess_2"] == pytest.approx(-0.01)
    # no charging drift at a bus below v_min
    assert rule.step(_meas(1.0, soc=0.2, v2=0.94)).p_mw["bess_2"] == 0.0


def test_rule_dr_sheds_in_a_sag_only_and_defers_payback():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    assert rule.step(_meas(1.0, v2=0.93)).p_mw["dr_2"] == 0.0            # below v_min, no sag
    d = rule.step(_meas(1.0, v2=0.91))                                    # sag: shed D̄
    assert d.p_mw["dr_2"] == pytest.approx(0.2)
    # the DR drop of 0.2 would move the import by more than a·RΔt: storage charges the
    # 0.1 that holding the ramp needs, even at the low bus
    assert d.p_mw["bess_2"] == pytest.approx(-0.1)
    assert rule.step(_meas(1.0, v2=0.94, fcm_p={"dr_2": 0.2})).p_mw["dr_2"] == pytest.approx(0.2)
    # back above v_min + 0.01: stop; with debt and the voltage recovered, pay back at D̄
    assert rule.step(_meas(1.0, v2=0.97, debt=0.05)).p_mw["dr_2"] == pytest.approx(-0.2)
    # debt but a weak bus: deferred (the device's deadline is 1 h away)
    assert rule.step(_meas(1.0, v2=0.955, debt=0.05)).p_mw["dr_2"] == 0.0


def test_rule_without_a_measurement_sets_zero():
    d = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS).step(_meas(float("nan"), converged=False))
    assert set(d.p_mw.values()) == {0.0} and d.status == "rule:no-measurement"


def test_rule_in_closed_loop_with_the_device_reduces_ramp_violation():
    """Battery device as the plant; the controller sees the previous step (time shift)."""
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)]
    uncontrolled = np.r_[np.full(5, 1.0), 1.3, 1.6, 1.9, np.full(30, 2.2)]  # 0.3 MW/min surge
    # the day-ahead schedule did not foresee the surge: 1.0 MW throughout

    def run(controller) -> list[float]:
        device = Storage(pl[0], CATALOG["bess"])
        p_set, imports = 0.0, []
        for k, u in enumerate(uncontrolled):
            out = device.step(p_set, 60.0)
            imports.append(u - out.p_mw)
            p_set = controller.step(Measurement(
                time_s=60.0 * k, sub_p_mw=imports[-1], sub_q_mvar=0.0, bus_v_pu={},
                campus_p_mw={}, campus_online={}, p_sched_mw=np.array([1.0]),
                fcm={"bess_2": FCMState(p_mw=out.p_mw, soc_mwh=out.soc_mwh)})).p_mw["bess_2"]
        return imports

    def violation(imports) -> float:  # MW beyond R·Δt = 0.2 MW per step, summed
        return float(np.sum(np.maximum(np.abs(np.diff(imports)) - 0.2, 0.0)))

    idle = run(IdleController(pl))
    rule = run(RuleController(FEEDER, pl, CATALOG, PARAMS))
    assert violation(idle) == pytest.approx(4 * 0.1)  # four steps of 0.3 MW
    assert violation(rule) < 0.5 * violation(idle)
    # only the first 0.3 MW step (unseen) exceeds the allowance: 0.1 MW
    assert violation(rule) == pytest.approx(0.1)
    # then the battery holds the import towards the schedule, at its 0.5 MW rating
    assert rule[-1] == pytest.approx(2.2 - 0.5)


def test_factory_builds_each_kind_and_rejects_unknown_ones():
    from scenarios.config import DEFAULT_SCENARIO, load_scenario

    sc = load_scenario(DEFAULT_SCENARIO)
    assert isinstance(make_controller("none", FEEDER, PLACEMENTS, CATALOG, sc), IdleController)
    assert isinstance(make_controller("rule", FEEDER, PLACEMENTS, CATALOG, sc), RuleController)
    with pytest.raises(ScenarioError, match="allowed: none, rule, mpc"):
        make_controller("pid", FEEDER, PLACEMENTS, CATALOG, sc)
    with pytest.raises(ScenarioError, match="not in the FCM catalog"):
        make_controller("rule", FEEDER, [Placement(kind="flywheel", bus="2", p_mw=1.0)], CATALOG, sc)
    with pytest.raises(ScenarioError, match="unknown bus"):
        make_controller("rule", FEEDER, [Placement(kind="bess", bus="99", p_mw=1.0)], CATALOG, sc)


def test_factory_mpc_on_the_default_scenario():
    from controllers.stage2 import RollingMPC
    from models.feeder import DSSFeeder
    from scenarios.config import DEFAULT_SCENARIO, load_scenario

    sc = load_scenario(DEFAULT_SCENARIO)
    feeder = DSSFeeder.open("ieee33").data
    mpc = make_controller("mpc", feeder, sc.fcm.placements, sc.fcm.catalog, sc)
    assert isinstance(mpc, RollingMPC)
    assert mpc.params.horizon_steps == sc.controller.horizon_steps
    assert mpc.params.resolve_period_s == sc.controller.resolve_every_steps * sc.simulation.step_s


# --- rule 5: the ramp guard of a held plan -----------------------------------------------
# PARAMS: a·RΔt = 0.5 × 0.2 MW = 0.1 MW around the measured import


def test_trim_leaves_a_plan_inside_the_allowance_alone():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    plan = {"bess_2": -0.08, "gen_2": 0.0, "dr_2": 0.0}  # import +0.08 ≤ 0.1
    assert rule.trim(_meas(3.0), plan) == plan


def test_trim_cuts_a_planned_jump_to_the_allowance():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # storage planned from 0 to −0.3 (charging): I = 3.0 + 0 − (−0.3) = 3.3, allowed up to
    # 3.1, e = 0.2 → storage −0.3 + 0.2 = −0.1; the generator and DR keep the plan
    out = rule.trim(_meas(3.0), {"bess_2": -0.3, "gen_2": 0.0, "dr_2": 0.0})
    assert out["bess_2"] == pytest.approx(-0.1) and out["gen_2"] == 0.0 and out["dr_2"] == 0.0


def test_trim_feeds_forward_the_operators_next_step():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    m = _meas(3.0)
    # a planned reconnection: the campus draws 0.02 now, the operator expects 0.52 next step
    m = Measurement(**{**m.__dict__, "campus_p_mw": {"c": 0.02}, "campus_next_mw": {"c": 0.52}})
    out = rule.trim(m, {"bess_2": 0.0, "gen_2": 0.0, "dr_2": 0.0})
    assert out["bess_2"] == pytest.approx(0.5 - 0.1)  # I = 3.5, allowed 3.1 → discharge 0.4
    # the plant: with the campus up by 0.5 and the storage delivering what it was asked,
    # the import moves by exactly the allowance
    st = Storage(PLACEMENTS[0], CATALOG["bess"])
    delivered = st.step(out["bess_2"], 60.0).p_mw
    assert 3.0 + 0.5 - delivered - 3.0 == pytest.approx(0.1)


def test_trim_is_bounded_by_the_storage_room_and_counts_forced_payback():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    # nearly empty store (0.005 MWh): room to discharge is min(P̄ 0.5, E/Δt_h 0.3,
    # taper sqrt(2·RΔt·E/Δt_h) 0.346) = 0.3 MW, so a 1.0 MW excess takes only that
    m = _meas(3.0, soc=0.005)
    m = Measurement(**{**m.__dict__, "campus_p_mw": {"c": 0.0}, "campus_next_mw": {"c": 1.1}})
    out = rule.trim(m, {"bess_2": 0.0, "gen_2": 0.0, "dr_2": 0.0})
    assert out["bess_2"] == pytest.approx(0.005 * 60)
    # DR with debt at its deadline pays back D̄ whatever the plan says; the guard expects
    # that +0.2 MW of import and discharges storage for what exceeds the allowance
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    rule.dr_since_s["dr_2"] = CATALOG["dr"].payback_window_s
    out = rule.trim(_meas(3.0, debt=0.5), {"bess_2": 0.0, "gen_2": 0.0, "dr_2": 0.0})
    assert out["bess_2"] == pytest.approx(0.2 - 0.1)


def test_trim_without_a_measurement_keeps_the_plan():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    plan = {"bess_2": -0.5, "gen_2": 0.0, "dr_2": 0.0}
    assert rule.trim(_meas(3.0, converged=False), plan) == plan
