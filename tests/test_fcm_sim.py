"""FCMSim in a real mosaik World: setpoints in, the device's physics out, sign flip for the
feeder, and every META attribute a real output."""

from __future__ import annotations

import math

import mosaik
import pytest

from models.fcm.storage import Storage
from models.fcm_catalog import GeneratorType, Placement, StorageType
from sim.fcm_sim import META, OUTPUTS, FCMSim

STEP = 60
PL = Placement(kind="bess", bus="18", p_mw=0.5, e_mwh=0.2)
TECH = StorageType(eta_charge=0.9, eta_discharge=0.9, soc_min=0.1, soc_max=0.9, soc_init=0.5)


def setpoint(t: int) -> float:
    """Discharge hard (more than the rating), then charge hard: both limits bind."""
    return 2.0 if t < 10 * STEP else -2.0


def test_every_meta_output_is_served():
    sim = FCMSim()
    sim.init("FCM-0", step_s=STEP)
    for pl, tech in ((PL, TECH), (Placement(kind="gen", bus="33", p_mw=1.0), GeneratorType())):
        sim.create(1, "FCM", placement=pl.model_dump(), tech=tech.model_dump())
    sim.step(0, {"bess_18": {"p_set_mw": {"x": 0.3}}}, 10**9)
    attrs = [a for a in META["models"]["FCM"]["attrs"] if a in OUTPUTS]
    data = sim.get_data({eid: attrs for eid in ("bess_18", "gen_33")})
    for eid in ("bess_18", "gen_33"):
        assert set(data[eid]) == set(attrs) == set(OUTPUTS)
        assert data[eid]["p_load_mw"] == -data[eid]["p_mw"]
    assert data["bess_18"]["p_mw"] == pytest.approx(0.3)
    assert math.isnan(data["gen_33"]["soc"])


def test_fcmsim_in_world_matches_the_device_stepped_alone():
    world = mosaik.World(
        {
            "Input": {"python": "mosaik.basic_simulators:InputSimulator"},
            "FCMSim": {"python": "sim.fcm_sim:FCMSim"},
            "Out": {"python": "mosaik.basic_simulators:OutputSimulator"},
        },
        time_resolution=1.0, skip_greetings=True, configure_logging=False,
    )
    src = world.start("Input", step_size=STEP).Function(function=setpoint)
    fcm = world.start("FCMSim", step_s=STEP).FCM(placement=PL.model_dump(), tech=TECH.model_dump())
    out_sim = world.start("Out")
    out = out_sim.Dict()
    world.connect(src, fcm, ("value", "p_set_mw"))
    world.connect(fcm, out, "p_mw", "p_load_mw", "soc_mwh", "p_set_mw")
    steps = 20
    world.run(until=steps * STEP, print_progress=False, shutdown=False)
    rec = out_sim.get_dict(out.eid)
    world.shutdown()

    ref = Storage(PL, TECH)  # the same device, stepped without mosaik
    times = sorted(rec)
    assert times == [k * STEP for k in range(steps)]
    for t in times:
        vals = {a: next(iter(v.values())) for a, v in rec[t].items()}
        expected = ref.step(setpoint(t), STEP)
        assert vals["p_set_mw"] == setpoint(t)
        assert vals["p_mw"] == pytest.approx(expected.p_mw)
        assert vals["p_load_mw"] == pytest.approx(-expected.p_mw)
        assert vals["soc_mwh"] == pytest.approx(expected.soc_mwh)
        assert abs(vals["p_mw"]) <= PL.p_mw + 1e-12
    # the physics bound: 0.08 MWh above soc_min, delivered at η_d = 0.9 → 0.072 MWh out
    discharged = sum(next(iter(rec[t]["p_mw"].values())) for t in times[:10]) * STEP / 3600
    assert discharged == pytest.approx(0.072)
