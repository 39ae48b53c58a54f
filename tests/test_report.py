"""report.html: every figure is written and referenced, with and without FCMs/controller."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from _synthetic import synthetic_timeseries
from scenarios.config import validate_scenario
from scenarios.kpis import compute_kpis
from scenarios.report import FIGURES, _spans, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scenario(fcms: bool):
    placements = [{"kind": "bess", "bus": "18", "p_mw": 0.5, "e_mwh": 1.0},
                  {"kind": "gen", "bus": "33", "p_mw": 0.5},
                  {"kind": "dr", "bus": "18", "p_mw": 0.2, "e_mwh": 0.4}] if fcms else []
    return validate_scenario({
        "name": "synthetic", "simulation": {"hours": 2.0, "step_s": 60},
        "grid": {"v_min_pu": 0.92, "v_max_pu": 1.05},
        "campus": [{"name": "campus1", "bus": "18", "capacity_mw": 1.2}],
        "fcm": {"placements": placements},
    }, "<test>")


def check_report(out: Path, html_path: Path) -> str:
    doc = html_path.read_text(encoding="utf-8")
    referenced = re.findall(r'<img src="([^"]+)"', doc)
    assert referenced == [f"{name}.png" for name in FIGURES]
    for name in referenced:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5_000, name
    return doc


@pytest.mark.parametrize("fcms", [True, False])
def test_report_with_and_without_fcms(tmp_path: Path, fcms: bool) -> None:
    sc = scenario(fcms)
    ts = synthetic_timeseries(hours=2.0, fcms=fcms, controller=fcms)
    kpis = compute_kpis(ts, sc, extra={"wall_s": 3.2})
    doc = check_report(tmp_path, write_report(tmp_path, ts, kpis, sc))
    assert "<table>" in doc and "voltage_violation_bus_steps" in doc
    assert "ac_validation.max_abs_v_error_pu" in doc
    assert f"<td class=num>{kpis['voltage_violation_bus_steps']:,}</td>" in doc
    assert ("no FCMs" in doc) is (not fcms)


def test_report_survives_a_nearly_empty_series(tmp_path: Path) -> None:
    """Only the substation import recorded: every figure says what is missing."""
    ts = pd.DataFrame({"sub.p_mw": [1.0, 1.5, 1.2]},
                      index=pd.Index([0, 60, 120], name="time_s"))
    sc = scenario(False)
    doc = check_report(tmp_path, write_report(tmp_path, ts, compute_kpis(ts, sc), sc))
    for note in ("no campus recorded", "no FCMs", "no bus voltages recorded"):
        assert note in doc


def test_spans_group_consecutive_steps() -> None:
    assert _spans([False, True, True, False, True]) == [(1, 3), (4, 5)]
    assert _spans([]) == []


# --- manifest.json (scenarios/manifest.py) -------------------------------------------------

def test_manifest_repeats_the_run(tmp_path: Path) -> None:
    import json

    import numpy as np
    import pyomo.version

    from scenarios.config import validate_scenario as validate
    from scenarios.manifest import write_manifest

    sc = scenario(True)
    path = write_manifest(tmp_path, sc, seed=7, extra={"wall_s": 1.5})
    data = json.loads(path.read_text())
    assert validate(data["scenario"], "<manifest>").model_dump() == sc.model_dump()
    assert data["seed"] == 7 and data["wall_s"] == 1.5
    assert data["packages"]["pandas"] == pd.__version__
    assert data["packages"]["numpy"] == np.__version__
    assert data["packages"]["pyomo"] == pyomo.version.version
    for name in ("mosaik", "mosaik-api-v3", "opendssdirect.py", "dss-python", "highspy",
                 "simpy", "pyarrow", "pydantic", "python"):
        assert data["packages"][name], name
    assert data["timestamp_utc"].endswith("+00:00")


def test_manifest_git_state(tmp_path: Path) -> None:
    import subprocess

    from scenarios.manifest import git_revision

    outside = git_revision(tmp_path)
    assert outside["revision"] is None and outside["dirty"] is None and outside["error"]
    env_git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*env_git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run([*env_git, "add", "a.txt"], check=True)
    subprocess.run([*env_git, "commit", "-qm", "one"], check=True)
    head = (tmp_path / ".git" / "refs" / "heads")
    sha = next(p.read_text().strip() for p in head.iterdir())
    assert git_revision(tmp_path) == {"revision": sha, "dirty": False}
    (tmp_path / "b.txt").write_text("untracked")  # untracked files do not make it dirty
    assert git_revision(tmp_path)["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert git_revision(tmp_path)["dirty"] is True


def test_report_of_a_single_step(tmp_path: Path) -> None:
    ts = synthetic_timeseries(hours=1.0).iloc[:1]
    sc = scenario(True)
    kpis = compute_kpis(ts, sc)
    assert kpis["steps"] == 1 and kpis["ramp_violation_mwh"] == 0.0
    check_report(tmp_path, write_report(tmp_path, ts, kpis, sc))


def test_report_without_trips_says_so(tmp_path: Path) -> None:
    """An empty trip log gives "No trips." under the campus figure and no trip table; KPIs
    computed without the runner (no log at all) say that the log is missing instead."""
    sc = scenario(False)
    ts = synthetic_timeseries(hours=2.0, fcms=False, controller=False)
    kpis = {**compute_kpis(ts, sc), "campus_trip_log": []}
    doc = check_report(tmp_path, write_report(tmp_path, ts, kpis, sc))
    at = doc.index("<h3>Campus trips</h3>")
    assert doc.index('<img src="campus.png"') < at < doc.index('<img src="fcm_dispatch.png"')
    assert doc[at:].startswith('<h3>Campus trips</h3>\n<p class="note">No trips.</p>')
    assert "reconnection ramp" not in doc and "campus_trip_log" not in doc
    without = tmp_path / "without"
    doc = check_report(without, write_report(without, ts, compute_kpis(ts, sc), sc))
    assert "No campus trip log in the KPIs." in doc and "No trips" not in doc
