"""The whole World on the default scenario, a few steps: real mosaik, OpenDSS, SimPy, HiGHS.

Checks the coupling, not only the parts: the entity graph, the time shifts (what the campus
and the controller saw is what the feeder computed one step before), and the power balance
of the feeder against its own reported losses.
"""

from __future__ import annotations

import numpy as np
import pytest

from controllers.ac_validation import network_model_validation
from models.errors import ScenarioError
from models.schedule import background_shape
from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.timeseries_io import read_timeseries
from scenarios.world import build_world, plan_world

STEPS = 6


def short(kind: str = "mpc", steps: int = STEPS, **over):
    sc = load_scenario(DEFAULT_SCENARIO)
    hours = steps * sc.simulation.step_s / 3600
    sc = sc.with_overrides(simulation={"hours": hours}, controller={"kind": kind, "resolve_every_steps": 2})
    return sc.with_overrides(**over) if over else sc


def test_unknown_campus_bus_is_bad_input():
    sc = load_scenario(DEFAULT_SCENARIO)
    data = sc.model_dump()
    data["campus"][0]["bus"] = "99"
    from scenarios.config import validate_scenario

    bad = validate_scenario(data, sc.path)
    with pytest.raises(ScenarioError) as exc:
        plan_world(bad)
    assert exc.value.field == "campus[0].bus" and "allowed" in exc.value.message


def test_unknown_fcm_bus_is_bad_input():
    sc = load_scenario(DEFAULT_SCENARIO)
    data = sc.model_dump()
    data["fcm"]["placements"][0]["bus"] = "340"
    from scenarios.config import validate_scenario

    with pytest.raises(ScenarioError) as exc:
        plan_world(validate_scenario(data, sc.path))
    assert exc.value.field == "fcm.placements[0].bus"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short run of the default scenario with the MPC in the loop."""
    sc = short("mpc")
    plan = plan_world(sc)
    path = tmp_path_factory.mktemp("world") / "timeseries.parquet"
    h = build_world(plan, path)
    edges = set(h.world.entity_graph.edges())
    h.world.run(until=plan.steps * plan.step_s, print_progress=False)
    return sc, plan, h, edges, read_timeseries(path)


def test_entity_graph_is_design_section_2(run):
    sc, plan, h, edges, _ = run
    und = {frozenset(e) for e in edges}
    grid, ctrl, rec = h.grid.full_id, h.controller.full_id, h.recorder.full_id
    inj = {e for e in h.world.entity_graph.nodes if ".inj" in e.lower() or "injection" in e.lower()}
    assert inj, "an Injection entity at the campus and FCM buses"
    for name, campus in h.campuses.items():
        assert any(frozenset((campus.full_id, i)) in und for i in inj)  # P,Q to the feeder
        assert frozenset((campus.full_id, ctrl)) in und                # measurements
        assert frozenset((campus.full_id, rec)) in und
    for label, fcm in h.fcms.items():
        assert frozenset((f"{ctrl.split('.')[0]}.set_{label}", fcm.full_id)) in und
        assert any(frozenset((fcm.full_id, i)) in und for i in inj)
        assert frozenset((fcm.full_id, ctrl)) in und
    assert frozenset((grid, ctrl)) in und and frozenset((grid, rec)) in und
    assert frozenset((ctrl, rec)) in und
    assert len(h.fcms) == len(sc.fcm.placements)


def test_rows_and_columns(run):
    sc, plan, h, _, ts = run
    assert list(ts.index) == [k * plan.step_s for k in range(plan.steps)]
    for col in ("pf.converged", "sub.p_mw", "sub.p_sched_mw", "sub.losses_mw", "bus.18.v_pu",
                "dc.campus1.p_mw", "dc.campus1.online", "dc.campus1.p_demand_mw",
                "fcm.bess_18.p_mw", "fcm.bess_18.soc", "fcm.bess_18.p_set_mw", "ctrl.status",
                "ctrl.solved", "pred.bus.18.v_pu", "pred.sub.p_mw"):
        assert col in ts.columns, col
    assert ts["pf.converged"].all()
    # the MPC re-solves every 2 steps (solved, or its documented fallback) and holds between
    assert (ts["ctrl.status"] != "hold").tolist() == [True, False] * (len(ts) // 2)
    assert ts["ctrl.solved"].astype(bool).sum() + ts["ctrl.fallback"].astype(bool).sum() == len(ts) // 2


def test_time_shifts_close_the_loops_one_step_late(run):
    _, _, _, _, ts = run
    # the campus saw the POI voltage OpenDSS computed in the step before
    v_poi = ts["dc.campus1.v_poi_pu"].to_numpy(float)
    v18 = ts["bus.18.v_pu"].to_numpy(float)
    np.testing.assert_allclose(v_poi[1:], v18[:-1], rtol=0, atol=1e-12)
    # the controller was told the substation import of the step before
    seen = ts["ctrl.seen_sub_p_mw"].to_numpy(float)
    np.testing.assert_allclose(seen[1:], ts["sub.p_mw"].to_numpy(float)[:-1], atol=1e-12)


def test_power_balance_against_opendss_losses(run):
    sc, plan, h, _, ts = run
    # import = background + campus − FCM injection + losses (constant-PQ loads, load convention)
    bg = background_shape(ts.index.to_numpy(float), sc.simulation.start_hour,
                          sc.grid.background_load_scale) * plan.feeder.total_load_mw
    campus = sum(ts[f"dc.{c.name}.p_mw"].to_numpy(float) for c in sc.campus)
    fcm = sum(ts[f"fcm.{label}.p_mw"].to_numpy(float) for label in h.fcms)
    rhs = bg + campus - fcm + ts["sub.losses_mw"].to_numpy(float)
    # OpenDSS stops iterating at a 1e-4 pu voltage mismatch, so the balance closes to ~1e-4
    # of the import; a wrong sign or a lost source would be off by 0.2 MW or more.
    np.testing.assert_allclose(ts["sub.p_mw"].to_numpy(float), rhs, rtol=2e-4, atol=0)
    # the FCMs delivered within their ratings and the setpoints were applied (or clipped)
    for pl in plan.placements:
        p = ts[f"fcm.{pl.label}.p_mw"].to_numpy(float)
        assert np.all(np.abs(p) <= pl.p_mw + 1e-9)


def test_ac_validation_on_ieee33(run):
    """LinDistFlow (the MILP's network model, linearised at the previous step's AC point)
    against OpenDSS at the operating points of the run: below 0.01 pu (acceptance), and
    better than the lossless flat-start model."""
    _, plan, _, _, ts = run
    res = network_model_validation(ts, plan.feeder, {c.name: c.bus for c in plan.scenario.campus},
                                   {pl.label: pl.bus for pl in plan.placements}, plan.initial_grid)
    assert res["steps"] == len(ts)
    assert res["max_abs_v_error_pu"] < 0.01
    assert res["max_abs_v_error_pu"] < res["flat_max_abs_v_error_pu"]
    # the MILP's own predictions were recorded for the applied steps
    assert ts["pred.bus.18.v_pu"].notna().any()
