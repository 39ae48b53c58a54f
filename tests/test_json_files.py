"""kpis.json and manifest.json through their pydantic models: every key and value kept,
extra keys (the trip log, timings) round-trip, the contract keys are checked."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from scenarios.json_file import jsonable
from scenarios.kpis import KPIReport, write_kpis
from scenarios.manifest import Manifest

CONTRACT = dict(
    unserved_energy_mwh=0.0, imbalance_mwh=0.25, ramp_violation_mwh=0.0,
    voltage_violation_bus_steps=3, thermal_violation_line_steps=0, v_min_pu=0.91,
    v_max_pu=1.0, max_line_loading_pct=55.5, restoration_time_s=120.0, fcm_operating_cost=0.0,
    pf_nonconverged_steps=0, pf_invariant_violations=0, pf_recovered_steps=1,
    controller_solves=0, controller_fallbacks=0, controller_solve_s_median=math.nan,
    controller_solve_s_max=math.nan, steps=10, faults=1, lockouts=0,
    background_unserved_mwh=0.0, simultaneous_loss_mw=0.5, max_v_after_loss_pu=math.nan,
    trips_avoided=0, unserved_energy_avoided_mwh=0.0,
)


def _kpis():
    return {**CONTRACT, "wall_s": np.float64(1.5), "timer_dc_s": 0.25,
            "campus_trip_log": [{"campus": "c", "time_s": 60.0, "cause": "sag", "v_pu": 0.4}],
            "ac_validation": {"max_abs_v_error_pu": 0.002, "mean_abs_v_error_pu": 0.001,
                              "steps": 10, "basis": "network_model"}}


def test_kpis_round_trip_with_extra_keys(tmp_path):
    path = write_kpis(tmp_path, _kpis())
    text = path.read_text()
    data = json.loads(text)
    assert list(data) == list(_kpis())  # the order given
    assert data["controller_solve_s_median"] is None  # NaN → null, strict JSON
    assert data["wall_s"] == 1.5 and data["steps"] == 10 and isinstance(data["steps"], int)
    assert data["campus_trip_log"] == [{"campus": "c", "time_s": 60.0, "cause": "sag", "v_pu": 0.4}]
    assert list(data["ac_validation"]) == ["max_abs_v_error_pu", "mean_abs_v_error_pu", "steps", "basis"]
    report = KPIReport.read(path)
    assert report.voltage_violation_bus_steps == 3 and report.ac_validation.max_abs_v_error_pu == 0.002
    assert report.to_dict() == data
    assert report.write(tmp_path / "again.json").read_text() == text  # byte for byte


def test_kpis_without_a_contract_key_are_refused(tmp_path):
    bad = _kpis()
    del bad["imbalance_mwh"]
    with pytest.raises(ValidationError):
        write_kpis(tmp_path, bad)


def test_manifest_round_trip(tmp_path):
    data = {"scenario": {"name": "x"}, "scenario_path": None, "seed": 7,
            "packages": {"numpy": "2.0", "absent": None}, "git": {"revision": None, "dirty": None},
            "platform": {"cpu_count": 2}, "timestamp_utc": "2026-01-01T00:00:00+00:00",
            "placements": [{"label": "b"}], "schedule_mw": (3.0, 4.0), "realtime": None}
    path = Manifest.from_dict(data).write(tmp_path / "manifest.json")
    back = json.loads(path.read_text())
    assert back == {**data, "schedule_mw": [3.0, 4.0]} and list(back) == list(data)
    assert Manifest.read(path).seed == 7


def test_jsonable():
    assert jsonable({1: (np.int64(2), np.bool_(True), math.inf)}) == {"1": [2, True, None]}
    assert jsonable(np.float32(0.5)) == 0.5 and jsonable("a") == "a"
