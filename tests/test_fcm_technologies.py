"""FCM technologies as components (models/fcm): the registry, the sizing by hand, and a
technology added by one module outside the package (tests/_fcm_flywheel.py, docs/fcm.md)
running through the whole co-simulation, Stage-II MILP and plant, in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.fcm import MODULES_ENV, TECHNOLOGIES, make_device, technology_of
from models.fcm_catalog import Placement, default_catalog

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_in_technologies_are_registered_and_size_by_hand():
    assert {"storage", "generator", "dr"} <= set(TECHNOLOGIES)
    cat = default_catalog()
    # a 0.5 MW battery without an energy of its own: 2 modules of 0.25 MW × 0.5 MWh = 1 MWh
    bess = technology_of(cat["bess"])
    assert bess.sizes(Placement(kind="bess", bus="18", p_mw=0.5), cat["bess"]) == (0.5, 1.0)
    # DR: 3 modules of 0.1 MW × 0.2 MWh event budget; a generator has no energy
    assert technology_of(cat["dr"]).sizes(Placement(kind="dr", bus="18", p_mw=0.3),
                                          cat["dr"]) == pytest.approx((0.3, 0.6))
    assert technology_of(cat["gen"]).sizes(Placement(kind="gen", bus="3", p_mw=1.0),
                                           cat["gen"]) == (1.0, 0.0)
    # a device's reading before its first step is what the controller is told
    r = make_device(Placement(kind="bess", bus="18", p_mw=0.5), cat["bess"]).reading()
    assert r.soc_mwh == pytest.approx(0.5) and r.p_mw == 0.0


def test_dr_plant_curtails_no_more_than_its_bus_carries():
    cat = default_catalog()
    dev = make_device(Placement(kind="dr", bus="18", p_mw=0.2, e_mwh=0.4), cat["dr"], host_p_mw=0.09)
    assert dev.step(0.2, 60.0).p_mw == pytest.approx(0.09)
    dev.set_host_load(0.05)
    assert dev.step(0.2, 60.0).p_mw == pytest.approx(0.05)


FLYWHEEL = """
[fcm.catalog.fly]
technology = "flywheel"
p_mw_per_module = 0.1
e_mwh_per_module = 0.025
eta = 0.95
standing_loss_per_h = 0.1

[[fcm.placements]]
kind = "fly"
bus = "18"
p_mw = 0.2
e_mwh = 0.05
"""


def test_a_technology_added_by_one_module_runs_through_the_cosimulation(tmp_path):
    text = (ROOT / "scenarios" / "ieee33_ai_shock.toml").read_text()
    text = text[:text.index("[[fcm.placements]]")] + FLYWHEEL
    scenario = tmp_path / "flywheel.toml"
    scenario.write_text(text)
    env = {**os.environ, MODULES_ENV: "_fcm_flywheel",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(ROOT / "run_cosim.py"), "run", str(scenario),
                          "--hours", "0.5", "--controller", "mpc", "--out", str(out), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    ts = pd.read_parquet(out / "timeseries.parquet")
    p = ts["fcm.fly_18.p_mw"].to_numpy(float)
    e = ts["fcm.fly_18.soc_mwh"].to_numpy(float)
    assert np.abs(p).max() > 1e-3  # the MILP dispatched it
    # the plant's energy follows the flywheel's balance, step by step (Δt = 60 s)
    dt_h = 60.0 / 3600.0
    prev = np.concatenate(([0.025], e[:-1]))
    kept = (1 - 0.1 * dt_h) * prev
    expected = np.where(p > 0, kept - p * dt_h / 0.95, kept - p * 0.95 * dt_h)
    np.testing.assert_allclose(e, expected, atol=1e-9)
