"""KPIs on a six-step time series where every value is worked out by hand below.

Δt = 120 s (not 60, so a hidden 60-s assumption would show), ramp limit 0.5 MW/min, hence
R·Δt = 1.0 MW per step; energies are MW·steps × 120/3600 = MW·steps / 30.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scenarios.config import validate_scenario
from scenarios.kpis import KPI_KEYS, compute_kpis, ramp_excess_mw, write_kpis

NAN = math.nan


def scenario(step_s: int = 120):
    return validate_scenario({
        "name": "hand", "simulation": {"hours": 0.2, "step_s": step_s},
        "grid": {"v_min_pu": 0.95, "v_max_pu": 1.05, "ramp_limit_mw_per_min": 0.5,
                 "max_loading_pct": 100.0},
        "campus": [{"name": "c1", "bus": "3", "capacity_mw": 3.0}],
    }, "<test>")


def hand_series(step_s: int = 120) -> pd.DataFrame:
    t = np.arange(6) * step_s
    return pd.DataFrame({
        "pf.converged": [True, True, True, False, True, True],
        "sub.p_mw": [5.0, 5.5, 8.0, NAN, 6.5, 5.0],
        "sub.p_sched_mw": [5.0] * 6,
        "sub.p_shed_mw": [0, 0, 0, 0, 0.6, 0],
        "dc.c1.p_mw": [1.0, 1.0, 0.0, 0.0, 3.0, 1.0],
        "dc.c1.p_demand_mw": [1.0, 1.0, 3.0, 3.0, 3.0, 1.0],
        "dc.c1.online": [True, True, False, False, True, True],
        "bus.1.v_pu": [1.0, 1.06, 1.0, NAN, 1.0, 1.0],
        "bus.2.v_pu": [0.97, 0.96, 0.93, 0.5, 0.94, 1.0],  # 0.5 at the diverged step: ignored
        "pred.bus.1.v_pu": [NAN, 1.05, 1.0, 0.9, NAN, NAN],
        "pred.bus.2.v_pu": [NAN, 0.965, 0.95, NAN, 0.94, NAN],
        "line.L1.loading_pct": [50.0, 60.0, 120.0, 300.0, 101.0, 80.0],
        "fcm.bess_3.cost": [0, 1, 2, NAN, 1, 0],
        "fcm.gen_2.cost": [0, 0, 10, 10, 5, 0],
        "ctrl.solved": [True, False, True, False, False, True],
        "ctrl.fallback": [False, False, True, False, False, False],
        "ctrl.solve_s": [0.4, 0.0, 1.0, 0.0, 0.0, 0.1],
    }, index=pd.Index(t, name="time_s"))


def test_every_kpi_by_hand() -> None:
    k = compute_kpis(hand_series(), scenario(), extra={"wall_s": 12.5})
    assert set(KPI_KEYS) <= set(k)
    # campus gap 3 + 3 MW·steps (the trip) + 0.6 shed background → 6.6 / 30
    assert k["unserved_energy_mwh"] == pytest.approx(6.6 / 30)
    # |dev| 0 + 0.5 + 3 + (diverged, skipped) + 1.5 + 0 = 5 MW·steps
    assert k["imbalance_mwh"] == pytest.approx(5 / 30)
    # |ΔP| 0.5, 2.5, –, –, 1.5 against 1.0 MW/step → excess 1.5 + 0.5
    assert k["ramp_violation_mwh"] == pytest.approx(2.0 / 30)
    assert k["ramp_violation_steps"] == 2
    # bus 1 at step 1 (1.06), bus 2 at steps 2 (0.93) and 4 (0.94); step 3 excluded
    assert k["voltage_violation_bus_steps"] == 3
    assert k["v_min_pu"] == pytest.approx(0.93) and k["v_max_pu"] == pytest.approx(1.06)
    assert k["thermal_violation_line_steps"] == 2  # 120 and 101 %; 300 % was not converged
    assert k["max_line_loading_pct"] == pytest.approx(120.0)
    # normal at steps 0 and 5 only → 4 steps × 120 s, one episode
    assert k["restoration_time_s"] == pytest.approx(480.0)
    assert k["restoration_episodes"] == 1
    assert k["restoration_import_band_mw"] == pytest.approx(0.25)  # 5 % of the 5 MW schedule
    assert k["fcm_operating_cost"] == pytest.approx(4 + 25)
    assert k["pf_nonconverged_steps"] == 1
    assert k["controller_solves"] == 3 and k["controller_fallbacks"] == 1
    assert k["controller_solve_s_median"] == pytest.approx(0.4)
    assert k["controller_solve_s_max"] == pytest.approx(1.0)
    # errors 0.01, 0.0 (bus 1) and 0.005, 0.02, 0.0 (bus 2); step 3 not converged
    ac = k["ac_validation"]
    assert ac["max_abs_v_error_pu"] == pytest.approx(0.02)
    assert ac["mean_abs_v_error_pu"] == pytest.approx(0.035 / 5)
    assert ac["points"] == 5 and ac["steps"] == 3
    assert k["campus_trips"] == 1
    assert k["steps"] == 6 and k["wall_s"] == 12.5


def test_energies_follow_the_scenario_step() -> None:
    """Same values at Δt = 60 s: energies halve; the ramp allowance R·Δt halves to 0.5 MW."""
    k = compute_kpis(hand_series(60), scenario(60))
    assert k["unserved_energy_mwh"] == pytest.approx(6.6 / 60)
    assert k["imbalance_mwh"] == pytest.approx(5 / 60)
    # excess 2.5 − 0.5 and 1.5 − 0.5; 0.5 is not above 0.5
    assert k["ramp_violation_mwh"] == pytest.approx(3.0 / 60)
    assert k["restoration_time_s"] == pytest.approx(240.0)


def test_wider_import_band_shortens_restoration() -> None:
    ts = hand_series()
    ts.loc[120, "bus.1.v_pu"] = 1.0  # step 1 is now abnormal only through its 0.5 MW deviation
    assert compute_kpis(ts, scenario())["restoration_time_s"] == pytest.approx(480.0)
    assert compute_kpis(ts, scenario(), import_band_mw=0.6)["restoration_time_s"] == \
        pytest.approx(360.0)


def test_no_controller_no_fcm_no_prediction(tmp_path) -> None:
    ts = hand_series().drop(columns=[c for c in hand_series().columns
                                     if c.startswith(("ctrl.", "fcm.", "pred."))])
    k = compute_kpis(ts, scenario())
    assert k["controller_solves"] == 0 and math.isnan(k["controller_solve_s_median"])
    assert k["fcm_operating_cost"] == 0.0
    assert math.isnan(k["ac_validation"]["max_abs_v_error_pu"])
    path = write_kpis(tmp_path, k)
    data = json.loads(path.read_text())  # strict JSON: NaN became null
    assert data["controller_solve_s_median"] is None
    assert data["ac_validation"]["mean_abs_v_error_pu"] is None
    assert data["voltage_violation_bus_steps"] == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=30),
       st.floats(0.01, 5.0))
def test_ramp_excess_is_zero_exactly_when_every_step_is_within_the_limit(p, r):
    """x_t = max(0, |ΔP_t| − RΔt): zero iff every |ΔP| ≤ RΔt, and x_t + RΔt ≥ |ΔP_t|."""
    p = np.asarray(p)
    x = ramp_excess_mw(p, r / 60.0, 60.0)
    dp = np.abs(np.diff(p))
    limit = r / 60.0 * 60.0  # R Δt as the KPI forms it (it may differ from r in the last bit)
    assert (x.sum() == 0) == bool(np.all(dp <= limit))
    assert np.all(x[1:] + r >= dp - 1e-9)
