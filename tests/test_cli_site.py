"""`python run_cosim.py site ...` (DESIGN.md §5): a valid siting.json, and exit 2 with one
clear line for bad options, an infeasible budget, unknown buses or kinds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import run_cosim
from controllers.stage1 import load_siting
from scenarios.config import DEFAULT_SCENARIO, load_scenario

REPO = Path(__file__).resolve().parents[1]


def test_site_writes_a_valid_siting_json(tmp_path):
    out = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "run_cosim.py", "site", str(DEFAULT_SCENARIO), "--scenarios", "3",
         "--method", "benders", "--ambiguity", "l1", "--radius", "0.2", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    # its progress bar, on stderr: the samples, then each Benders iteration's scenario LPs
    assert "sampling shock scenarios" in proc.stderr and "3/3" in proc.stderr, proc.stderr
    assert "Benders iteration 1" in proc.stderr, proc.stderr
    data = json.loads((out / "siting.json").read_text())
    for key in ("placements", "objective", "capex", "budget", "expected_cost", "cvar",
                "worst_case_probabilities", "ambiguity", "radius", "alpha", "beta",
                "scenarios", "solve_s", "mip_gap"):
        assert key in data, key
    sc = load_scenario(DEFAULT_SCENARIO)
    assert (data["ambiguity"], data["radius"], data["scenarios"]) == ("l1", 0.2, 3)
    assert data["budget"] == sc.siting.budget and data["mip_gap"] <= sc.siting.mip_gap
    p = data["worst_case_probabilities"]
    assert len(p) == 3 and sum(p) == pytest.approx(1.0) and min(p) >= -1e-9
    # total variation of p* from the uniform law stays within the radius
    assert sum(abs(x - 1 / 3) for x in p) <= 0.2 + 1e-6
    # capex recomputed from the placements and the catalog
    cat = sc.fcm.catalog
    capex = sum(pl["p_mw"] / cat[pl["kind"]].p_mw_per_module * cat[pl["kind"]].capex_per_module
                for pl in data["placements"])
    assert capex == pytest.approx(data["capex"]) and capex <= data["budget"]
    assert data["objective"] >= data["capex"]
    assert data["feeder"]["source"] == "ieee33" and data["feeder"]["scale"] == 1.0
    # the co-simulation can load it for the same feeder
    from models.feeder import DSSFeeder

    feeder = DSSFeeder.open("ieee33", 1.0).data
    placements = load_siting(out / "siting.json", feeder, cat)
    assert len(placements) == len(data["placements"])


@pytest.mark.parametrize("argv, needle", [
    (["--ambiguity", "box"], "--ambiguity"),
    (["--alpha", "1.5"], "alpha"),
    (["--radius", "-1"], "radius"),
    (["--scenarios", "0"], "scenarios"),
    (["--method", "fast"], "method"),
])
def test_bad_options_exit_2(argv, needle, capsys):
    code = run_cosim.main(["site", str(DEFAULT_SCENARIO), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


SCENARIO = """
name = "cli_site_test"
[feeder]
source = "ieee33"
[[campus]]
name = "c1"
bus = "18"
capacity_mw = 1.2
[siting]
{siting}
"""


@pytest.mark.parametrize("siting, field", [
    ('candidate_buses = ["18", "99"]', "siting.candidate_buses[1]"),
    ('candidate_buses = ["18"]\nkinds = ["bess", "flywheel"]', "siting.kinds[1]"),
    ('candidate_buses = ["18"]\nbudget = 100000.0\nmin_capacity_mw = 2.0', "siting.budget"),
    ('candidate_buses = ["18"]\nmethod = "benders"\nrecourse = "milp"', "siting.method"),
])
def test_infeasible_or_unknown_siting_input_exits_2(tmp_path, capsys, siting, field):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(siting=siting))
    code = run_cosim.main(["site", str(path), "--scenarios", "2", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert field in err and str(path) in err and "allowed" in err
    assert not (tmp_path / "o" / "siting.json").exists()
