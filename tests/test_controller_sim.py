"""ControllerSim: what the controller is told, the MPC's re-solve-and-hold, and HIL mode
(the same simulator in its own process over TCP gives the same setpoints)."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.interface import Dispatch
from scenarios.config import DEFAULT_SCENARIO, load_scenario
from scenarios.feeder import open_scenario_feeder
from scenarios.world import build_world, plan_world
from sim.controller_sim import CONTROLLER_OUTPUTS, META, ControllerSim
from scenarios.timeseries_io import read_timeseries


class Recording:
    """A transparent controller that keeps what it was told (to test the translation)."""

    def __init__(self, labels):
        self.labels, self.seen = labels, []

    def step(self, m):
        self.seen.append(m)
        return Dispatch(p_mw={k: 0.1 * (i + 1) for i, k in enumerate(self.labels)}, status="rule")


def _sim(kind="rule", factory=None):
    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(controller={"kind": kind, "resolve_every_steps": 3})
    sim = ControllerSim(factory) if factory else ControllerSim()
    sim.init("Ctrl", step_s=60, scenario=sc.model_dump(mode="json"), scenario_path=sc.path,
             placements=[p.model_dump(mode="json") for p in sc.fcm.placements],
             schedule_mw=[3.0, 4.0], schedule_interval_s=3600, background_nominal_mw=3.715,
             feeder=open_scenario_feeder(sc).data.to_dict())
    sim.create(1, "Controller", campuses={"DC.campus1": "campus1"},
               fcms={f"FCM.{p.label}": p.label for p in sc.fcm.placements})
    for p in sc.fcm.placements:
        sim.create(1, "Setpoint", fcm=p.label)
    return sc, sim


def test_measurement_is_built_from_inputs_only():
    rec = {}
    sc, sim = _sim(factory=lambda s, pls: rec.setdefault("c", Recording([p.label for p in pls])))
    inputs = {"ctrl": {
        "sub_p_mw": {"Feeder.grid": 4.2}, "sub_q_mvar": {"Feeder.grid": 2.0},
        "bus_v_pu": {"Feeder.grid": {"18": 0.91, "1": 1.0}}, "converged": {"Feeder.grid": True},
        "load_scale": {"Background.Function-0": 0.8},
        "campus_p_mw": {"DC.campus1": 1.1}, "campus_online": {"DC.campus1": False},
        "campus_forecast_mw": {"DC.campus1": [1.0, 1.1]},
        "fcm_p_mw": {"FCM.bess_18": -0.2}, "fcm_soc_mwh": {"FCM.bess_18": 0.4},
        "fcm_committed": {"FCM.gen_33": True}, "fcm_time_in_state_s": {"FCM.gen_33": 120.0},
    }}
    sim.step(3540, inputs, 10**9)
    m = rec["c"].seen[0]
    assert m.time_s == 3540 and m.sub_p_mw == 4.2 and m.bus_v_pu == {"18": 0.91, "1": 1.0}
    assert m.campus_p_mw == {"campus1": 1.1} and m.campus_online == {"campus1": False}
    np.testing.assert_allclose(m.campus_forecast_mw["campus1"], [1.0, 1.1])
    assert m.fcm["bess_18"].p_mw == -0.2 and m.fcm["bess_18"].soc_mwh == 0.4
    assert m.fcm["gen_33"].committed and m.fcm["gen_33"].time_in_state_s == 120.0
    assert m.background_p_mw == pytest.approx(0.8 * 3.715)
    # schedule over the horizon: block in force at the middle of each horizon step
    h = sc.controller.horizon_step_s
    expected = [3.0 if 3540 + (k + 0.5) * h < 3600 else 4.0 for k in range(sc.controller.horizon_steps)]
    np.testing.assert_allclose(m.p_sched_mw, expected)
    out = sim.get_data({"ctrl": list(CONTROLLER_OUTPUTS), "set_bess_18": ["p_set_mw"]})
    assert out["set_bess_18"]["p_set_mw"] == pytest.approx(0.1)
    assert out["ctrl"]["status"] == "rule" and out["ctrl"]["seen_sub_p_mw"] == 4.2
    assert set(out["ctrl"]) == set(CONTROLLER_OUTPUTS) <= set(META["models"]["Controller"]["attrs"])


def test_mpc_resolves_every_k_steps_and_holds():
    sc, sim = _sim("mpc")
    v = {str(b): 0.95 for b in range(1, 34)}
    statuses, setpoints = [], []
    for k in range(7):
        sim.step(60 * k, {"ctrl": {"sub_p_mw": {"g": 3.5}, "bus_v_pu": {"g": v},
                                   "campus_p_mw": {"DC.campus1": 1.0}, "load_scale": {"b": 0.7},
                                   "fcm_soc_mwh": {"FCM.bess_18": 0.5},
                                   "fcm_time_in_state_s": {"FCM.gen_33": 1e12}}}, 10**9)
        out = sim.get_data({"ctrl": ["solved", "status", "pred_sub_p_mw"],
                            "set_bess_18": ["p_set_mw"]})
        statuses.append((out["ctrl"]["solved"], out["ctrl"]["status"]))
        setpoints.append(out["set_bess_18"]["p_set_mw"])
    solved = [s for s, _ in statuses]
    assert solved == [True, False, False, True, False, False, True]
    assert all(st == "hold" for s, st in statuses if not s)
    assert all(st in ("optimal", "feasible") or st.startswith("fallback") for s, st in statuses if s)
    assert setpoints[1] == setpoints[0] and setpoints[2] == setpoints[0]  # held in between


def _short_run(tmp_path, hil: bool):
    sc = load_scenario(DEFAULT_SCENARIO).with_overrides(
        simulation={"hours": 5 * 60 / 3600}, controller={"kind": "mpc", "resolve_every_steps": 2})
    plan = plan_world(sc)
    path = tmp_path / ("hil" if hil else "local") / "timeseries.parquet"
    path.parent.mkdir()
    h = build_world(plan, path, hil=hil)
    h.world.run(until=plan.steps * plan.step_s, print_progress=False)
    return read_timeseries(path)


def test_hil_over_tcp_gives_the_same_setpoints(tmp_path):
    local = _short_run(tmp_path, hil=False)
    remote = _short_run(tmp_path, hil=True)
    cols = [c for c in local.columns if c.endswith(".p_set_mw") or c.startswith("pred.")
            or c in ("sub.p_mw", "ctrl.status", "ctrl.solved")]
    assert any(c.endswith(".p_set_mw") for c in cols)
    assert local["ctrl.solved"].astype(bool).any()
    for c in cols:
        if local[c].dtype == object or str(local[c].dtype) in ("string", "bool", "boolean"):
            assert list(local[c]) == list(remote[c]), c
        else:
            np.testing.assert_allclose(remote[c].to_numpy(float), local[c].to_numpy(float),
                                       rtol=0, atol=1e-9, err_msg=c)
