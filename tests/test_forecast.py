"""Forecasters: persistence, perfect foresight (interval means), scenario-based analog ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.forecast import (
    PerfectForecaster,
    PersistenceForecaster,
    ScenarioForecaster,
    make_forecaster,
)
from controllers.interface import Measurement
from models.errors import ScenarioError


def _meas(t_s: float, p: float) -> Measurement:
    return Measurement(time_s=t_s, sub_p_mw=0.0, sub_q_mvar=0.0, bus_v_pu={},
                       campus_p_mw={"c": p}, campus_online={"c": True}, fcm={},
                       p_sched_mw=np.zeros(1))


def test_persistence_holds_the_present_draw():
    out = PersistenceForecaster().forecast(_meas(0.0, 0.7), 5, 300.0)
    assert out["c"] == pytest.approx([0.7] * 5)


def test_perfect_foresight_is_the_interval_mean_of_the_true_series():
    t = np.arange(0.0, 1200.0, 60.0)  # one sample per minute
    p = t / 60.0                      # 0, 1, 2, ... MW
    out = PerfectForecaster({"c": (t, p)}).forecast(_meas(120.0, 2.0), 3, 300.0)
    # windows [120,420) → samples 2..6, [420,720) → 7..11, [720,1020) → 12..16
    assert out["c"] == pytest.approx([4.0, 9.0, 14.0])
    # beyond the end of the series: its last value
    late = PerfectForecaster({"c": (t, p)}).forecast(_meas(1500.0, 0.0), 2, 300.0)
    assert late["c"] == pytest.approx([19.0, 19.0])


def test_scenario_forecaster_is_the_conditional_mean_of_the_nearest_samples():
    # three samples on a 300 s grid; at t = 300 s the measured draw 1.0 is nearest to the
    # first two (1.0 and 1.2), whose future changes are +0.5 and −0.1: mean +0.2
    lib = np.array([
        [[0.0, 1.0, 1.5, 1.5]],
        [[0.0, 1.2, 1.1, 1.0]],
        [[0.0, 5.0, 0.0, 0.0]],
    ])
    f = ScenarioForecaster(lib, ["c"], t0_s=0.0, lib_step_s=300.0, neighbours=2)
    out = f.forecast(_meas(300.0, 1.0), 3, 300.0)
    # step 0 is the present interval (change 0), steps 1 and 2 the means of (+0.5, −0.1)
    # and (+0.5, −0.2)
    assert out["c"] == pytest.approx([1.0, 1.2, 1.15])


def test_scenario_forecaster_from_the_shock_generator():
    from scenarios.config import DEFAULT_SCENARIO, load_scenario

    scenario = load_scenario(DEFAULT_SCENARIO).with_overrides(simulation={"hours": 2.0})
    f = make_forecaster("scenario", scenario, samples=8)
    assert f.library.shape[:2] == (8, 1)
    now = float(np.median(f.library[:, 0, 3]))
    meas = Measurement(time_s=900.0, sub_p_mw=0.0, sub_q_mvar=0.0, bus_v_pu={},
                       campus_p_mw={"campus1": now}, campus_online={"campus1": True}, fcm={},
                       p_sched_mw=np.zeros(1))
    out = f.forecast(meas, 12, 300.0)["campus1"]
    assert out.shape == (12,) and np.all(np.isfinite(out)) and np.all(out >= 0)
    assert out[0] == pytest.approx(now, abs=1e-9)  # conditioned on the present draw
    cap = scenario.campus[0].capacity_mw
    assert np.all(out <= 2 * cap)


def test_factory_rejects_unknown_kinds_and_perfect_without_data():
    with pytest.raises(ScenarioError, match="allowed: persistence, perfect, scenario"):
        make_forecaster("oracle")
    with pytest.raises(ScenarioError, match="perfect"):
        make_forecaster("perfect")
    assert isinstance(make_forecaster("persistence"), PersistenceForecaster)
