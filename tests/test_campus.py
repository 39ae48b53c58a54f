"""The SimPy campus model, one mechanism at a time (docs/campus.md).

Each test switches off every mechanism it does not look at and compares the model with a
value worked out by hand from the mechanism's definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.campus import Campus, CampusConfig, square_integral, swing_levels
from models.shock_config import ShockConfig


def quiet(**over) -> CampusConfig:
    """A campus with every stochastic mechanism off: no arrivals, empty pool, no noise,
    no swing, no checkpoints, PUE 1 (no facility load), no residual on backup."""
    base = dict(
        name="c", bus="18", capacity_mw=1.0, pue=1.0, idle_frac=0.1, inference_frac=0.0,
        inference_noise=0.0, job_rate_per_h=0.0, initial_fill=0.0, swing_frac=0.0,
        checkpoint_depth=0.0, job_ramp_s=60.0, backup_residual_frac=0.0, tap_range_pu=0.0,
        ride_through=[(0.8, 90.0)], reconnect_delay_s=600.0, reconnect_ramp_s=0.0,
    )
    base.update(over)
    return CampusConfig(**base)


def run(campus: Campus, steps: int, v=None, t0: float = 0.0, shots=()):
    """``steps`` steps from ``t0``; ``shots``: grid-fault shot records, each handed to the
    step it falls in (as FeederSim does)."""
    out = []
    dt = campus.step_s
    for k in range(steps):
        vk = v(k) if callable(v) else v
        t = t0 + k * dt
        out.append(campus.step(t, vk, [r for r in shots if t <= r["t_s"] < t + dt]))
    return out


def shot(t_s: float, v_pu: float, duration_s: float, v_unsupported_pu: float | None = None,
         fault_id: int = 0, **more) -> dict:
    """One shot of a grid fault at the POI (the record FeederSim publishes)."""
    return {"fault_id": fault_id, "t_s": t_s, "duration_s": duration_s, "v_pu": v_pu,
            "v_unsupported_pu": v_pu if v_unsupported_pu is None else v_unsupported_pu,
            "dead_s": 0.0, "lockout": False, "restored_s": math.nan, **more}


def test_job_start_is_a_ramp_of_its_size():
    cfg = quiet()
    c = Campus(cfg, step_s=10.0, rng=np.random.default_rng(0))
    run(c, 10)  # t = 0 … 100 s, idle only
    c.schedule.submit(0.3, 3600.0)  # submitted at env time 100 s, pool is free: starts now
    out = run(c, 12, t0=100.0)
    p = np.array([o.p_mw for o in out])
    idle = 0.1 * cfg.it_capacity_mw
    # ramp over 60 s = 6 steps of 10 s: step means rise by 0.3 × 10/60 = 0.05 MW per step,
    # the first step holds the ramp's first 10 s (mean 0.3 × 5/60)
    np.testing.assert_allclose(p[:6] - idle, 0.3 * (np.arange(6) * 10 + 5) / 60, atol=1e-9)
    np.testing.assert_allclose(p[6:] - idle, 0.3, atol=1e-9)
    assert [e["kind"] for e in c.events] == ["job_start"]
    assert c.events[0]["time_s"] == pytest.approx(100.0)


def test_job_stop_ramps_down_and_queue_is_fifo():
    cfg = quiet(idle_frac=0.0, inference_frac=0.5, inference_trough=1.0, job_ramp_s=0.0)
    # pool = 0.5 MW; A takes 0.4 for 600 s, B (0.3) must wait until A stops, C (0.1) fits
    # now but queues behind B (strict FIFO)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
    c.schedule.submit(0.4, 600.0)
    c.schedule.submit(0.3, 1200.0)
    c.schedule.submit(0.1, 1200.0)
    run(c, 15)
    starts = [(e["time_s"], e["size_mw"]) for e in c.events if e["kind"] == "job_start"]
    assert starts[0] == (0.0, pytest.approx(0.4))
    assert starts[1] == (pytest.approx(600.0), pytest.approx(0.3))
    assert starts[2] == (pytest.approx(600.0), pytest.approx(0.1))


def test_forecast_matches_the_run_when_nothing_unknown_happens():
    """The operator's forecast (closed-form step means) against the stepped model
    (sub-grid evaluation): running jobs stop as scheduled, a queued job starts when
    they free the pool, inference follows its diurnal shape, cooling lags."""
    cfg = quiet(pue=1.3, inference_frac=0.3, inference_trough=0.4, idle_frac=0.1,
                checkpoint_depth=0.5, checkpoint_interval_s=700.0, checkpoint_s=30.0)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
    c.schedule.submit(0.3, 1500.0)
    c.schedule.submit(0.2, 3000.0)  # waits for the first (pool 0.6·IT_cap = 0.46 MW)
    run(c, 5)
    fc = c.forecast(3600.0, 60.0)
    actual = np.array([o.p_mw for o in run(c, 60, t0=300.0)])
    np.testing.assert_allclose(fc, actual, rtol=1e-6, atol=1e-9)
    assert fc.max() - fc.min() > 0.1  # the forecast does see the stop and the queued start


def test_swing_is_mean_preserving_and_bounds_follow_amplitude():
    """A swing of amplitude s (h/l = 1 + s, here 150 %, more than the trough) leaves the
    step mean unchanged; p_max/p_min are the compute/communication levels of the job."""
    runs = {}
    for s in (0.0, 1.5):
        cfg = quiet(swing_frac=s, swing_hz=2.0, swing_duty=0.6, job_ramp_s=0.0, idle_frac=0.0)
        c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
        c.schedule.submit(0.5, 1e5)
        runs[s] = run(c, 5)
    for a, b in zip(runs[0.0], runs[1.5]):
        assert b.p_mw == pytest.approx(a.p_mw, rel=1e-9)
    o = runs[1.5][-1]
    low = 1.0 / (1.0 + 0.6 * 1.5)  # l = 1/(1 + d·s)
    assert o.p_min_mw == pytest.approx(0.5 * low)
    assert o.p_max_mw == pytest.approx(0.5 * 2.5 * low)
    assert o.p_max_mw / o.p_min_mw == pytest.approx(2.5)


def test_square_wave_window_mean_against_brute_force():
    """Exact window integral of a square wave against a fine Riemann sum, for windows
    shorter and longer than a period."""
    hi, lo = swing_levels(0.8, 0.3)
    period, duty = 1 / 0.2, 0.3
    t = np.linspace(0.0, 30.0, 3_000_001)
    u = (t / period) % 1.0
    wave = np.where(u < duty, hi, lo)
    for a, b in [(0.3, 1.3), (2.0, 2.5), (1.1, 23.7)]:
        m = (t >= a) & (t < b)
        brute = wave[m].mean()
        exact = (square_integral(b, period, duty, hi, lo) - square_integral(a, period, duty, hi, lo)) / (b - a)
        assert exact == pytest.approx(brute, abs=2e-4)


def test_checkpoint_dip():
    """A checkpoint takes the job to (1 − depth) of its size for checkpoint_s, every
    interval, the first half an interval after the start."""
    cfg = quiet(job_ramp_s=0.0, idle_frac=0.0, checkpoint_interval_s=600.0,
                checkpoint_s=60.0, checkpoint_depth=0.6)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
    c.schedule.submit(0.5, 1e5)
    p = np.array([o.p_mw for o in run(c, 20)])
    dips = np.flatnonzero(p < 0.5 - 1e-9)
    assert list(dips) == [5, 15]  # [300, 360) s and [900, 960) s
    assert p[dips] == pytest.approx(0.5 * 0.4)


def test_inference_diurnal_shape():
    cfg = quiet(idle_frac=0.0, inference_frac=0.4, inference_trough=0.5, inference_peak_hour=15.0)
    c = Campus(cfg, step_s=3600.0, rng=np.random.default_rng(0))
    p = np.array([o.p_mw for o in run(c, 24)])
    peak = 0.4 * cfg.it_capacity_mw
    # the hour ending... step k covers [k h, k+1 h), its midpoint k + 0.5 h
    assert np.argmax(p) in (14, 15) and np.argmin(p) in (2, 3)
    assert p.max() == pytest.approx(peak * (0.5 + 0.5 * 0.5 * (1 + math.cos(2 * math.pi * 0.5 / 24))))
    assert p.mean() == pytest.approx(peak * 0.75, rel=1e-9)  # m + (1 − m)/2 over a full day


def test_cooling_follows_it_with_first_order_lag():
    """After an IT step ΔIT the facility load approaches (PUE − 1)·ΔIT as 1 − e^{−t/τ}."""
    tau = 300.0
    cfg = quiet(pue=1.4, cooling_tau_s=tau, job_ramp_s=0.0, idle_frac=0.0)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
    run(c, 3)
    c.schedule.submit(0.5, 1e5)
    out = run(c, 30, t0=180.0)
    fac = np.array([o.facility_mw for o in out])
    k = np.arange(30)
    # step k's mean of 0.2·(1 − e^{−t/τ}) over [60k, 60k + 60)
    exact = 0.2 * (1 - tau / 60 * (np.exp(-60 * k / tau) - np.exp(-60 * (k + 1) / tau)))
    np.testing.assert_allclose(fac, exact, rtol=1e-9, atol=1e-12)
    assert out[-1].p_mw == pytest.approx(0.5 * 1.4, rel=1e-3)


def test_reactive_power_from_power_factor():
    c = Campus(quiet(power_factor=0.95), step_s=60.0, rng=np.random.default_rng(0))
    o = c.step(0.0, None)
    assert o.q_mvar / o.p_mw == pytest.approx(0.328684, rel=1e-5)  # tan(acos 0.95)


def test_sag_below_curve_trips_and_reconnects_after_delay():
    """Curve point (0.8 pu, 90 s): 0.79 pu for one 60-s step is tolerated, for a second
    step (120 s > 90 s) the campus trips; it reconnects 600 s later, at once."""
    c = Campus(quiet(), step_s=60.0, rng=np.random.default_rng(0))
    volts = {3: 0.79, 4: 0.79}  # the voltage of steps 2 and 3 arrives at steps 3 and 4
    out = run(c, 20, v=lambda k: volts.get(k, 1.0))
    online = [o.online for o in out]
    assert online[:4] == [True] * 4
    assert online[4:14] == [False] * 10  # trip at t = 240 s, reconnection at 840 s
    assert online[14:] == [True] * 6
    assert [o.p_mw for o in out[4:14]] == [0.0] * 10
    assert out[14].p_mw == pytest.approx(out[0].p_mw)
    (trip,) = c.trips
    assert (trip.t_s, trip.reconnect_s, trip.cause) == (240.0, 840.0, "voltage")


def test_sag_above_curve_does_not_trip():
    c = Campus(quiet(), step_s=60.0, rng=np.random.default_rng(0))
    out = run(c, 30, v=0.81)
    assert all(o.online for o in out) and not c.trips
    # short dips below the curve's voltage but shorter than its duration: no trip either
    c2 = Campus(quiet(), step_s=60.0, rng=np.random.default_rng(0))
    out2 = run(c2, 30, v=lambda k: 0.7 if k % 2 else 1.0)
    assert all(o.online for o in out2) and not c2.trips


def test_tap_changer_compensates_slow_sag_but_not_the_first_step():
    """With a ±10 % OLTC a sudden drop to 0.79 pu (from step 3 on) is seen uncompensated for
    one step, then as 0.79·1.1 = 0.869 pu."""
    volts = lambda k: 0.79 if k >= 4 else 1.0  # noqa: E731  (the reading of step k−1)
    c = Campus(quiet(tap_range_pu=0.1, ride_through=[(0.8, 30.0)]), step_s=60.0,
               rng=np.random.default_rng(0))
    out = run(c, 10, v=volts)
    assert [o.online for o in out[:4]] == [True] * 4 and out[4].online is False
    c2 = Campus(quiet(tap_range_pu=0.1, ride_through=[(0.8, 90.0)]), step_s=60.0,
                rng=np.random.default_rng(0))
    out2 = run(c2, 10, v=volts)
    assert all(o.online for o in out2) and not c2.trips


def test_run_starts_settled():
    """A campus that starts at a low but steady voltage does not trip on start-up: the
    first step's reading is mosaik's placeholder, the first measurement finds the OLTC
    settled (here at +10 %: 0.79·1.1 = 0.869 pu, above the curve)."""
    c = Campus(quiet(tap_range_pu=0.1, ride_through=[(0.8, 30.0)]), step_s=60.0,
               rng=np.random.default_rng(0))
    out = run(c, 10, v=lambda k: 1.0 if k == 0 else 0.79)
    assert all(o.online for o in out) and not c.trips


def test_ramped_reconnection():
    cfg = quiet(reconnect_ramp_s=300.0, reconnect_delay_s=600.0, idle_frac=0.2,
                ride_through=[(0.8, 30.0)])
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
    out = run(c, 25, v=lambda k: 0.5 if k == 1 else 1.0)
    assert [tr.t_s for tr in c.trips] == [60.0]
    p = np.array([o.p_mw for o in out])
    full = 0.2 * cfg.it_capacity_mw
    # 0.5 pu during step 0 (60 s > 30 s below 0.8 pu): trip at 60 s, back at 660 s,
    # linear over 300 s: step means (k + ½)/5 of the load for the 5 steps from 660 s
    assert p[1:11] == pytest.approx([0.0] * 10)
    np.testing.assert_allclose(p[11:16] / full, (np.arange(5) + 0.5) / 5, atol=1e-9)
    assert p[16:] == pytest.approx([full] * 9)


def test_a_shot_below_curve_trips_mid_step():
    """A grid fault's shot below the curve trips the campus at the shot's own time: that
    step's mean holds the part before the trip."""
    cfg = quiet(ride_through=[(0.5, 0.1)], reconnect_delay_s=1e6)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(3))
    out = run(c, 60, shots=[shot(1234.5, 0.3, 0.2)])
    (trip,) = c.trips
    assert trip.cause == "disturbance" and trip.t_s == 1234.5 and trip.fault_id == 0
    k = int(trip.t_s // 60)
    full = cfg.idle_frac * cfg.it_capacity_mw
    # within-step resolution is 1/8 of a swing period (here 1/8 s)
    assert out[k].p_mw == pytest.approx(full * (trip.t_s - 60 * k) / 60, abs=full / 480)
    assert not out[k].online and all(o.online for o in out[:k])


def test_the_campus_oltc_ratio_applies_to_the_fault_voltage():
    """A shot that holds the POI at 0.55 of its pre-fault voltage for 0.2 s, against a curve
    point (0.5 pu, 0.1 s), OLTC ±10 %. POI at 0.95 pu: the OLTC brings the UPS input to 1.0,
    the sag reaches it as 0.55 pu and the campus rides through. POI held at 0.80 pu: the
    OLTC reaches only 1.1 × 0.80 = 0.88 pu, the sag is 0.55 × 0.88 = 0.484 pu and trips it."""
    cfg = quiet(ride_through=[(0.5, 0.1)], tap_range_pu=0.1, sag_count_trip=0)
    strong = Campus(cfg, step_s=60.0, rng=np.random.default_rng(5))
    run(strong, 60, v=0.95, shots=[shot(600.0 * k + 30.0, 0.55 * 0.95, 0.2, fault_id=k)
                                   for k in range(1, 6)])
    sags = [e for e in strong.events if e["kind"] == "sag"]
    assert len(sags) == 5 and not strong.trips
    assert all(e["v_pu"] == pytest.approx(0.55) for e in sags)
    weak = Campus(cfg, step_s=60.0, rng=np.random.default_rng(5))
    run(weak, 60, v=0.80, shots=[shot(630.0, 0.55 * 0.80, 0.2)])
    assert weak.trips and weak.trips[0].cause == "disturbance"
    assert weak.trips[0].v_pu == pytest.approx(0.55 * 1.1 * 0.80)


def test_an_interruption_and_a_lockout_move_the_campus_to_backup_until_restored():
    """On a bus its protective device isolates, the dead time after a shot is an
    interruption (0 V for 5 s, far below the curve point (0.7 pu, 0.02 s)): the campus
    trips at the clearing, although the sag itself (0.75 pu for 0.1 s) is within the
    curve. A lockout holds it on backup until the section is restored, whatever its own
    reconnection delay."""
    cfg = quiet(ride_through=[(0.7, 0.02), (0.8, 0.5)], sag_count_trip=0,
                reconnect_delay_s=600.0)
    c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(5))
    run(c, 10, v=1.0, shots=[shot(100.0, 0.75, 0.1, dead_s=5.0)])
    (tr,) = c.trips
    assert (tr.cause, tr.t_s, tr.reconnect_s) == ("interruption", pytest.approx(100.1),
                                                 pytest.approx(700.1))
    lock = Campus(cfg, step_s=60.0, rng=np.random.default_rng(5))
    run(lock, 10, v=1.0, shots=[shot(100.0, 0.75, 0.1, lockout=True, restored_s=5000.0)])
    (tr,) = lock.trips
    assert (tr.cause, tr.reconnect_s) == ("lockout", 5000.0)


def test_same_seed_same_run_different_seed_different_run():
    cfg = CampusConfig(bus="18", capacity_mw=100.0)
    sh = ShockConfig(surge_rate_per_day=24, oscillation_rate_per_day=24)

    def trace(seed):
        c = Campus(cfg, 300.0, np.random.default_rng(seed), shocks=sh)
        return [(o.p_mw, o.p_min_mw, o.p_max_mw, o.online) for o in run(c, 48)]

    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_default_campus_stays_within_plausible_bounds():
    """A default 100 MW campus over a day: the draw stays between the idle floor and a
    little above capacity (swings and noise), and jobs start and stop."""
    cfg = CampusConfig(bus="1", capacity_mw=100.0)
    c = Campus(cfg, 300.0, np.random.default_rng(1))
    out = run(c, 288)
    p = np.array([o.p_mw for o in out])
    assert p.min() > cfg.idle_frac * 100.0
    assert p.max() < 110.0
    kinds = {e["kind"] for e in c.events}
    assert {"job_start", "job_stop"} <= kinds


def test_repeated_sags_within_the_curve_trip_the_campus():
    """Three sags that each lie within the ride-through curve (0.85 pu for 0.1 s) but come
    within 60 s move the campus to backup (the reclosing sequence of 10 July 2024); two do
    not, nor do three spread over more than the window."""
    cfg = quiet(ride_through=[(0.5, 0.02)], sag_count_trip=3, sag_count_v_pu=0.9,
                sag_count_window_s=60.0)

    def trips(times):
        c = Campus(cfg, step_s=60.0, rng=np.random.default_rng(0))
        for k, t in enumerate(times):
            c.schedule.run_until(t)
            c.schedule.shot(shot(t, 0.85, 0.1, fault_id=k))
        return [(tr.t_s, tr.cause) for tr in c.trips]

    assert trips([10.0, 25.0, 40.0]) == [(40.0, "repeated_sags")]
    assert trips([10.0, 25.0]) == []
    assert trips([10.0, 50.0, 90.0]) == []
    never = Campus(quiet(sag_count_trip=0), 60.0, np.random.default_rng(0))
    for t in (1.0, 2.0, 3.0):
        never.schedule.shot(shot(t, 0.85, 0.1))
    assert not never.trips


@settings(max_examples=60, deadline=None)
@given(
    size=st.floats(0.01, 100.0), start=st.floats(0.0, 5000.0), length=st.floats(1.0, 20000.0),
    ramp_s=st.floats(0.0, 900.0), step=st.sampled_from([1.0, 60.0, 300.0]),
)
def test_job_energy_is_size_times_duration(size, start, length, ramp_s, step):
    """Law: whatever the ramp and the step, the step means of one job integrate to
    size × (stop − start): the ramp-down gives back exactly what the ramp-up missed."""
    from models.campus import JobArrays, training_step_means

    cfg = quiet(job_ramp_s=ramp_s)
    edges = np.arange(0.0, start + length + ramp_s + 2 * step, step)
    jobs = JobArrays(np.array([size]), np.array([start]), np.array([start + length]))
    energy = training_step_means(edges, jobs, cfg).sum() * step
    assert energy == pytest.approx(size * length, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(a=st.floats(0.0, 0.999), n=st.integers(1, 700), y0=st.floats(-5, 5), seed=st.integers(0, 99))
def test_block_recurrence_equals_the_loop(a, n, y0, seed):
    from models.campus import linear_recurrence

    u = np.random.default_rng(seed).normal(size=n)
    y, state = np.empty(n), y0
    for k in range(n):
        y[k] = state
        state = a * state + u[k]
    np.testing.assert_allclose(linear_recurrence(u, a, y0), y, rtol=1e-9, atol=1e-9)


def test_a_diverged_power_flow_is_no_measurement():
    """A NaN reading neither counts as time below the curve nor resets it."""
    c = Campus(quiet(), step_s=60.0, rng=np.random.default_rng(0))
    volts = [1.0, 0.79, math.nan, 0.79, 1.0]
    out = [c.step(60.0 * k, v) for k, v in enumerate(volts)]
    assert [o.online for o in out] == [True, True, True, False, False]
    assert c.trips[0].duration_s == 120.0


def _dense_step_means(edges, jobs, trips, cfg):
    """The closed forms over every (job, step) and (trip, step) pair at once, as the model
    evaluated them before it kept to each one's window: the reference."""
    from models.campus import _checkpoint_mean, ramp_integral

    e, r = edges[None, :], cfg.job_ramp_s
    on = ramp_integral(e, jobs.start_s[:, None], r) - ramp_integral(e, jobs.stop_s[:, None], r)
    mean = jobs.size_mw[:, None] * np.diff(on, axis=1) / np.diff(edges)[None, :]
    ck = _checkpoint_mean(edges, jobs.start_s, cfg)
    train = (mean if ck is None else mean * ck).sum(axis=0)
    off = np.maximum(e - trips.trip_s[:, None], 0.0)
    back = ramp_integral(e, trips.reconnect_s[:, None], trips.ramp_s[:, None])
    kappa = np.clip((1.0 - np.diff(off - back, axis=1) / np.diff(edges)[None, :]).min(axis=0), 0, 1)
    return train, kappa


@pytest.mark.parametrize("step", [1.0, 60.0, 3600.0])
def test_windowed_step_means_equal_the_dense_closed_forms(step, monkeypatch):
    """Jobs and trips evaluated only on the steps they overlap, in chunks of a few pairs,
    give the dense evaluation's step means (to round-off)."""
    import models.campus as mc

    cfg = CampusConfig(name="c", bus="18", capacity_mw=10.0, job_rate_per_h=6.0,
                       checkpoint_interval_s=900.0, checkpoint_s=60.0, reconnect_delay_s=300.0,
                       reconnect_ramp_s=120.0)
    sch = mc.Schedule(cfg, np.random.default_rng(3), 5000.0, ShockConfig())
    edges = 5000.0 + step * np.arange(int(6 * 3600 / step) + 1)
    sch.grid_shots([shot(5000.0 + 1800.0 * k + 7.0, 0.3, 0.2, fault_id=k) for k in range(12)])
    sch.run_until(float(edges[-1]))
    jobs, trips = sch.job_arrays(), sch.trip_arrays()
    assert len(jobs.size_mw) > 5 and len(trips.trip_s) > 2
    train, kappa = _dense_step_means(edges, jobs, trips, cfg)
    monkeypatch.setattr(mc._pairs, "__defaults__", (7,))  # many small chunks
    np.testing.assert_allclose(mc.training_step_means(edges, jobs, cfg), train, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mc.connection_step_means(edges, trips), kappa, rtol=0, atol=1e-9)


def test_a_year_of_step_means_stays_small_in_memory():
    """A leap year of 300-s steps with the default job law: the dense evaluation needed
    jobs × steps floats (about 5 GiB, issue 14); the windows need a few MB."""
    import tracemalloc

    from models.campus import Schedule, training_step_means

    cfg = CampusConfig(name="c", bus="18", capacity_mw=10.0)
    sch = Schedule(cfg, np.random.default_rng(0), 0.0, None)
    edges = 300.0 * np.arange(8784 * 12 + 1)
    sch.run_until(float(edges[-1]))
    jobs = sch.job_arrays()
    assert len(jobs.size_mw) > 5000
    tracemalloc.start()
    out = training_step_means(edges, jobs, cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"
    assert np.all(out >= 0) and out.max() <= cfg.pool_mw * (1 + 1e-9)
