"""`run_cosim.py run`: bad input gives exit 2, one line and no result folder; a short run
writes every file of DESIGN.md §5; the same seed gives an identical timeseries.parquet."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import run_cosim
from scenarios.config import DEFAULT_SCENARIO

REPO = Path(__file__).resolve().parents[1]


def scenario_file(tmp_path: Path, edit) -> Path:
    data = tomllib.loads(DEFAULT_SCENARIO.read_text())
    edit(data)
    path = tmp_path / "sc.toml"
    path.write_text(_toml(data))
    return path


def _toml(data: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the scenario's shapes (tables, arrays of tables, scalars)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)

    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v, False))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            tables.append((k, v, True))
        else:
            lines.append(f"{k} = {val(v)}")
    out = "\n".join(lines) + "\n"
    for k, v, many in tables:
        name = f"{prefix}{k}"
        for item in (v if many else [v]):
            out += f"\n[[{name}]]\n" if many else f"\n[{name}]\n"
            out += _toml(item, prefix=f"{name}.")
    return out


def _no_result_left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def _set(path, value):
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


BAD = {
    "campus_bus": (_set(("campus", 0, "bus"), "99"), "campus[0].bus"),
    "fcm_bus": (_set(("fcm", "placements", 1, "bus"), "340"), "fcm.placements[1].bus"),
    "negative_capacity": (_set(("campus", 0, "capacity_mw"), -5.0), "campus[0].capacity_mw"),
    "horizon_below_1": (_set(("controller", "horizon_steps"), 0), "controller.horizon_steps"),
    "negative_fcm_size": (_set(("fcm", "placements", 0, "p_mw"), -0.5), "fcm.placements[0].p_mw"),
    # non-finite values, loops that input drives, cross-checks, names (issue 14)
    "infinite_capacity": (_set(("campus", 0, "capacity_mw"), float("inf")), "campus[0].capacity_mw"),
    "infinite_job_rate": (_set(("campus", 0, "job_rate_per_h"), float("inf")),
                          "campus[0].job_rate_per_h"),
    "huge_job_rate": (_set(("campus", 0, "job_rate_per_h"), 1e12), "campus[0].job_rate_per_h"),
    "infinite_ramp": (_set(("grid", "ramp_limit_mw_per_min"), float("inf")),
                      "grid.ramp_limit_mw_per_min"),
    "infinite_reconnect": (_set(("campus", 0, "reconnect_delay_s"), float("inf")),
                           "campus[0].reconnect_delay_s"),
    "nan_fcm_size": (_set(("fcm", "placements", 0, "p_mw"), float("nan")), "fcm.placements[0].p_mw"),
    "steps_not_whole": (_set(("simulation", "step_s"), 7), "simulation"),
    "unknown_solver": (_set(("controller", "solver"), "nosuchsolver"), "controller.solver"),
    "ride_through_not_monotone": (_set(("campus", 0, "ride_through"), [[0.7, 0.5], [0.5, 0.02]]),
                                  "campus[0].ride_through"),
    "tiny_power_factor": (_set(("campus", 0, "power_factor"), 1e-9), "campus[0].power_factor"),
    "campus_name_with_dot": (_set(("campus", 0, "name"), "camp.us"), "campus[0].name"),
    "scenario_name_as_path": (_set(("name",), "../../x"), "name"),
    "schedule_off_the_steps": (_set(("grid", "schedule_interval_s"), 90), "schedule_interval_s"),
    "soc_band_inverted": (lambda d: d["fcm"].update(catalog={
        "bess": {"technology": "storage", "soc_min": 0.9, "soc_max": 0.1},
        "gen": {"technology": "generator"}, "dr": {"technology": "dr"}}), "fcm.catalog.bess"),
    "soc_init_outside": (lambda d: d["fcm"].update(catalog={
        "bess": {"technology": "storage", "soc_init": 0.95},
        "gen": {"technology": "generator"}, "dr": {"technology": "dr"}}), "fcm.catalog.bess"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_exit_2_one_line_no_folder(case, tmp_path, capsys):
    edit, field = BAD[case]
    sc = scenario_file(tmp_path, edit)
    out = tmp_path / "out"
    rc = run_cosim.main(["run", str(sc), "--out", str(out), "--hours", "0.05", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and field in err[0] and "Traceback" not in err[0]
    _no_result_left(out)


def test_siting_file_for_another_feeder(tmp_path, capsys):
    siting = tmp_path / "siting.json"
    siting.write_text(json.dumps({
        "feeder": {"source": "ieee69", "buses": 69, "scale": 1.0},
        "placements": [{"kind": "bess", "bus": "18", "p_mw": 0.5, "e_mwh": 1.0}],
    }))
    out = tmp_path / "out"
    rc = run_cosim.main(["run", str(DEFAULT_SCENARIO), "--out", str(out), "--hours", "0.05",
                         "--siting", str(siting), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "siting.json" in err[0]
    _no_result_left(out)


def test_unreadable_files(tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nope.json"
    rc = run_cosim.main(["run", str(DEFAULT_SCENARIO), "--out", str(out), "--siting", str(missing)])
    assert rc == 2 and "nope.json" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [unclosed\n")
    rc = run_cosim.main(["run", str(broken), "--out", str(out)])
    assert rc == 2 and "broken.toml" in capsys.readouterr().err
    _no_result_left(out)


def test_cli_process_prints_one_line_without_traceback(tmp_path):
    sc = scenario_file(tmp_path, BAD["campus_bus"][0])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "run_cosim.py", "run", str(sc), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    _no_result_left(out)


def _run(out: Path, controller: str = "rule", seed: int | None = None) -> int:
    argv = ["run", str(DEFAULT_SCENARIO), "--out", str(out), "--hours", "0.1",
            "--controller", controller, "--no-progress"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return run_cosim.main(argv)


def test_short_run_writes_every_file_and_same_seed_is_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a) == 0 and _run(b) == 0
    for name in ("timeseries.parquet", "kpis.json", "manifest.json", "report.html"):
        assert (a / name).is_file(), name
    assert list(a.glob("*.png"))
    kpis = json.loads((a / "kpis.json").read_text())
    for key in ("unserved_energy_mwh", "imbalance_mwh", "ramp_violation_mwh", "ac_validation",
                "steps", "wall_s", "wall_powerflow_s", "wall_mosaik_s"):
        assert key in kpis, key
    assert kpis["steps"] == 6
    # same seed: the same file, byte for byte (the rule controller reports no wall times)
    assert (a / "timeseries.parquet").read_bytes() == (b / "timeseries.parquet").read_bytes()
    # another seed: another campus
    c = tmp_path / "c"
    assert _run(c, seed=7) == 0
    ta, tc = pd.read_parquet(a / "timeseries.parquet"), pd.read_parquet(c / "timeseries.parquet")
    assert not ta["dc.campus1.p_mw"].equals(tc["dc.campus1.p_mw"])


@pytest.mark.parametrize("argv, where", [
    (["--out", "."], "command line: --out"),
    (["--seed", "-1"], "command line: --seed"),
    (["--hours", "inf"], "--hours"),
    (["--hours", "0.001"], "command line: --hours"),
])
def test_bad_command_line_is_named_as_such(argv, where, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = ["run", str(DEFAULT_SCENARIO), "--no-progress"] + (argv if "--out" in argv
                                                             else argv + ["--out", str(out)])
    rc = run_cosim.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and where in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_out_paths_that_cannot_hold_a_result_are_refused_first(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for cmd, out in (("run", a_file / "sub"), ("site", a_file / "sub"), ("run", other),
                     ("run", Path("/proc/x"))):
        rc = run_cosim.main([cmd, str(DEFAULT_SCENARIO), "--out", str(out)] +
                            (["--no-progress", "--hours", "0.05"] if cmd == "run" else []))
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--out" in err[0], err
    assert (other / "notes.txt").read_text() == "mine"


def test_a_folder_given_as_the_scenario(tmp_path, capsys):
    rc = run_cosim.main(["run", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a folder" in err[0]

