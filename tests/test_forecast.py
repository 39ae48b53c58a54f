"""Forecasters: persistence, perfect foresight (interval means), scenario-based analog ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.forecast import (
    OperatorForecaster,
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


def _meas_fc(p: float, published) -> Measurement:
    return Measurement(time_s=600.0, sub_p_mw=0.0, sub_q_mvar=0.0, bus_v_pu={},
                       campus_p_mw={"c": p, "d": 0.4}, campus_online={"c": True, "d": True},
                       fcm={}, p_sched_mw=np.zeros(1), campus_forecast_mw=published)


def test_operator_forecast_is_resampled_by_interval_means_and_held_past_its_end():
    # published 300 s means 1, 2, 3, 4 MW (a planned reconnection at +600 s, say)
    f = OperatorForecaster(300.0)
    m = _meas_fc(0.5, {"c": np.array([1.0, 2.0, 3.0, 4.0])})
    # same grid: the published values themselves
    assert f.forecast(m, 4, 300.0)["c"] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    # 600 s steps: (1+2)/2, (3+4)/2, then held at 4
    assert f.forecast(m, 3, 600.0)["c"] == pytest.approx([1.5, 3.5, 4.0])
    # 450 s steps: [0,450) = (300·1 + 150·2)/450, [450,900) = (150·2 + 300·3)/450,
    # [900,1350) = (300·4 + 150·4)/450
    assert f.forecast(m, 3, 450.0)["c"] == pytest.approx([600 / 450, 1200 / 450, 4.0])
    # 60 s steps inside the first published step: 1 MW each
    assert f.forecast(m, 6, 60.0)["c"] == pytest.approx([1.0] * 5 + [2.0])
    # campus "d" publishes nothing: persistence, and counted
    assert f.forecast(m, 2, 300.0)["d"] == pytest.approx([0.4, 0.4])


def test_operator_forecast_falls_back_to_persistence_when_absent_or_empty():
    f = OperatorForecaster(300.0)
    for published in ({}, {"c": np.array([])}, {"c": np.array([1.0, np.nan])}):
        assert f.forecast(_meas_fc(0.7, published), 3, 300.0)["c"] == pytest.approx([0.7] * 3)
    assert f.fallbacks == 6  # 3 × ("c" and "d")


def test_operator_forecaster_is_selectable_in_the_config():
    from controllers.config import ControllerConfig

    assert ControllerConfig(forecaster="operator").forecaster == "operator"
    assert isinstance(make_forecaster("operator", step_s=300.0), OperatorForecaster)
    with pytest.raises(ScenarioError, match="operator"):
        make_forecaster("crystal-ball")
