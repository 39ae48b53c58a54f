"""DataCenterSim in a real mosaik World with FeederSim (real OpenDSS): a sag that the feeder
computes, from a dip of the source voltage, trips the campus one step later through the
time-shifted POI voltage; a shallower dip does not."""

from __future__ import annotations

import json
import math
from typing import Any

import mosaik
import mosaik_api_v3
import numpy as np
import pytest
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from models.campus import Campus, CampusConfig, ride_through_violated
from _mosaik_helpers import RECEIVED
from models.campus_fleet import campus_rng
from sim.datacenter_sim import META, OUTPUTS, DataCenterSim

STEP_S = 60
STEPS = 20
SAG_STEPS = (3, 4)  # the source voltage dips during steps 3 and 4
# At full draw bus 18 holds the UPS input near 0.86 pu all along: the curve tolerates that
# (ITIC's 0.9 pu point, the default, would trip the campus before the dip)
CAMPUS = CampusConfig(name="ai", bus="18", capacity_mw=1.2, reconnect_delay_s=600.0,
                      reconnect_ramp_s=0.0, ride_through=[(0.7, 0.02), (0.8, 0.5), (0.85, 60.0)])


class SourceSim(mosaik_api_v3.Simulator):
    """Outputs the upstream voltage ``v_pu``: ``dip`` during SAG_STEPS, else 1.0."""

    META: Meta = {
        "api_version": "3.0", "type": "time-based",
        "models": {"Source": {"public": True, "params": ["dip"], "attrs": ["v_pu"]}},
    }

    def __init__(self) -> None:
        super().__init__(self.META)
        self.dip = 1.0
        self.k = 0

    def init(self, sid, time_resolution=1.0, **_):
        return self.meta

    def create(self, num, model, dip=1.0) -> list[CreateResult]:
        self.dip = float(dip)
        return [{"eid": "src", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time:
        self.k = time // STEP_S
        return time + STEP_S

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {"src": {"v_pu": self.dip if self.k in SAG_STEPS else 1.0}}


def _run_world(dip: float) -> list[dict[str, Any]]:
    RECEIVED.clear()
    world = mosaik.World({
        "FeederSim": {"python": "sim.feeder_sim:FeederSim"},
        "DataCenterSim": {"python": "sim.datacenter_sim:DataCenterSim"},
        "Source": {"python": f"{__name__}:SourceSim"},
        "Collector": {"python": "_mosaik_helpers:CollectorSim"},
    }, time_resolution=1.0, skip_greetings=True, configure_logging=False)
    feeder = world.start("FeederSim", source="ieee33", step_s=STEP_S)
    grid = feeder.Grid()
    poi = feeder.Injection(bus="18")
    dc = world.start("DataCenterSim", step_s=STEP_S, seed=7)
    campus = dc.Campus(config=CAMPUS.model_dump(mode="json"))
    src = world.start("Source").Source(dip=dip)
    sink = world.start("Collector", step_s=STEP_S).Sink()
    world.connect(src, grid, ("v_pu", "v_source_pu"))
    world.connect(campus, poi, "p_mw", "q_mvar")
    world.connect(poi, campus, ("v_pu", "v_poi_pu"), time_shifted=True, initial_data={"v_pu": 1.0})
    world.connect(campus, sink, *[a for a in OUTPUTS if a != "v_poi_pu"], ("v_poi_pu", "seen_v_pu"))
    world.connect(poi, sink, ("v_pu", "poi_v_pu"), ("p_mw", "poi_p_mw"))
    world.connect(grid, sink, "converged", "v_source_pu")
    world.run(until=STEP_S * STEPS)
    return [RECEIVED[STEP_S * k] for k in range(STEPS)]


@pytest.fixture(scope="module")
def deep() -> list[dict[str, Any]]:
    return _run_world(dip=0.8)


def test_feeder_sag_trips_campus_one_step_later_and_it_reconnects(deep):
    rows = deep
    assert all(r["converged"] for r in rows)
    # the draw the feeder applied is the campus's draw of the same step
    for r in rows:
        assert r["poi_p_mw"] == pytest.approx(r["p_mw"])
    # time shift: the campus saw the POI voltage of the previous step (1.0 at the start)
    assert rows[0]["seen_v_pu"] == 1.0
    for k in range(1, STEPS):
        assert rows[k]["seen_v_pu"] == pytest.approx(rows[k - 1]["poi_v_pu"])
    # the dip of the source to 0.8 pu takes bus 18 far below the ride-through curve
    v_sag = rows[SAG_STEPS[0]]["poi_v_pu"]
    assert v_sag < 0.7 and ride_through_violated(CAMPUS, v_sag, STEP_S)
    online = [r["online"] for r in rows]
    trip_k = SAG_STEPS[0] + 1
    assert online[:trip_k] == [True] * trip_k
    # 600 s on backup: steps trip_k … trip_k + 9 off, back at once at trip_k + 10
    assert online[trip_k:trip_k + 10] == [False] * 10
    assert all(online[trip_k + 10:])
    backup = [rows[k]["p_mw"] for k in range(trip_k, trip_k + 10)]
    demand = [rows[k]["p_demand_mw"] for k in range(trip_k, trip_k + 10)]
    np.testing.assert_allclose(backup, np.array(demand) * CAMPUS.backup_residual_frac, rtol=1e-9)
    # with the campus off the grid, the feeder's voltage at 18 recovers
    assert rows[trip_k + 2]["poi_v_pu"] > rows[trip_k - 2]["poi_v_pu"]
    # the reconnection is a surge of the whole load within one step
    assert rows[trip_k + 10]["p_mw"] > 20 * rows[trip_k + 9]["p_mw"]


def test_a_shallow_source_dip_does_not_trip():
    rows = _run_world(dip=0.97)
    assert all(r["converged"] for r in rows)
    assert rows[SAG_STEPS[0]]["poi_v_pu"] < rows[SAG_STEPS[0] - 1]["poi_v_pu"] - 0.02
    assert all(r["online"] for r in rows)


def test_world_output_equals_the_campus_model_fed_the_same_voltages(deep):
    """The adapter only translates: the plain model with the same stream and the same
    voltage readings gives the same outputs, and the forecast the operator publishes."""
    c = Campus(CAMPUS, STEP_S, campus_rng(7, 0))
    for k, r in enumerate(deep):
        o = c.step(STEP_S * k, r["seen_v_pu"])
        assert (o.p_mw, o.q_mvar, o.p_min_mw, o.p_max_mw, o.online) == pytest.approx(
            (r["p_mw"], r["q_mvar"], r["p_min_mw"], r["p_max_mw"], r["online"]))
        assert r["forecast_mw"] == pytest.approx(list(c.forecast(7200.0, 300.0)))


def test_every_meta_attribute_is_a_real_output():
    sim = DataCenterSim()
    meta = sim.init("DC", step_s=STEP_S, seed=1, scenario={"shocks": {}, "simulation": {"start_hour": 6.0}})
    assert meta["models"]["Campus"]["attrs"] == META["models"]["Campus"]["attrs"]
    (ent,) = sim.create(1, "Campus", config=CAMPUS.model_dump(mode="json"))
    assert sim.step(0, {ent["eid"]: {"v_poi_pu": {"Feeder.x": 0.99}}}, -1) == STEP_S
    attrs = META["models"]["Campus"]["attrs"]
    data = sim.get_data({ent["eid"]: attrs})[ent["eid"]]
    assert set(data) == set(attrs)
    for a in attrs:
        value = data[a]
        if a == "forecast_mw":
            assert len(value) == 24 and all(math.isfinite(x) for x in value)
        elif a == "online":
            assert value is True
        elif a == "sags":
            assert value == []  # no grid fault in this step
        elif a == "ups":
            assert value == {"capacity_mw": CAMPUS.capacity_mw, "current_limit_pu": 1.2,
                             "transfer_v_pu": 0.85, "residual_frac": CAMPUS.backup_residual_frac}
        else:
            assert math.isfinite(value), a
    assert data["v_poi_pu"] == 0.99
    assert sim.fleet.start_s == 6 * 3600.0 and sim.fleet.shocks is not None
    assert set(sim.timing()) == {"dc_s"}


def test_trip_log_is_on_the_run_clock():
    """``trips()`` (an extra method in META): each campus's trips as plain dicts, times in
    seconds since the start of the run, as the time series index; the campus clock runs
    ``start_s`` ahead. A voltage trip lies at the start of the step that reads the sag."""
    assert all(callable(getattr(DataCenterSim, m, None)) for m in META["extra_methods"])
    sim = DataCenterSim()
    sim.init("DC", step_s=STEP_S, seed=1, scenario={"simulation": {"start_hour": 6.0}})
    (ent,) = sim.create(1, "Campus", config=CAMPUS.model_dump(mode="json"))
    eid = ent["eid"]
    assert sim.trips() == {eid: []}
    for k, v in enumerate((1.0, 1.0, 0.6)):  # the third step reads 0.6 pu: below the curve
        sim.step(k * STEP_S, {eid: {"v_poi_pu": {"Feeder.x": v}}}, -1)
    assert sim.get_data({eid: ["online"]})[eid]["online"] is False
    (trip,) = sim.trips()[eid]
    # the tap was set on the 1.0-pu reading: the sudden sag reaches the UPS uncompensated
    assert trip == {"time_s": 2.0 * STEP_S, "cause": "voltage", "v_pu": pytest.approx(0.6),
                    "v_unsupported_pu": pytest.approx(0.6), "duration_s": float(STEP_S),
                    "reconnect_s": 2.0 * STEP_S + 600.0, "ramp_s": 0.0, "fault_id": -1,
                    "outcome": "trip", "unsupported_too": True}
    assert sim.fleet.campuses[eid].trips[0].t_s == 6 * 3600.0 + 2 * STEP_S
    assert json.loads(json.dumps(sim.trips())) == sim.trips()


def test_bad_init_is_rejected():
    with pytest.raises(ValueError):
        DataCenterSim().init("DC", time_resolution=0.0)


def test_forecast_is_computed_on_request_once_per_step():
    """``forecast_mw`` costs a forecast only when a consumer asks for it, once per step, and
    it is the campus's forecast from the end of that step."""
    sim = DataCenterSim()
    sim.init("DC", step_s=STEP_S, seed=3, scenario={"simulation": {"start_hour": 6.0}})
    (ent,) = sim.create(1, "Campus", config=CAMPUS.model_dump(mode="json"))
    eid = ent["eid"]
    calls = []
    campus = sim.fleet.campuses[eid]
    real = campus.forecast
    campus.forecast = lambda *a: calls.append(a) or real(*a)  # type: ignore[method-assign]
    twin = Campus(CAMPUS, STEP_S, campus_rng(3, 0), 6 * 3600.0)
    for k in range(3):
        sim.step(k * STEP_S, {}, -1)
        twin.step(6 * 3600.0 + k * STEP_S, None)
        assert set(sim.get_data({eid: ["p_mw", "online"]})[eid]) == {"p_mw", "online"}
        assert len(calls) == k
        first = sim.get_data({eid: ["forecast_mw", "p_mw"]})[eid]["forecast_mw"]
        again = sim.get_data({eid: ["forecast_mw"]})[eid]["forecast_mw"]
        assert len(calls) == k + 1 and first == again
        assert first == list(twin.forecast(7200.0, 300.0))


def test_next_step_forecast_is_the_operators_mean_over_the_coming_step():
    """``next_mw``: computed on request, once per step, equal to the campus's own forecast on
    the co-simulation step; through a planned reconnection it sees the load come back."""
    sim = DataCenterSim()
    sim.init("DC", step_s=STEP_S, seed=3)
    (ent,) = sim.create(1, "Campus", config=CAMPUS.model_dump(mode="json"))
    eid = ent["eid"]
    twin = Campus(CAMPUS, STEP_S, campus_rng(3, 0), 0.0)
    sim.fleet.campuses[eid].schedule.trip(90.0, "test", 0.3, 0.1)
    twin.schedule.trip(90.0, "test", 0.3, 0.1)
    back = 90.0 + CAMPUS.reconnect_delay_s
    seen = []
    for k in range(int(back // STEP_S) + 3):
        sim.step(k * STEP_S, {}, -1)
        twin.step(k * STEP_S, None)
        nxt = sim.get_data({eid: ["next_mw"]})[eid]["next_mw"]
        assert nxt == sim.get_data({eid: ["next_mw", "p_mw"]})[eid]["next_mw"]
        assert nxt == pytest.approx(float(twin.forecast(STEP_S, STEP_S)[0]), abs=0.0)
        seen.append(nxt)
    # on backup the forecast stays at the residual draw; the step before the reconnection
    # it already expects the load back
    assert seen[5] < 0.1 * CAMPUS.capacity_mw
    assert max(seen[-3:]) > 5 * seen[5]
