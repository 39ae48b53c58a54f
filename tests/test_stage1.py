"""Stage I (controllers/stage1.py): hand-solvable sitings, the feeder recourse on a two-bus
feeder, input checks, siting.json round trip.

Hand-solvable instance (one bus, one battery candidate, two scenarios): a module of 1 MW
costs 100; scenario s leaves a shortfall of d_s MW for one hour, d = (2, 4), priced at
150 $/MWh, so Q_s(n) = 150·(d_s − n)⁺. By hand:
* SAA: the first two modules save 150 each, the next two 75 each (< 100): n = 2, value 350.
* CVaR_0.5 only (β = 1): the worst half is scenario 2, every module saves 150: n = 4, 400.
* l1, β = 0: p*_2 = 0.5 + θ/2; modules 3–4 save 150·p*_2: bought iff p*_2 > 2/3.
  θ = 0.5 → p*_2 = 0.75, n = 4, value 400; θ = 0.2 → p*_2 = 0.6, n = 2, value 380.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyomo.environ as pyo
import pytest

from controllers.config import ObjectiveWeights, SitingConfig
from controllers.decomposition import TwoStageProblem, solve_two_stage
from controllers.horizon import CampusSite, MPCParams
from controllers.network import NetworkParams, thermal_screen
from controllers.risk import RiskSpec, nominal_probabilities
from controllers.stage1 import (
    Candidate,
    FeederRecourse,
    SitingFeeder,
    first_stage_builder,
    load_siting,
    make_candidates,
    site,
    siting_result,
    write_siting,
)
from models.errors import ScenarioError
from models.fcm_catalog import DRType, StorageType
from models.network import Branch, Bus, BusLoad, FeederData
from scenarios.config import validate_scenario

BATTERY = StorageType(p_mw_per_module=1.0, e_mwh_per_module=2.0, capex_per_module=100.0,
                      max_modules=5)
CAND = Candidate("bess", "2", BATTERY)


class OneBusShortfall:
    """Q_s(n) = 150·(d_s − p n)⁺ for the battery candidate (plain Pyomo)."""

    def __init__(self, d):
        self.d = list(d)
        self.n_scenarios = len(self.d)

    def build(self, blk, link, s):
        blk.e = pyo.Var(domain=pyo.NonNegativeReals)
        blk.cover = pyo.Constraint(expr=blk.e >= self.d[s] - CAND.p_mw_per_module * link[CAND.key])
        return 150.0 * blk.e


def hand_solve(spec: RiskSpec, budget: float = 1e9, min_mw: float = 0.0, method="extensive"):
    problem = TwoStageProblem(
        first_stage_builder([CAND], budget, True, min_mw), OneBusShortfall([2.0, 4.0]),
        nominal_probabilities(2), spec,
    )
    sol = solve_two_stage(problem, method, mip_gap=1e-9)
    return sol, siting_result(sol, [CAND], spec, budget, 1.0,
                              feeder=SitingFeeder(source="one_bus", scale=1.0, buses=1))


@pytest.mark.parametrize("method", ["extensive", "benders"])
@pytest.mark.parametrize(
    "spec, modules, value",
    [
        (RiskSpec("none", 0.0, 0.9, 0.0), 2, 350.0),
        (RiskSpec("none", 0.0, 0.5, 1.0), 4, 400.0),
        (RiskSpec("l1", 0.5, 0.9, 0.0), 4, 400.0),
        (RiskSpec("l1", 0.2, 0.9, 0.0), 2, 380.0),
    ],
)
def test_one_bus_one_battery_by_hand(spec, modules, value, method):
    sol, res = hand_solve(spec, method=method)
    assert sol.link[CAND.key] == pytest.approx(modules, abs=1e-6)
    assert res.objective == pytest.approx(value, rel=1e-7)
    assert res.capex == pytest.approx(100.0 * modules)
    assert res.placements[0].p_mw == pytest.approx(modules * 1.0)
    assert res.placements[0].e_mwh == pytest.approx(modules * 2.0)
    if spec.ambiguity == "l1" and modules < 4:  # at n = 4 both costs are 0: any p is worst
        assert res.worst_case_probabilities[1] == pytest.approx(0.5 + spec.radius / 2)


def test_budget_and_capacity_floor_by_hand():
    # CVaR only, budget 300: three modules, 300 + 150·1 = 450.
    _, res = hand_solve(RiskSpec("none", 0.0, 0.5, 1.0), budget=300.0)
    assert res.objective == pytest.approx(450.0) and res.capex == pytest.approx(300.0)
    # SAA with at least 3 MW installed: 300 + 0.5·150·1 = 375.
    _, res = hand_solve(RiskSpec("none", 0.0, 0.9, 0.0), min_mw=3.0)
    assert res.objective == pytest.approx(375.0)


@pytest.mark.parametrize("method", ["extensive", "benders"])
def test_continuous_sizing_by_hand(method):
    # d = (2.5, 4), SAA: modules save 150 each up to 2.5 MW, then 75 (< 100): n = 2.5,
    # value 250 + 0.5·150·1.5 = 362.5. Integer sizing would stop at 2 or 3 (value 375).
    spec = RiskSpec("none", 0.0, 0.9, 0.0)
    for integer, n_star, value in ((False, 2.5, 362.5), (True, None, 375.0)):
        problem = TwoStageProblem(first_stage_builder([CAND], 1e9, integer),
                                  OneBusShortfall([2.5, 4.0]), nominal_probabilities(2), spec)
        sol = solve_two_stage(problem, method, mip_gap=1e-9)
        assert sol.objective == pytest.approx(value, rel=1e-7)
        if n_star is not None:
            assert sol.link[CAND.key] == pytest.approx(n_star, abs=1e-7)


# --- the feeder recourse on a two-bus feeder ------------------------------------------------

def two_bus(rating: float | None = None, load_mw: float = 0.0) -> FeederData:
    return FeederData(
        name="two_bus", source_bus="1", base_kv_ll=12.66, s_base_mva=1.0,
        buses=(Bus("1", 12.66), Bus("2", 12.66)),
        branches=(Branch("l1", "1", "2", 1.6, 1.6, 0.01, 0.01, rating_mva=rating),),
        loads=(BusLoad("2", load_mw, 0.0),) if load_mw else (),
    )


DR = DRType(p_mw_per_module=0.5, energy_budget_mwh_per_module=1.0, payback_frac=0.0,
            cost_per_mwh=200.0, capex_per_module=10.0, max_modules=2)
XI = np.array([[[1.0, 1.0, 1.0, 1.0]], [[1.0, 1.0, 1.5, 1.5]]])  # MW, one-hour steps
WEIGHTS = ObjectiveWeights(imbalance_per_mwh=1000.0, restoration_per_step=0.0)
PARAMS = MPCParams(horizon_step_s=3600.0, v_min_pu=0.9, v_max_pu=1.1, ramp_limit_mw_per_min=None,
                   weights=WEIGHTS, screen_load_factor=None)


def feeder_problem(budget: float, weights: ObjectiveWeights = WEIGHTS,
                   load_mw: float = 1.0) -> tuple[TwoStageProblem, list[Candidate]]:
    # DR curtails the background load of its bus (1 MW), the campus draws ξ on top
    cands = [Candidate("dr", "2", DR)]
    rec = FeederRecourse(two_bus(load_mw=load_mw), cands, XI, [CampusSite("campus", "2")],
                         replace(PARAMS, weights=weights), schedule_mw=np.full(4, 1.0 + load_mw))
    spec = RiskSpec("none", 0.0, 0.9, 0.0)
    return TwoStageProblem(first_stage_builder(cands, budget), rec, nominal_probabilities(2),
                           spec), cands


@pytest.mark.parametrize("method", ["extensive", "benders"])
def test_feeder_recourse_by_hand(method):
    # No FCM: scenario 1 is 0.5 MW above schedule for two hours -> 1 MWh imbalance, 1000 $.
    sol = solve_two_stage(feeder_problem(0.0)[0], method, mip_gap=1e-9)
    assert sol.recourse_costs == pytest.approx([0.0, 1000.0], abs=1e-6)
    assert sol.objective == pytest.approx(500.0, rel=1e-7)
    # One DR module (0.5 MW, 1 MWh, capex 10) curtails the surge for 200 $/MWh × 1 MWh.
    sol = solve_two_stage(feeder_problem(1000.0)[0], method, mip_gap=1e-9)
    assert sol.link[("dr", "2")] == pytest.approx(1.0)
    assert sol.recourse_costs == pytest.approx([0.0, 200.0], abs=1e-6)
    assert sol.objective == pytest.approx(10.0 + 0.5 * 200.0, rel=1e-7)


def test_thermal_screening_by_hand():
    params = NetworkParams(thermal_sides=8)
    # |S| ≤ 1.1 (1.5 MW load + 0.5 MW FCM) = 2.2 MVA with the loss margin: a 2 MVA octagon
    # (1.85 inscribed) can bind, a 3 MVA one (2.77) cannot.
    for rating, kept in ((2.0, ["l1"]), (3.0, [])):
        assert thermal_screen(two_bus(rating), params, {"2": 0.5}, {"2": 1.5}) == kept


def test_feeder_recourse_counts_restoration_like_stage_two():
    # The restoration term of Stage II in Stage I's recourse (integer recourse): without an
    # FCM scenario 1 leaves the import 0.5 MW off its schedule in steps 3-4, beyond the band
    # (5 % of 2 MW): abnormal up to the last step, 4 steps × 10 $ on top of the 1000 $ of
    # imbalance. With the DR module the import holds its schedule: no restoration cost.
    weights = WEIGHTS.model_copy(update={"restoration_per_step": 10.0})
    sol = solve_two_stage(feeder_problem(0.0, weights)[0], "extensive", mip_gap=1e-9,
                          recourse="milp")
    assert sol.recourse_costs == pytest.approx([0.0, 1040.0], abs=1e-6)
    sol = solve_two_stage(feeder_problem(1000.0, weights)[0], "extensive", mip_gap=1e-9,
                          recourse="milp")
    assert sol.recourse_costs == pytest.approx([0.0, 200.0], abs=1e-6)


def test_dr_curtails_no_more_than_its_host_bus_carries():
    # 0.2 MW of background load at bus 2: the DR module (0.5 MW) curtails 0.2 MW of the
    # 0.5 MW surge, leaving 0.3 MW × 2 h = 0.6 MWh of imbalance (600 $) and 0.4 MWh curtailed
    # (80 $). A DR module at a bus without load would curtail nothing.
    sol = solve_two_stage(feeder_problem(1000.0, load_mw=0.2)[0], "extensive", mip_gap=1e-9)
    assert sol.recourse_costs == pytest.approx([0.0, 680.0], abs=1e-6)


# --- input checks -----------------------------------------------------------------------------

CATALOG = {"bess": BATTERY, "dr": DR}


def test_candidates_check_kinds_buses_and_budget():
    fd = two_bus()
    ok = make_candidates(SitingConfig(candidate_buses=["2"], kinds=["bess", "dr"]), CATALOG, fd)
    assert [c.key for c in ok] == [("bess", "2"), ("dr", "2")]
    with pytest.raises(ScenarioError, match=r"siting.kinds\[0\].*allowed: bess, dr"):
        make_candidates(SitingConfig(candidate_buses=["2"], kinds=["flywheel"]), CATALOG, fd)
    with pytest.raises(ScenarioError, match=r"siting.candidate_buses\[0\].*'99'"):
        make_candidates(SitingConfig(candidate_buses=["99"], kinds=["bess"]), CATALOG, fd)
    with pytest.raises(ScenarioError, match="source"):
        make_candidates(SitingConfig(candidate_buses=["1"], kinds=["bess"]), CATALOG, fd)
    # 3 MW of batteries cost 300 at least: a budget of 250 cannot buy them.
    with pytest.raises(ScenarioError, match=r"siting.budget.*at least 300"):
        make_candidates(SitingConfig(candidate_buses=["2"], kinds=["bess"], budget=250.0,
                                     min_capacity_mw=3.0), CATALOG, fd)
    with pytest.raises(ScenarioError, match="min_capacity_mw"):
        make_candidates(SitingConfig(candidate_buses=["2"], kinds=["dr"],
                                     min_capacity_mw=5.0), CATALOG, fd)


# --- site() end to end on the two-bus feeder, and the siting file ------------------------------

def scenario_dict(**siting):
    return {
        "name": "two_bus_test",
        "campus": [{"name": "c1", "bus": "2", "capacity_mw": 1.5, "power_factor": 1.0}],
        "grid": {"v_min_pu": 0.9, "v_max_pu": 1.1},
        "fcm": {"catalog": {"dr": DR.model_dump()}},
        "siting": {"candidate_buses": ["2"], "kinds": ["dr"], "budget": 1000.0,
                   "step_s": 3600.0, "horizon_hours": 4.0, "ambiguity": "l1", "radius": 0.2,
                   "shock_events": 1.0, "mip_gap": 1e-6, **siting},
    }


def test_site_writes_and_loads_a_siting(tmp_path):
    sc = validate_scenario(scenario_dict(), tmp_path / "s.toml")
    res = site(sc, two_bus(load_mw=1.0), XI)
    assert res.placements[0].kind == "dr" and res.placements[0].p_mw == pytest.approx(0.5)
    path = write_siting(res, tmp_path / "out" / "siting.json")
    data = json.loads(path.read_text())
    for key in ("placements", "objective", "capex", "budget", "expected_cost", "cvar",
                "worst_case_probabilities", "ambiguity", "radius", "alpha", "beta",
                "scenarios", "solve_s", "mip_gap"):
        assert key in data
    assert data["feeder"] == {"source": "ieee33", "scale": 1.0, "buses": 2}
    # priced by the LP relaxation, and re-evaluated with integer recourse at the siting: by
    # hand, scenario 0 is 0.25 MW over its schedule (the mean) for 2 h, which DR cannot
    # undo (0.5 MWh, 500 $) and abnormal up to the last step (4 × 10 $); in scenario 1 DR
    # curtails the 0.25 MW surplus for 2 h (0.5 MWh × 200 $). The relaxation is a lower bound.
    assert data["recourse"] == "lp"
    exact = data["integer_recourse"]
    assert exact["recourse_costs"] == pytest.approx([540.0, 100.0], abs=1e-6)
    assert exact["objective"] >= data["objective"] - 1e-6
    assert sum(data["worst_case_probabilities"]) == pytest.approx(1.0)
    pls = load_siting(path, two_bus(load_mw=1.0), sc.fcm.catalog)
    assert [(p.kind, p.bus, p.p_mw, p.e_mwh) for p in pls] == [("dr", "2", 0.5, 1.0)]


def test_load_siting_refuses_bad_files(tmp_path):
    fd = two_bus()
    with pytest.raises(ScenarioError, match="not found"):
        load_siting(tmp_path / "nope.json", fd, CATALOG)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_siting(bad, fd, CATALOG)

    def write(**kw):
        doc = {"placements": [{"kind": "dr", "bus": "2", "p_mw": 0.5, "e_mwh": 1.0}],
               "feeder": {"source": "two_bus", "scale": 1.0, "buses": 2}}
        doc.update(kw)
        bad.write_text(json.dumps(doc))
        return bad

    assert len(load_siting(write(), fd, CATALOG)) == 1
    with pytest.raises(ScenarioError, match="feeder.scale"):
        load_siting(write(feeder={"source": "two_bus", "scale": 330.0, "buses": 2}), fd, CATALOG)
    with pytest.raises(ScenarioError, match="feeder.buses"):
        load_siting(write(feeder={"source": "ieee33", "scale": 1.0, "buses": 33}), fd, CATALOG)
    with pytest.raises(ScenarioError, match=r"placements\[0\].bus"):
        load_siting(write(placements=[{"kind": "dr", "bus": "7", "p_mw": 0.5}]), fd, CATALOG)
    with pytest.raises(ScenarioError, match=r"placements\[0\].kind"):
        load_siting(write(placements=[{"kind": "gen", "bus": "2", "p_mw": 0.5}]), fd, CATALOG)
    with pytest.raises(ScenarioError, match=r"placements\[0\]"):
        load_siting(write(placements=[{"kind": "dr", "bus": "2", "p_mw": -1}]), fd, CATALOG)
    # a field of the wrong type is named with what it got, never a traceback
    with pytest.raises(ScenarioError, match=r"feeder.buses.*33.7"):
        load_siting(write(feeder={"source": "two_bus", "scale": 1.0, "buses": 33.7}), fd, CATALOG)
    with pytest.raises(ScenarioError, match=r"feeder.scale.*'big'"):
        load_siting(write(feeder={"source": "two_bus", "scale": "big", "buses": 2}), fd, CATALOG)


def test_benders_with_milp_recourse_is_bad_input(tmp_path):
    # refused with the scenario, before any shock is sampled
    with pytest.raises(ScenarioError, match="siting.method"):
        validate_scenario(scenario_dict(method="benders", recourse="milp"), tmp_path / "s.toml")
