"""Baseline controllers: idle, the transparent rule controller (hand-checked), the factory."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.baseline import IdleController, RuleController, RuleParams, make_controller
from controllers.interface import FCMState, Measurement
from models.devices import Storage
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
# 60 s steps, 0.2 MW/min: the import may move 0.2 MW per step
PARAMS = RuleParams(step_s=60.0, ramp_limit_mw_per_min=0.2, v_min_pu=0.95)


def _meas(sub: float, soc: float = 0.5, fcm_p: dict | None = None, v2: float = 1.0,
          converged: bool = True) -> Measurement:
    fcm_p = fcm_p or {}
    return Measurement(
        time_s=0.0, sub_p_mw=sub, sub_q_mvar=0.0, bus_v_pu={"1": 1.0, "2": v2}, campus_p_mw={},
        campus_online={}, p_sched_mw=np.zeros(1), converged=converged,
        fcm={"bess_2": FCMState(p_mw=fcm_p.get("bess_2", 0.0), soc_mwh=soc),
             "gen_2": FCMState(p_mw=fcm_p.get("gen_2", 0.0)),
             "dr_2": FCMState(p_mw=fcm_p.get("dr_2", 0.0))},
    )


def test_idle_sets_every_fcm_to_zero():
    d = IdleController(PLACEMENTS).step(_meas(1.0))
    assert d.p_mw == {"bess_2": 0.0, "gen_2": 0.0, "dr_2": 0.0} and d.status == "idle"


def test_rule_counters_a_surge_with_storage_first_then_generation():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    assert rule.step(_meas(1.0)).p_mw["bess_2"] == 0.0       # target starts at 1.0 MW
    # FCMs already deliver 0.8 MW and the import reads 1.2: uncontrolled U = 2.0. Target
    # min(U, 1.0 + 0.2) = 1.2 (within 0.2 of the import): gap 0.8, battery 0.5 first
    d = rule.step(_meas(1.2, fcm_p={"bess_2": 0.5, "gen_2": 0.3}))
    assert d.p_mw["bess_2"] == pytest.approx(0.5)
    assert d.p_mw["gen_2"] == pytest.approx(0.3)
    assert d.status == "rule"
    # next: target 1.4, gap 0.6 → battery 0.5, generator 0.1
    d = rule.step(_meas(1.2, fcm_p={"bess_2": 0.5, "gen_2": 0.3}))
    assert d.p_mw["bess_2"] == pytest.approx(0.5) and d.p_mw["gen_2"] == pytest.approx(0.1)


def test_rule_walks_an_unforeseen_jump_back_by_one_allowance():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    rule.step(_meas(1.0))
    d = rule.step(_meas(2.0))  # jumped 1 MW before any measurement showed it
    # target clip(clip(2.0, 0.8, 1.2), 1.8, 2.2) = 1.8: only 0.2 MW back, not to 1.2
    assert d.p_mw["bess_2"] == pytest.approx(0.2) and d.p_mw["gen_2"] == 0.0


def test_rule_storage_is_limited_by_its_energy_and_charges_on_a_drop():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    rule.step(_meas(2.0))
    # U = 2.2 + 0.8 = 3.0, target 2.2, gap 0.8; only 0.002 MWh stored:
    # 0.002 MWh / (1/60 h) = 0.12 MW of discharge, the generator the rest
    d = rule.step(_meas(2.2, soc=0.002, fcm_p={"gen_2": 0.8}))
    assert d.p_mw["bess_2"] == pytest.approx(0.12)
    assert d.p_mw["gen_2"] == pytest.approx(0.8 - 0.12)
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    rule.step(_meas(2.0))
    d = rule.step(_meas(1.5))  # drop to 1.5: target max(1.8, 1.5 − 0.2) → 1.7, charge 0.2
    assert d.p_mw["bess_2"] == pytest.approx(-0.2) and d.p_mw["gen_2"] == 0.0


def test_rule_restores_soc_when_calm_within_the_ramp_allowance():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    d = rule.step(_meas(1.0, soc=0.2))  # calm, 0.3 MWh below its 0.5 MWh target
    # limit: min(10 % of 0.5 MW, 0.2 MW ramp / (2 × 1 store)) = 0.05 MW of charging
    assert d.p_mw["bess_2"] == pytest.approx(-0.05)
    d = rule.step(_meas(1.0, soc=0.9))
    assert d.p_mw["bess_2"] == pytest.approx(0.05)


def test_rule_dr_sheds_on_low_voltage_with_hysteresis():
    rule = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS)
    assert rule.step(_meas(1.0, v2=0.96)).p_mw["dr_2"] == 0.0
    assert rule.step(_meas(1.0, v2=0.94)).p_mw["dr_2"] == pytest.approx(0.2)
    assert rule.step(_meas(1.0, v2=0.955)).p_mw["dr_2"] == pytest.approx(0.2)  # inside the band
    assert rule.step(_meas(1.0, v2=0.965)).p_mw["dr_2"] == 0.0


def test_rule_without_a_measurement_sets_zero():
    d = RuleController(FEEDER, PLACEMENTS, CATALOG, PARAMS).step(_meas(float("nan"), converged=False))
    assert set(d.p_mw.values()) == {0.0} and d.status == "rule:no-measurement"


def test_rule_in_closed_loop_with_the_device_reduces_ramp_violation():
    """Battery device as the plant; the controller sees the previous step (time shift)."""
    pl = [Placement(kind="bess", bus="2", p_mw=0.5, e_mwh=1.0)]
    uncontrolled = np.r_[np.full(5, 1.0), 1.3, 1.6, 1.9, np.full(12, 2.2)]  # 0.3 MW/min surge

    def run(controller) -> list[float]:
        device = Storage(pl[0], CATALOG["bess"])
        p_set, imports = 0.0, []
        for k, u in enumerate(uncontrolled):
            out = device.step(p_set, 60.0)
            imports.append(u - out.p_mw)
            p_set = controller.step(Measurement(
                time_s=60.0 * k, sub_p_mw=imports[-1], sub_q_mvar=0.0, bus_v_pu={},
                campus_p_mw={}, campus_online={}, p_sched_mw=np.zeros(1),
                fcm={"bess_2": FCMState(p_mw=out.p_mw, soc_mwh=out.soc_mwh)})).p_mw["bess_2"]
        return imports

    def violation(imports) -> float:  # MW beyond R·Δt = 0.2 MW per step, summed
        return float(np.sum(np.maximum(np.abs(np.diff(imports)) - 0.2, 0.0)))

    idle = run(IdleController(pl))
    rule = run(RuleController(FEEDER, pl, CATALOG, PARAMS))
    assert violation(idle) == pytest.approx(4 * 0.1)  # four steps of 0.3 MW
    assert violation(rule) < 0.5 * violation(idle)
    # the import reaches the new level, plus at most the SoC-restoring 10 % of 0.5 MW
    assert 2.2 - 1e-9 <= rule[-1] <= 2.25 + 1e-9


def test_factory_builds_each_kind_and_rejects_unknown_ones():
    from scenarios.config import DEFAULT_SCENARIO, load_scenario

    sc = load_scenario(DEFAULT_SCENARIO)
    assert isinstance(make_controller("none", FEEDER, PLACEMENTS, CATALOG, sc), IdleController)
    assert isinstance(make_controller("rule", FEEDER, PLACEMENTS, CATALOG, sc), RuleController)
    with pytest.raises(ScenarioError, match="allowed: none, rule, mpc"):
        make_controller("pid", FEEDER, PLACEMENTS, CATALOG, sc)
    with pytest.raises(ScenarioError, match="not in the catalog"):
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
