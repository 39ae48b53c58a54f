"""FeederSim inside a real mosaik World, checked against direct DSSFeeder solves."""

from __future__ import annotations

import math
from typing import Any

import mosaik
import mosaik_api_v3
import numpy as np
import pytest
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from models.feeder import DSSFeeder
from _mosaik_helpers import RECEIVED
from sim.feeder_sim import GRID_DICTS, GRID_INPUTS, GRID_SCALARS, META, FeederSim

STEP_S = 60
# campus draw (MW, load convention) and FCM injection (MW, FCM convention) per step
CAMPUS_MW = [0.4, 1.0, 0.0, 0.7]
FCM_MW = [0.0, 0.3, -0.2, 0.5]
LOAD_SCALE = [1.0, 0.8, 1.1, 0.6]


class ProfileSim(mosaik_api_v3.Simulator):
    """Outputs ``p_mw``, ``q_mvar`` and ``value`` from a list, one entry per step."""

    META: Meta = {
        "api_version": "3.0", "type": "time-based",
        "models": {"Profile": {"public": True, "params": ["p_mw", "q_mvar", "value"],
                               "attrs": ["p_mw", "q_mvar", "value"]}},
    }

    def __init__(self) -> None:
        super().__init__(self.META)
        self.profiles: dict[str, dict[str, list[float]]] = {}
        self.k = 0

    def init(self, sid, time_resolution=1.0, **_):
        return self.meta

    def create(self, num, model, p_mw=(), q_mvar=(), value=()) -> list[CreateResult]:
        eid = f"p{len(self.profiles)}"
        self.profiles[eid] = {"p_mw": list(p_mw), "q_mvar": list(q_mvar), "value": list(value)}
        return [{"eid": eid, "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        self.k = time // STEP_S
        return time + STEP_S

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self.profiles[eid][a][self.k] for a in attrs} for eid, attrs in outputs.items()}


def _run_world() -> dict[int, dict[str, Any]]:
    RECEIVED.clear()
    world = mosaik.World({
        "FeederSim": {"python": "sim.feeder_sim:FeederSim"},
        "Profile": {"python": f"{__name__}:ProfileSim"},
        "Collector": {"python": "_mosaik_helpers:CollectorSim"},
    }, time_resolution=1.0, skip_greetings=True, configure_logging=False)
    feeder = world.start("FeederSim", source="ieee33", step_s=STEP_S)
    grid = feeder.Grid()
    poi = feeder.Injection(bus="18")
    fcm_bus = feeder.Injection(bus="33")
    prof = world.start("Profile")
    campus = prof.Profile(p_mw=CAMPUS_MW, q_mvar=[0.2 * p for p in CAMPUS_MW], value=LOAD_SCALE)
    # the FCM is a second source at bus 18 (summed with the campus) and the only one at 33
    fcm = prof.Profile(p_mw=[-p for p in FCM_MW], q_mvar=[0.0] * 4, value=[0.0] * 4)
    sink = world.start("Collector", step_s=STEP_S).Sink()
    world.connect(campus, poi, "p_mw", "q_mvar")
    world.connect(fcm, poi, "p_mw")
    world.connect(fcm, fcm_bus, "p_mw", "q_mvar")
    world.connect(campus, grid, ("value", "load_scale"))
    world.connect(grid, sink, *GRID_SCALARS, *GRID_DICTS, *GRID_INPUTS)
    world.connect(poi, sink, ("v_pu", "poi_v_pu"), ("p_mw", "poi_p_mw"), ("q_mvar", "poi_q_mvar"))
    world.connect(fcm_bus, sink, ("v_pu", "fcm_v_pu"))
    world.run(until=STEP_S * len(CAMPUS_MW))
    return dict(RECEIVED)


@pytest.fixture(scope="module")
def received() -> dict[int, dict[str, Any]]:
    return _run_world()


def test_world_steps_match_direct_opendss_solves(received):
    direct = DSSFeeder.open("ieee33")
    direct.add_injection("poi", "18")
    direct.add_injection("fcm", "33")
    assert sorted(received) == [STEP_S * k for k in range(len(CAMPUS_MW))]
    for k, time in enumerate(sorted(received)):
        got = received[time]
        p18 = CAMPUS_MW[k] - FCM_MW[k]
        direct.set_injections({"poi": (p18, 0.2 * CAMPUS_MW[k]), "fcm": (-FCM_MW[k], 0.0)})
        direct.set_load_scale(LOAD_SCALE[k])
        ref = direct.solve()
        assert got["converged"] is True
        assert got["poi_p_mw"] == pytest.approx(p18)
        assert got["poi_q_mvar"] == pytest.approx(0.2 * CAMPUS_MW[k])
        assert got["load_scale"] == pytest.approx(LOAD_SCALE[k])
        assert got["sub_p_mw"] == pytest.approx(ref.sub_p_mw, abs=1e-6)
        assert got["losses_mw"] == pytest.approx(ref.losses_mw, abs=1e-7)
        assert got["poi_v_pu"] == pytest.approx(ref.bus_voltage("18"), abs=1e-7)
        assert got["fcm_v_pu"] == pytest.approx(ref.bus_voltage("33"), abs=1e-7)
        assert got["bus_v_pu"] == pytest.approx(ref.bus_voltages(), abs=1e-7)
        assert got["line_p_mw"]["l1"] == pytest.approx(ref.sub_p_mw, abs=1e-6)
        # power balance: import = background × scale + injections + losses
        assert got["sub_p_mw"] == pytest.approx(
            3.715 * LOAD_SCALE[k] + p18 - FCM_MW[k] + got["losses_mw"], abs=1e-3)


def test_every_meta_attribute_is_a_real_output():
    sim = FeederSim()
    sim.init("Feeder", source="ieee33", step_s=STEP_S)
    sim.create(1, "Grid")
    (inj,) = sim.create(1, "Injection", bus="18")
    sim.step(0, {}, -1)
    grid_attrs = META["models"]["Grid"]["attrs"]
    inj_attrs = META["models"]["Injection"]["attrs"]
    data = sim.get_data({"grid": grid_attrs, inj["eid"]: inj_attrs})
    assert set(data["grid"]) == set(grid_attrs)
    assert set(data[inj["eid"]]) == set(inj_attrs)
    assert data["grid"]["converged"] is True
    assert data["grid"]["bus_v_pu"]["18"] == pytest.approx(0.9131, abs=1e-4)
    assert data[inj["eid"]]["v_pu"] == pytest.approx(data["grid"]["bus_v_pu"]["18"])
    assert set(data["grid"]["line_loading_pct"]) == {f"l{i}" for i in range(1, 38)}
    assert sim.get_data({"grid": ["sub_p_mw"]}) == {"grid": {"sub_p_mw": data["grid"]["sub_p_mw"]}}


def test_diverged_step_publishes_nan_not_old_results():
    sim = FeederSim()
    sim.init("Feeder", source="ieee33", step_s=STEP_S)
    sim.create(1, "Grid")
    (inj,) = sim.create(1, "Injection", bus="18")
    assert sim.step(0, {}, -1) == STEP_S
    ok = sim.get_data({"grid": ["converged", "v_min_pu"]})["grid"]
    assert ok["converged"] is True and ok["v_min_pu"] > 0.9
    # 60 MW at the end of a 3.7 MW feeder: no power-flow solution exists
    sim.step(STEP_S, {inj["eid"]: {"p_mw": {"src": 60.0}, "q_mvar": {"src": 10.0}}}, -1)
    bad = sim.get_data({"grid": ["converged", "v_min_pu", "bus_v_pu", "sub_p_mw"],
                        inj["eid"]: ["v_pu"]})
    assert bad["grid"]["converged"] is False
    assert math.isnan(bad["grid"]["v_min_pu"]) and math.isnan(bad["grid"]["sub_p_mw"])
    assert all(math.isnan(v) for v in bad["grid"]["bus_v_pu"].values())
    assert math.isnan(bad[inj["eid"]]["v_pu"])
    # back to a feasible draw: the next step converges again from a fresh start
    sim.step(2 * STEP_S, {inj["eid"]: {"p_mw": {"src": 0.0}}}, -1)
    again = sim.get_data({"grid": ["converged", "v_min_pu"]})["grid"]
    assert again["converged"] is True
    assert again["v_min_pu"] == pytest.approx(ok["v_min_pu"], abs=1e-4)


def test_init_rejects_bad_step_and_unknown_bus():
    from models.errors import ScenarioError

    with pytest.raises(ValueError):
        FeederSim().init("Feeder", step_s=0)
    sim = FeederSim()
    sim.init("Feeder", source="ieee33")
    with pytest.raises(ScenarioError, match="unknown bus"):
        sim.create(1, "Injection", bus="99")
    assert np.isfinite(sim.feeder.base_case.v_min_pu)


def test_feeder_sim_runs_as_a_separate_process():
    """main(): the same simulator reached over TCP (HIL mode) gives the direct solve's numbers."""
    import sys
    from pathlib import Path

    RECEIVED.clear()
    repo = Path(__file__).resolve().parents[1]
    world = mosaik.World({
        "FeederSim": {"cmd": f"{sys.executable} -m sim.feeder_sim %(addr)s", "cwd": str(repo)},
        "Collector": {"python": "_mosaik_helpers:CollectorSim"},
    }, time_resolution=1.0, skip_greetings=True, configure_logging=False)
    feeder = world.start("FeederSim", source="ieee69", step_s=STEP_S)
    grid = feeder.Grid()
    sink = world.start("Collector", step_s=STEP_S).Sink()
    world.connect(grid, sink, "converged", "sub_p_mw", "v_min_bus")
    world.run(until=2 * STEP_S)
    ref = DSSFeeder.open("ieee69").solve()
    assert sorted(RECEIVED) == [0, STEP_S]
    for got in RECEIVED.values():
        assert got["converged"] is True and got["v_min_bus"] == "65"
        assert got["sub_p_mw"] == pytest.approx(ref.sub_p_mw, abs=1e-6)
