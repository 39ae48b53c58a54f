"""The campuses of a run without mosaik: streams per index, the POI voltage each used,
outputs, forecasts once per step, trips in run time."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.campus import Campus, CampusConfig, Trip
from models.campus_fleet import CampusFleet, campus_rng, trip_record

CFG = CampusConfig(name="c", bus="18", capacity_mw=10.0)


def test_streams_are_the_spawned_children():
    for i in (0, 3):
        want = np.random.SeedSequence(42).spawn(i + 1)[i]
        assert campus_rng(42, i).random() == np.random.default_rng(want).random()


def test_fleet_steps_like_lone_campuses():
    fleet = CampusFleet(seed=5, dt_s=60.0, start_s=3600.0)
    fleet.add("a", CFG)
    fleet.add("b", CFG.model_copy(update={"name": "b"}), index=4)
    lone = {"a": Campus(CFG, 60.0, campus_rng(5, 0), 3600.0),
            "b": Campus(CFG, 60.0, campus_rng(5, 4), 3600.0)}
    for k in range(3):
        fleet.step(3600.0 + 60 * k, {"a": 0.97, "b": None})
        for name, campus in lone.items():
            o = campus.step(3600.0 + 60 * k, 0.97 if name == "a" else None)
            out = fleet.outputs(name)
            assert out["p_mw"] == o.p_mw and out["p_demand_mw"] == o.it_mw + o.facility_mw
    assert fleet.outputs("a")["v_poi_pu"] == 0.97 and math.isnan(fleet.outputs("b")["v_poi_pu"])
    with pytest.raises(ValueError):
        fleet.add("a", CFG)


def test_forecasts_once_per_step_and_equal_to_the_campus_own():
    fleet = CampusFleet(seed=1, dt_s=60.0, forecast_horizon_s=600.0, forecast_step_s=300.0)
    campus = fleet.add("a", CFG)
    fleet.step(0.0, {})
    fc = fleet.forecast_mw("a")
    assert fc == [float(x) for x in campus.forecast(600.0, 300.0)] and len(fc) == 2
    assert fleet.forecast_mw("a") is fc  # cached within the step
    assert fleet.next_mw("a") == float(campus.forecast(60.0, 60.0)[0])
    fleet.step(60.0, {})
    assert fleet.forecast_mw("a") is not fc


def test_trips_in_run_time():
    tr = Trip(t_s=4000.0, cause="sag", v_pu=0.4, duration_s=0.2, reconnect_s=5800.0, ramp_s=600.0)
    # campus clock 3600 s ahead of the run: 400 s and 2200 s into the run
    assert trip_record(tr, 3600.0) == {"time_s": 400.0, "cause": "sag", "v_pu": 0.4,
                                       "v_unsupported_pu": 0.4, "duration_s": 0.2,
                                       "reconnect_s": 2200.0, "ramp_s": 600.0, "fault_id": -1,
                                       "outcome": "trip", "unsupported_too": True}
