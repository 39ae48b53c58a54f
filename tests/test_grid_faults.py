"""Grid faults as events of the grid (DESIGN.md §2b) in the real mosaik World, on IEEE 123
(../shared/feeders; skipped without it) and in scenario validation.

* A fault on a fused one-phase lateral trips the campus on that lateral (its phase goes
  to nothing and its fuse opens it) but not a campus elsewhere; an upstream fault trips
  both: every campus sees the same fault at the same instant.
* A permanent fault locks out: exactly the buses behind its device are de-energised (no
  voltage, their load counted as unserved background load) until it is restored, and a
  replay in plain opendssdirect with that section open reproduces the recorded import.
* Bad ``[faults]`` and ``[[events]]`` input is one ScenarioError naming the field.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ScenarioError
from scenarios.config import validate_scenario
from scenarios.runner import run_scenario
from scenarios.timeseries_io import read_timeseries
from scenarios.world import plan_world
from tests._replay import replay_import

MASTER = "feeders/ieee123/IEEE123Master.dss"
EXTRA = ["set maxcontroliter=30"]
LATERAL = {"3", "4", "5", "6"}  # behind line l2, the one-phase (c) tap at bus 1, fused


def _scenario(shared, events, steps=4, faults=None, campuses=None):
    return validate_scenario({
        "name": "faults123", "seed": 3,
        "feeder": {"source": str(shared / MASTER), "extra_commands": EXTRA},
        "simulation": {"hours": steps * 60 / 3600, "step_s": 60},
        "grid": {"v_min_pu": 0.9, "v_max_pu": 1.1},
        "campus": campuses or [
            {"name": "lateral", "bus": "4", "capacity_mw": 0.05, "sag_count_trip": 0},
            {"name": "trunk", "bus": "76", "capacity_mw": 0.4, "sag_count_trip": 0}],
        "faults": {"transmission_per_day": 0.0, **(faults or {})},
        "events": events,
        "controller": {"kind": "none"},
    }, "<faults123>")


def _trips(kpis):
    return {r["campus"] for r in kpis["campus_trip_log"] if r["outcome"] == "trip"}


def test_a_lateral_fault_trips_the_campus_on_it_and_no_other(shared_dir, tmp_path):
    ev = [{"time_s": 90.0, "location": "5", "type": "slg", "phases": [3], "r_ohm": 0.0,
           "shots_s": [0.0, 5.0], "clearing_s": 0.1}]
    kpis = run_scenario(_scenario(shared_dir, ev), tmp_path / "lat", progress=False)
    assert kpis["faults"] == 1 and kpis["fault_shots"] == 2 and kpis["lockouts"] == 0
    assert _trips(kpis) == {"lateral"}
    shots = kpis["fault_log"]["shots"]
    # the faulted phase sags across the feeder (its source impedance is shared), far less
    assert shots[0]["v_pu"]["inj_4"] < 0.5 < 0.7 < shots[0]["v_pu"]["inj_76"]


def test_an_upstream_fault_trips_every_campus_at_the_same_instant(shared_dir, tmp_path):
    ev = [{"time_s": 90.0, "location": "transmission", "retained_pu": 0.4, "clearing_s": 0.1}]
    kpis = run_scenario(_scenario(shared_dir, ev), tmp_path / "up", progress=False)
    trips = [r for r in kpis["campus_trip_log"] if r["outcome"] == "trip"]
    assert {r["campus"] for r in trips} == {"lateral", "trunk"}
    assert len({r["time_s"] for r in trips}) == 1 and trips[0]["time_s"] == 90.0
    assert kpis["simultaneous_loss_mw"] > 0.3


def test_a_lockout_de_energises_exactly_the_section_behind_its_device(shared_dir, tmp_path):
    ev = [{"time_s": 70.0, "location": "line.l4", "type": "slg", "phases": [3],
           "shots_s": [0.0, 5.0, 20.0], "clearing_s": 0.1, "permanent": True,
           "restore_s": 3600.0}]
    sc = _scenario(shared_dir, ev, steps=6)
    out = tmp_path / "lock"
    kpis = run_scenario(sc, out, progress=False)
    ts = read_timeseries(out / "timeseries.parquet")
    assert kpis["lockouts"] == 1 and kpis["faults"] == 1
    # the last shot is cleared at 90.1 s: the fuse of l2 is open from the step at 120 s
    t = ts.index.to_numpy(float)
    after = t >= 120.0
    for bus in LATERAL:
        v = ts[f"bus.{bus}.v_pu"].to_numpy(float)
        assert np.isnan(v[after]).all() and np.isfinite(v[~after]).all(), bus
    others = [c for c in ts.columns if c.startswith("bus.") and c.split(".")[1] not in LATERAL]
    assert np.isfinite(ts.loc[after, others].to_numpy(float)).all()
    # the feeder's own load there is unserved while the section is out
    plan = plan_world(sc)
    nominal = sum(ld.p_mw for ld in plan.feeder.loads if ld.bus in LATERAL)
    shed = ts["sub.background_shed_mw"].to_numpy(float)
    np.testing.assert_allclose(shed[after], nominal * ts["sub.load_scale"].to_numpy(float)[after])
    assert (shed[~after] == 0).all()
    assert kpis["background_unserved_mwh"] == pytest.approx(shed.sum() * 60 / 3600)
    # the campus on the lateral is on backup, and stays there until the restoration
    (trip,) = [r for r in kpis["campus_trip_log"] if r["campus"] == "lateral" and r["outcome"] == "trip"]
    assert trip["reconnect_s"] >= 90.1 + 3600.0 - 1e-6
    # an independent replay with the fused section open from that step
    replay = replay_import(shared_dir / MASTER, EXTRA, sc, ts,
                           open_at={int(np.argmax(after)): ["line.l2"]})
    np.testing.assert_allclose(ts["sub.p_mw"].to_numpy(float), replay, rtol=1e-6)


@pytest.mark.parametrize(("faults", "events", "field", "needle"), [
    ({}, [{"time_s": 90.0, "location": "nowhere"}], "events[0].location", "unknown location"),
    ({}, [{"time_s": 90.0, "location": "5", "r_ohm": -1.0}], "events[0].r_ohm",
     "greater than or equal to 0"),
    ({}, [{"time_s": 90.0, "location": "5", "shots_s": [float(k) for k in range(11)],
           "clearing_s": 0.1}], "events[0].shots_s", "at most 10"),
    ({}, [{"time_s": 90.0, "location": "5", "shots_s": [0.0, 0.05], "clearing_s": 0.1}],
     "events[0].shots_s", "dead time"),
    ({}, [{"time_s": 9000.0, "location": "transmission", "retained_pu": 0.5}],
     "events[0].time_s", "outside the run"),
    ({}, [{"time_s": 90.0, "location": "transmission"}], "events[0].retained_pu",
     "retained fraction"),
    ({}, [{"time_s": 90.0, "location": "4", "type": "3ph"}], "events[0].type", "needs 3 phases"),
    ({"reclose_dead_s": [1.0] * 10}, [], "faults.reclose_dead_s", "at most 10 shots"),
    ({"reclose_dead_s": [0.0]}, [], "faults.reclose_dead_s[0]", "greater than 0"),
    ({"r_ohm": [-1.0, 2.0]}, [], "faults.r_ohm", "0 <= low"),
    ({"devices": ["l999"]}, [], "faults.devices[0]", "unknown branch"),
])
def test_bad_fault_input_names_its_field(shared_dir, faults, events, field, needle):
    with pytest.raises(ScenarioError) as err:
        plan_world(_scenario(shared_dir, events, faults=faults))
    assert err.value.field == field and needle in err.value.message, err.value.one_line()


def test_a_rate_per_km_needs_line_lengths():
    """The built-in feeders give no line length: a per-km rate is refused, naming the
    per-day alternative."""
    sc = validate_scenario({"campus": [{"bus": "18", "capacity_mw": 1.0}],
                            "faults": {"feeder_per_km_year": 0.1}}, "k.toml")
    with pytest.raises(ScenarioError) as err:
        plan_world(sc)
    assert err.value.field == "faults.feeder_per_km_year" and "feeder_per_day" in err.value.message
