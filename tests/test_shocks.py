"""The seeded shock generator: determinism, its event frequencies against the configured
probabilities (Poisson and binomial bounds), its agreement with the stepped SimPy campus,
and the GW scenario's size."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.campus import Campus
from models.shocks import (_upstream_shots, generate_shocks, sample_campus_trajectories,
                          sample_fault_rng, sample_rng, shock_events)
from scenarios.config import SCENARIO_DIR, load_scenario, validate_scenario

Z = 4.0  # bounds at 4 standard deviations: a correct generator fails about once in 16 000


def scenario(campus=None, shocks=None, hours=24.0, step_s=60, faults=None):
    c = dict(name="dc", bus="18", capacity_mw=10.0)
    c.update(campus or {})
    return validate_scenario(
        {"campus": [c], "shocks": shocks or {}, "faults": faults or {},
         "simulation": {"hours": hours, "step_s": step_s}},
        "test.toml",
    )


def test_columns_steps_and_units():
    sc = scenario(hours=2.0)
    df = generate_shocks(sc, samples=3, seed=1)
    assert {"sample", "time_s", "campus", "p_mw", "q_mvar", "online"} <= set(df.columns)
    assert len(df) == 3 * 120
    assert sorted(df["sample"].unique()) == [0, 1, 2]
    np.testing.assert_array_equal(df.loc[df["sample"] == 0, "time_s"], 60.0 * np.arange(120))
    np.testing.assert_allclose(df["q_mvar"], df["p_mw"] * math.tan(math.acos(0.98)))
    assert (df["p_min_mw"] <= df["p_mw"] + 1e-12).all() and (df["p_max_mw"] >= df["p_mw"] - 1e-12).all()
    traj = sample_campus_trajectories(sc, samples=3, seed=1, step_s=300.0, hours=1.0)
    assert traj.shape == (3, 1, 12)


def test_same_seed_same_samples_different_seed_different():
    sc = scenario(hours=6.0)
    a = generate_shocks(sc, samples=4, seed=11)
    b = generate_shocks(sc, samples=4, seed=11)
    pd.testing.assert_frame_equal(a, b)
    c = generate_shocks(sc, samples=4, seed=12)
    assert not np.allclose(a["p_mw"].to_numpy(), c["p_mw"].to_numpy())
    # a sample does not depend on how many others are drawn
    small = sample_campus_trajectories(sc, samples=2, seed=11)
    big = sample_campus_trajectories(sc, samples=5, seed=11)
    np.testing.assert_array_equal(small, big[:2])


def test_event_frequencies_match_configured_probabilities():
    """Over 200 sample-days: Poisson counts of surges, oscillation episodes and upstream
    faults (one shot each; the faults come from the second step on, 1439 of 1440 minutes);
    the binomial share of shots below the curve (hand-computed: with retained voltage
    U(0.3, 0.9) and a single curve point (0.6 pu, 0 s) it is exactly 1/2), of at-once
    reconnections (0.3), and of samples with at least one trip (1 − e^{−λ·p·T})."""
    n, days = 200, 1.0
    rates = {"surge": 4.0, "oscillation": 6.0, "sag": 5.0 * 1439 / 1440}
    sc = scenario(
        campus={"ride_through": [[0.6, 0.0]], "sag_count_trip": 0, "reconnect_delay_s": 60.0},
        shocks={"surge_rate_per_day": rates["surge"], "oscillation_rate_per_day": rates["oscillation"],
                "reconnect_at_once_prob": 0.3},
        faults={"transmission_per_day": 5.0, "temporary_shots": [1, 1], "permanent_prob": 0.0,
                "transmission_retained_pu": [0.3, 0.9]},
    )
    ev = shock_events(sc, samples=n, seed=5)
    for kind, rate in rates.items():
        mean = rate * days * n
        assert abs((ev["kind"] == kind).sum() - mean) <= Z * math.sqrt(mean), kind

    sags = ev[ev["kind"] == "sag"]
    share = sags["below_curve"].mean()
    assert abs(share - 0.5) <= Z * math.sqrt(0.25 / len(sags))

    trips = ev[ev["kind"] == "trip"]
    assert len(trips) <= sags["below_curve"].sum()
    at_once = (trips["ramp_s"] == 0).mean()
    assert abs(at_once - 0.3) <= Z * math.sqrt(0.3 * 0.7 / len(trips))

    p_any = 1 - math.exp(-rates["sag"] * 0.5 * days)
    seen = trips["sample"].nunique() / n
    assert abs(seen - p_any) <= Z * math.sqrt(p_any * (1 - p_any) / n)


def test_trajectories_show_the_trips():
    """While on backup a sample draws only the residual and reports offline; a trip with
    an at-once reconnection comes back as a jump (the reconnection surge)."""
    sc = scenario(
        campus={"ride_through": [[0.6, 0.0]], "reconnect_delay_s": 1800.0, "reconnect_ramp_s": 0.0,
                "backup_residual_frac": 0.02},
        shocks={"reconnect_at_once_prob": 1.0}, faults={"transmission_per_day": 6.0},
        hours=12.0,
    )
    df = generate_shocks(sc, samples=5, seed=3)
    ev = shock_events(sc, samples=5, seed=3)
    trips = ev[ev["kind"] == "trip"]
    assert len(trips) > 0
    for _, tr in trips.iterrows():
        s = df[df["sample"] == tr["sample"]].set_index("time_s")
        inside = s.loc[(s.index >= tr["time_s"] + 60) & (s.index + 60 <= tr["time_s"] + 1800)]
        assert not inside["online"].any()
        before = s.loc[s.index < tr["time_s"] - 60, "p_mw"]
        if len(before):
            assert inside["p_mw"].max() < 0.05 * before.iloc[-1]
        back = s.loc[(s.index >= tr["time_s"] + 1800 + 60) & (s.index < tr["time_s"] + 1800 + 120)]
        if len(back) and back["online"].all():
            assert back["p_mw"].iloc[0] > 10 * inside["p_mw"].max()


def test_generator_agrees_with_the_stepped_simpy_campus():
    """Same random streams, no inference noise: the closed-form sample and the SimPy
    campus stepped through the day (no POI voltage) see the same events, the same online
    flags, and the same draw up to the within-step approximations (partial swing cycles,
    products of step means; docs/campus.md)."""
    sc = scenario(campus={"inference_noise": 0.0}, shocks={"oscillation_rate_per_day": 6.0},
                  faults={"transmission_per_day": 8.0})
    samples, seed = 2, 9
    df = generate_shocks(sc, samples=samples, seed=seed)
    cap = sc.campus[0].capacity_mw
    edges = 60.0 * np.arange(1441)
    for s in range(samples):
        c = Campus(sc.campus[0], 60.0, sample_rng(seed, s, 0), 0.0, sc.shocks)
        shots = _upstream_shots(sc, sample_fault_rng(seed, s), edges)
        assert shots
        out = [c.step(60.0 * k, None, [r for r in shots if 60.0 * k <= r["t_s"] < 60.0 * (k + 1)])
               for k in range(1440)]
        g = df[df["sample"] == s]
        p = np.array([o.p_mw for o in out])
        np.testing.assert_array_equal(g["online"].to_numpy(), [o.online for o in out])
        assert np.abs(p - g["p_mw"].to_numpy()).max() <= 0.01 * cap
        assert p.sum() == pytest.approx(g["p_mw"].sum(), rel=1e-4)


def test_gw_scenario_peaks_near_one_gw():
    sc = load_scenario(SCENARIO_DIR / "ieee33_gw_shock.toml")
    traj = sample_campus_trajectories(sc, samples=10, seed=sc.seed)
    assert traj.shape == (10, 1, 1440)
    assert 900.0 <= traj.max() <= 1100.0
    assert 600.0 <= traj.mean() <= 950.0


def test_several_campuses_are_independent_columns():
    sc = validate_scenario(
        {"campus": [{"name": "a", "bus": "18", "capacity_mw": 1.0},
                    {"name": "b", "bus": "33", "capacity_mw": 5.0}],
         "simulation": {"hours": 2.0}},
        "two.toml",
    )
    df = generate_shocks(sc, samples=2, seed=4)
    assert len(df) == 2 * 2 * 120
    peak = df.groupby("campus", observed=True)["p_mw"].max()
    assert peak["a"] <= 1.1 and 1.0 < peak["b"] <= 5.5
    traj = sample_campus_trajectories(sc, samples=2, seed=4)
    assert traj.shape == (2, 2, 120)
    np.testing.assert_allclose(traj[:, 1, :], df[df["campus"] == "b"]["p_mw"].to_numpy().reshape(2, 120))
