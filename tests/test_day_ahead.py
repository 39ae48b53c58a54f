"""What the day-ahead schedule is made of, without mosaik: the campuses' expected draw
(against hand-computed means) and the base case in OpenDSS (against published losses)."""

from __future__ import annotations

import numpy as np
import pytest

from models.campus import CampusConfig
from models.day_ahead import BaseCase, campus_shares, expected_campus_mw
from models.errors import ScenarioError
from models.feeder import DSSFeeder

# no training jobs, no noise: the draw is the idle floor and inference, times PUE
STEADY = dict(bus="18", capacity_mw=10.0, pue=1.25, idle_frac=0.2, inference_frac=0.25,
              inference_noise=0.0, job_rate_per_h=0.0, initial_fill=0.0)


def test_flat_campus_draw_is_its_floor_times_pue():
    c = CampusConfig(**STEADY, inference_trough=1.0)
    # IT capacity 10/1.25 = 8 MW; (0.2 + 0.25) × 8 MW of IT × 1.25 = 4.5 MW at the grid
    np.testing.assert_allclose(expected_campus_mw(c, 42, 6 * 3600.0, 3600.0, 3), 4.5, rtol=1e-9)
    # a block that is not a multiple of 300 s is one sub-step
    np.testing.assert_allclose(expected_campus_mw(c, 1, 0.0, 1000.0, 2), 4.5, rtol=1e-9)


def test_diurnal_inference_block_means():
    c = CampusConfig(**{**STEADY, "pue": 1.0}, inference_trough=0.6, inference_peak_hour=15.0)
    got = expected_campus_mw(c, 7, 0.0, 3600.0, 24)
    # P = idle + inference · g(h), g = m + (1 − m)(1 + cos(2π(h − 15)/24))/2, IT = 10 MW;
    # hour block [h, h + 1): mean of cos = 24/(2π) · (sin(2π(h + 1 − 15)/24) − sin(2π(h − 15)/24))
    h = np.arange(24.0)
    w = 2 * np.pi / 24
    mean_cos = (np.sin(w * (h + 1 - 15)) - np.sin(w * (h - 15))) / w
    g = 0.6 + 0.4 * 0.5 * (1 + mean_cos)
    # (the model integrates each 300-s sub-step numerically: a few ppm from the exact mean)
    np.testing.assert_allclose(got, 2.0 + 2.5 * g, rtol=1e-5)


def test_campus_shares_split_the_total_by_mean_draw():
    a = CampusConfig(name="a", bus="18", capacity_mw=10.0, power_factor=0.8)
    b = CampusConfig(name="b", bus="33", capacity_mw=10.0, power_factor=1.0)
    c = CampusConfig(name="c", bus="18", capacity_mw=10.0, power_factor=0.6)
    shares = campus_shares([a, b, c], {"a": np.array([1.0, 3.0]), "b": np.array([4.0]),
                                       "c": np.array([2.0])})
    # means 2, 4, 2 of 8 MW; tan φ = 0.75 (pf 0.8), 0 (pf 1), 4/3 (pf 0.6)
    assert list(shares) == ["18", "33"]
    assert shares["18"] == pytest.approx((0.5, 0.25 * 0.75 + 0.25 * 4 / 3))
    assert shares["33"] == pytest.approx((0.5, 0.0))


def test_base_case_losses_and_campus_injection():
    feeder = DSSFeeder.open("ieee33")
    campus = CampusConfig(name="a", bus="18", capacity_mw=1.0, power_factor=0.8)
    base = BaseCase(feeder, [campus], {"a": np.array([0.5])})
    # Baran & Wu, IEEE Trans. Power Delivery 4(2), 1989: 202.67 kW at the nominal load
    assert base.losses_mw(1.0, 0.0) * 1e3 == pytest.approx(202.67, rel=0.005)
    res = base.solve(0.5, 0.4)
    assert feeder.injections["sched0"] == pytest.approx((0.4, 0.3))  # Q = 0.4 × tan φ, pf 0.8
    assert feeder.load_scale == 0.5 and res.converged
    # the campus adds to the import: background at half load + 0.4 MW + losses (to 1 kW:
    # the balance OpenDSS's solution tolerance leaves, DESIGN.md §2a)
    assert res.sub_p_mw == pytest.approx(0.5 * feeder.data.total_load_mw + 0.4 + res.losses_mw,
                                         abs=1e-3)


def test_base_case_that_fails_is_bad_input():
    # two power-flow iterations are not enough for the loaded ieee33: the flow diverges
    feeder = DSSFeeder.open("ieee33", extra_commands=("set maxiterations=2",))
    campus = CampusConfig(name="a", bus="18", capacity_mw=1.0)
    base = BaseCase(feeder, [campus], {"a": np.array([1.0])}, source="s.toml")
    with pytest.raises(ScenarioError) as err:
        base.solve(1.0, 1.2)
    assert err.value.source == "s.toml" and err.value.field == "grid.background_load_scale"
    assert "fails in OpenDSS (diverged" in err.value.message
