"""One feeder definition (DESIGN.md §2a): the plant, Stage I, Stage II and the AC validation
all use the scenario's one compiled feeder (source, scale, extra_commands, source voltage)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from controllers.stage1 import build_problem
from models.network import FeederData
from scenarios.config import DEFAULT_SCENARIO, load_scenario, validate_scenario
from scenarios.feeder import open_scenario_feeder
from scenarios.world import build_world, plan_world

REPO = Path(__file__).resolve().parents[1]


def test_nothing_in_the_controllers_compiles_opendss():
    """No module of controllers/ nor the controller's adapter imports the OpenDSS loader
    or opendssdirect: they get the plan's FeederData."""
    files = sorted((REPO / "controllers").glob("*.py")) + [REPO / "sim" / "controller_sim.py"]
    for path in files:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.startswith(("opendssdirect", "models.feeder")) for m in names), path.name


def test_feeder_data_travels_as_json_unchanged():
    import json

    fd = open_scenario_feeder(load_scenario(DEFAULT_SCENARIO)).data
    back = FeederData.from_dict(json.loads(json.dumps(fd.to_dict())))
    assert back == fd and back.fingerprint() == fd.fingerprint()


def test_the_controller_optimises_the_plants_feeder(tmp_path):
    # extra_commands change the network (here: a stronger line 18); the plan, the plant and
    # the controller all hold that network, at the scenario's source voltage
    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(
        feeder={"extra_commands": ["edit line.l17 r1=0.05 x1=0.05 r0=0.05 x0=0.05"]},
        simulation={"hours": 2 / 60}, controller={"kind": "rule"})
    plan = plan_world(sc)
    assert plan.feeder.extra_commands == tuple(sc.feeder.extra_commands)
    assert plan.feeder.v_source_pu == pytest.approx(sc.grid.v_source_pu)
    plain = open_scenario_feeder(load_scenario(DEFAULT_SCENARIO)).data
    assert plan.feeder.fingerprint() != plain.fingerprint()
    h = build_world(plan, tmp_path / "timeseries.parquet")
    try:  # in-process simulators: the adapters behind mosaik's local proxies
        ctrl = h.world.sims["Ctrl"]._proxy.sim
        plant = h.world.sims["Feeder"]._proxy.sim
        assert ctrl.feeder == plan.feeder
        assert plant.feeder.data.fingerprint() == plan.feeder.fingerprint()
        assert plant.feeder.source_voltage_pu == pytest.approx(sc.grid.v_source_pu)
    finally:
        h.world.shutdown()


def test_stage_one_uses_the_scenarios_source_voltage_and_does_not_shed(tmp_path):
    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(siting={"scenarios": 2, "horizon_hours": 0.5})
    fd = open_scenario_feeder(sc).data
    xi = np.full((2, 1, 6), 0.8)
    problem, _, _ = build_problem(sc, fd, xi)
    rec = problem.recourse
    # the default scenario holds its source at 1.05 pu (Stage I priced it at 1.0 before)
    assert rec.params.v_source_pu == pytest.approx(1.05, abs=1e-3)
    assert not rec.params.allow_shedding
    shedding = validate_scenario({**sc.model_dump(), "siting": {**sc.siting.model_dump(),
                                                                  "allow_shedding": True}}, sc.path)
    assert build_problem(shedding, fd, xi)[0].recourse.params.allow_shedding


def test_stage_one_network_is_the_plants_on_a_multi_voltage_feeder(shared_dir, tmp_path):
    """On IEEE 123 (4.16 kV and 0.48 kV, one-phase laterals, four regulators) Stage I's
    recourse network, with no campus draw and no FCM, gives OpenDSS's base-case voltages:
    the same compiled feeder (extra_commands included), calibrated at its AC base case."""
    import pyomo.environ as pyo

    from controllers.solve import make_solver, solve

    sc = validate_scenario({
        "name": "ieee123_site", "seed": 3,
        "feeder": {"source": str(shared_dir / "feeders" / "ieee123" / "IEEE123Master.dss"),
                   "extra_commands": ["set maxcontroliter=30"]},
        "grid": {"v_min_pu": 0.9, "v_max_pu": 1.1},
        "campus": [{"name": "c66", "bus": "66", "capacity_mw": 0.4}],
        "fcm": {"placements": []},
        "siting": {"scenarios": 1, "candidate_buses": ["66", "610"], "horizon_hours": 0.5},
    }, tmp_path / "ieee123_site.toml")
    fd = open_scenario_feeder(sc).data
    problem, candidates, _ = build_problem(sc, fd, np.zeros((1, 1, 6)))
    m = pyo.ConcreteModel()
    m.blk = pyo.Block()
    cost = problem.recourse.build(m.blk, {c.key: 0.0 for c in candidates}, 0)
    m.obj = pyo.Objective(expr=cost)
    assert solve(m, make_solver("appsi_highs", 60.0, 1e-6)).ok
    v_model = np.sqrt([pyo.value(m.blk.net.v[b, 0]) for b in fd.bus_names])
    np.testing.assert_allclose(v_model, fd.base_bus_v_pu, atol=1e-6)
    assert fd.bus("610").base_kv_ll == pytest.approx(0.48)
