"""Validation of the ``[[campus]]`` and ``[shocks]`` sections: the shipped scenarios load,
every bad field is a ScenarioError naming the file and the field, and the ``shocks`` command
turns it into exit code 2 with one line and no traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from models.errors import ScenarioError
from scenarios.config import SCENARIO_DIR, load_scenario, validate_scenario

ROOT = Path(__file__).resolve().parents[1]
GOOD_CAMPUS = {"name": "dc", "bus": "18", "capacity_mw": 1.2}


def test_shipped_scenarios_load():
    default = load_scenario(SCENARIO_DIR / "ieee33_ai_shock.toml")
    assert default.campus[0].bus == "18" and 1.0 <= default.campus[0].capacity_mw <= 1.5
    assert default.faults.transmission_per_day > 0
    gw = load_scenario(SCENARIO_DIR / "ieee33_gw_shock.toml")
    assert gw.feeder.scale == 330.0 and gw.campus[0].capacity_mw == 1000.0
    # the GW file is the default with powers scaled: same shocks and faults, same mechanisms
    assert gw.shocks == default.shocks and gw.faults == default.faults
    keep = {"name", "bus", "capacity_mw", "ride_through"}
    assert ({k: v for k, v in gw.campus[0].model_dump().items() if k not in keep}
            == {k: v for k, v in default.campus[0].model_dump().items() if k not in keep})


@pytest.mark.parametrize(
    ("campus", "shocks", "field", "needle"),
    [
        ({"capacity_mw": -5}, {}, "campus[0].capacity_mw", "greater than 0"),
        ({"power_factor": 1.2}, {}, "campus[0].power_factor", "less than or equal to 1"),
        ({"pue": 0.8}, {}, "campus[0].pue", "greater than or equal to 1"),
        ({"job_size_frac": [0.5, 0.1]}, {}, "campus[0].job_size_frac", "low <= high"),
        ({"job_hours": [0, 2]}, {}, "campus[0].job_hours[0]", "greater than 0"),
        ({"job_hours": [3, 2]}, {}, "campus[0].job_hours", "0 < low <= high"),
        ({"ride_through": []}, {}, "campus[0].ride_through", "at least one"),
        ({"ride_through": [[1.5, 1.0]]}, {}, "campus[0].ride_through", "v_pu in (0, 1.2]"),
        ({"ride_through": [[0.8, -1.0]]}, {}, "campus[0].ride_through", "max_duration_s >= 0"),
        ({"swing_hz": 50.0}, {}, "campus[0].swing_hz", "less than or equal to 10"),
        ({"idle_frac": 0.6, "inference_frac": 0.6}, {}, "campus[0]", "idle_frac + inference_frac"),
        ({"checkpoint_s": 100.0, "checkpoint_interval_s": 60.0}, {}, "campus[0]", "checkpoint_s"),
        ({"job_size_frac": [0.1, 0.9]}, {}, "campus[0]", "must fit the training pool"),
        ({"cooling": 3}, {}, "campus[0].cooling", "allowed: backup_residual_frac"),
        ({}, {"surge_rate_per_day": -1}, "shocks.surge_rate_per_day", "greater than or equal to 0"),
        ({}, {"disturbance_v_pu": [0.3, 0.9]}, "shocks.disturbance_v_pu",
         "allowed: [faults] transmission_retained_pu"),
        ({}, {"oscillation_hz": [0.0, 3.0]}, "shocks.oscillation_hz", "0.01 <= low"),
        ({}, {"surge_hours": [2.0, 1.0]}, "shocks.surge_hours", "low <= high"),
        ({}, {"reconnect_at_once_prob": 2}, "shocks.reconnect_at_once_prob", "less than or equal to 1"),
        ({}, {"trip_prob": 0.1}, "shocks.trip_prob", "allowed: oscillation_hz"),
    ],
)
def test_bad_campus_and_shock_fields(campus, shocks, field, needle):
    data = {"campus": [{**GOOD_CAMPUS, **campus}], "shocks": shocks}
    with pytest.raises(ScenarioError) as info:
        validate_scenario(data, "bad.toml")
    err = info.value
    assert err.source == "bad.toml"
    assert err.field == field
    assert needle in err.message


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run_cosim.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_bad_faults_field_exits_2_with_one_line(tmp_path):
    data = tomllib.loads((SCENARIO_DIR / "ieee33_ai_shock.toml").read_text())
    text = (SCENARIO_DIR / "ieee33_ai_shock.toml").read_text()
    old = "transmission_retained_pu = [0.3, 0.9]"
    assert old in text and data["faults"]["transmission_retained_pu"] == [0.3, 0.9]
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, "transmission_retained_pu = [0.9, 0.3]"))
    proc = _cli("shocks", str(bad), "--samples", "2", "--out", str(tmp_path / "x.parquet"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(bad) in lines[0] and "faults.transmission_retained_pu" in lines[0] and "low <= high" in lines[0]
    assert not (tmp_path / "x.parquet").exists()


def test_cli_shocks_writes_long_format_parquet(tmp_path):
    out = tmp_path / "s.parquet"
    proc = _cli("shocks", str(SCENARIO_DIR / "ieee33_ai_shock.toml"), "--samples", "2",
                "--seed", "3", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(out)
    assert {"sample", "time_s", "campus", "p_mw", "q_mvar", "online"} <= set(df.columns)
    assert len(df) == 2 * 1440


def _with(**sections) -> dict:
    data = {"campus": [dict(GOOD_CAMPUS)]}
    data.update(sections)
    return data


@pytest.mark.parametrize(("hours", "step_s"), [(1.0, 7), (0.1, 7), (0.999444, 7), (2.5, 3599),
                                               (24.0, 61), (0.3, 17)])
def test_the_whole_steps_message_suggests_accepted_values(hours, step_s):
    """Each value the message offers is itself accepted, with the step count it names."""
    import re

    with pytest.raises(ScenarioError, match="simulation.hours") as err:
        validate_scenario(_with(simulation={"hours": hours, "step_s": step_s}), "s.toml")
    offers = re.findall(r"([0-9.]+) h \((\d+) steps\)", err.value.message)
    assert len(offers) == 2, err.value.message
    for text, steps in offers:
        sc = validate_scenario(_with(simulation={"hours": float(text), "step_s": step_s},
                                     grid={"schedule_interval_s": step_s * -(-60 // step_s)}),
                                "s.toml")
        assert sc.simulation.steps == int(steps)


@pytest.mark.parametrize(("data", "field", "needle"), [
    (_with(simulation={"hours": True}), "simulation.hours", "boolean"),
    (_with(seed=True), "seed", "boolean"),
    (_with(simulation={"hours": "24"}), "simulation.hours", "string"),
    (_with(campus=[{**GOOD_CAMPUS, "job_hours": [True, 2.0]}]), "campus[0].job_hours", "boolean"),
    (_with(grid={"ramp_limit_mw_per_min": 1e13}), "grid.ramp_limit_mw_per_min", "1e+12"),
    (_with(feeder={"scale": 1e300}), "feeder.scale", "10000"),
    (_with(grid={"background_load_scale": 1e300}), "grid.background_load_scale", "10"),
    (_with(controller={"horizon_steps": 10**8}), "controller.horizon_steps", "1000"),
    (_with(controller={"horizon_steps": 1000, "horizon_step_s": 3600}), "controller",
     "a week"),
    (_with(siting={"step_s": 1e-9}), "siting.step_s", "60"),
    (_with(siting={"scenarios": 10_000, "horizon_hours": 168}), "siting", "100,000"),
    (_with(campus=[{**GOOD_CAMPUS, "job_rate_per_h": 100.0, "job_hours": [0.001, 0.002]}],
           simulation={"hours": 8784.0}), "campus[0].job_rate_per_h", "100,000"),
    (_with(faults={"transmission_per_day": 1_000, "temporary_shots": [10, 10],
                   "reclose_dead_s": [1.0] * 9}, simulation={"hours": 240.0}), "faults",
     "100,000"),
    (_with(fcm={"catalog": {"bess": {"p_mw_per_module": 1.0}}}), "fcm.catalog.bess.technology",
     "storage, generator, dr"),
    (_with(fcm={"placements": [{"kind": "bess", "bus": "18", "p_mw": 0.5}]}),
     "fcm.placements[0].e_mwh", "energy capacity"),
    (_with(fcm={"placements": [{"kind": "dr", "bus": "18", "p_mw": 0.5, "e_mwh": 0.0}]}),
     "fcm.placements[0].e_mwh", "energy budget"),
    (_with(fcm={"placements": [{"kind": "gen", "bus": "18", "p_mw": 0.5, "e_mwh": 2.0}]}),
     "fcm.placements[0].e_mwh", "no energy"),
    (_with(fcm={"placements": "x"}), "fcm.placements", "list"),
    (_with(siting={"method": "benders", "recourse": "milp"}), "siting.method", "extensive"),
    (_with(grid={"schedule_interval_s": 90}), "grid.schedule_interval_s", "multiple"),
])
def test_values_beyond_the_limits_name_their_field(data, field, needle):
    with pytest.raises(ScenarioError) as err:
        validate_scenario(data, "s.toml")
    assert err.value.field == field and needle in err.value.message, err.value.one_line()


@pytest.mark.parametrize(("default", "needle"), [(True, "collapses the voltage"),
                                               (False, "fails in OpenDSS")])
def test_a_campus_the_feeder_cannot_carry_is_bad_input(default, needle):
    """100 GW on IEEE 33: with the default scenario OpenDSS 'converges' at 0.00015 pu, which
    is no result; on a bare one it diverges. Both name the campus, not the background."""
    from scenarios.world import plan_world

    data = tomllib.loads((SCENARIO_DIR / "ieee33_ai_shock.toml").read_text()) if default else _with()
    data["campus"][0]["capacity_mw"] = 99_999.0
    with pytest.raises(ScenarioError, match=needle) as err:
        plan_world(validate_scenario(data, "s.toml"))
    assert err.value.field == "campus[0].capacity_mw"
