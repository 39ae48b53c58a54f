"""Campus.step's shortcuts change no number.

:meth:`models.campus.Campus.step` skips work that cannot change a result (cached job and
trip arrays, one scalar swing wave without an oscillation episode, envelopes only for jobs
ramping in the step, finished trips out of the connection minimum). The oracle here is the
plain vectorised evaluation every step (every job, every trip, the swing parameters per
sub-interval), run on a twin campus with the same stream; the outputs must be equal to the
last bit, through jobs, surges, oscillation episodes, the shots of grid faults, voltage
trips and both kinds of reconnection.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.campus import (
    MAX_SUBSTEPS,
    ONLINE_EPS_S,
    Campus,
    CampusConfig,
    CampusOutput,
    JobArrays,
    _checkpoint_mean,
    _ramp_at,
    connection,
    diurnal,
    ramp,
    square_integral,
    swing_levels,
)
from models.faults.config import FaultLaw
from models.faults.draws import draw_faults, upstream_shot_records
from models.shock_config import ShockConfig


def reference_step(c: Campus, t_s: float, v_poi_pu: float | None, shots=()) -> CampusOutput:
    """The full evaluation of one step, with no shortcut (Campus.step before caching)."""
    cfg, dt = c.config, c.step_s
    c._voltage_check(t_s, v_poi_pu)
    sch = c.schedule
    sch.grid_shots(shots)
    sch.run_until(t_s + dt)
    c._t_next = t_s + dt
    hz_max = max([cfg.swing_hz] + [hz for t0, t1, _, hz in sch.episodes if t1 > t_s and t0 < t_s + dt])
    n = int(min(MAX_SUBSTEPS, max(1, math.ceil(dt / min(1.0, 1.0 / (8 * hz_max))))))
    edges = t_s + dt * np.arange(n + 1) / n
    mid = 0.5 * (edges[:-1] + edges[1:])
    h_dt = dt / n
    jobs = sch.job_arrays()
    live = (jobs.stop_s + cfg.job_ramp_s >= t_s) & (jobs.start_s <= t_s + dt)
    jobs = JobArrays(jobs.size_mw[live], jobs.start_s[live], jobs.stop_s[live])
    if len(jobs.size_mw):
        env = (ramp(mid[None, :], jobs.start_s[:, None], cfg.job_ramp_s)
               - ramp(mid[None, :], jobs.stop_s[:, None], cfg.job_ramp_s))
        ck = _checkpoint_mean(edges, jobs.start_s, cfg)
        if ck is not None:
            env = env * ck
        train = (jobs.size_mw[:, None] * env).sum(axis=0)
    else:
        train = np.zeros(n)
    s_frac, hz = sch.swing_at(mid)
    hi, lo = swing_levels(s_frac, cfg.swing_duty)
    period = 1.0 / hz
    s_bar = (square_integral(edges[1:], period, cfg.swing_duty, hi, lo)
             - square_integral(edges[:-1], period, cfg.swing_duty, hi, lo)) / h_dt
    s_max = np.where(s_bar > lo + 1e-9, hi, lo)
    s_min = np.where(s_bar < hi - 1e-9, lo, hi)
    it_cap = cfg.it_capacity_mw
    inf = cfg.inference_frac * it_cap * float(diurnal(t_s + 0.5 * dt, cfg)) * max(0.0, 1.0 + c._noise)
    if c._noise_sd > 0:
        c._noise = c._phi * c._noise + c._noise_sd * float(c._noise_rng.standard_normal())
    base = cfg.idle_frac * it_cap + inf
    it = base + train * s_bar
    it_mean = float(it.mean())
    target = (cfg.pue - 1.0) * it_mean
    if c._fac is None:
        c._fac = target
    fac = target + (c._fac - target) * c._lag_c
    c._fac = c._lag_a * c._fac + (1 - c._lag_a) * target
    rho = cfg.backup_residual_frac
    g = rho + (1 - rho) * connection(mid, sch.trip_arrays())
    p = (it + fac) * g
    p_max = ((base + train * s_max + fac) * g).max()
    p_min = ((base + train * s_min + fac) * g).min()
    p_mean = float(p.mean())
    online = bool(connection(np.array([t_s + dt - ONLINE_EPS_S]), sch.trip_arrays())[0] > 0)
    g_u = rho + (1 - rho) * connection(mid, sch.trip_arrays(sch.unsupported))
    p_u = float(((it + fac) * g_u).mean())
    return CampusOutput(p_mean, p_mean * cfg.tan_phi, float(p_min), float(p_max), online,
                        it_mean, float(fac), p_u)


SHOCKY = ShockConfig(surge_rate_per_day=6.0, oscillation_rate_per_day=20.0,
                     reconnect_at_once_prob=0.5)


def fault_shots(seed: int, t0: float, days: float = 1.0) -> list[dict]:
    """Upstream faults at 8 a day, as a campus gets them; the support lifts every other
    shot by 0.05 pu, so the two ride-through states part."""
    law = FaultLaw(transmission_per_day=8.0, transmission_clearing_s=(0.05, 0.6))
    recs = upstream_shot_records(draw_faults(law, (), 0.0, days * 86_400.0,
                                             np.random.default_rng(seed)), t0)
    for k, r in enumerate(recs):
        if k % 2:
            r["v_pu"] = min(r["v_pu"] + 0.05, 1.0)
    return recs


@pytest.mark.parametrize("seed", [1, 2, 42])
@pytest.mark.parametrize("over", [
    {},
    {"job_ramp_s": 0.0, "reconnect_ramp_s": 0.0, "checkpoint_interval_s": 900.0},
    {"checkpoint_interval_s": 0.0, "swing_hz": 0.3, "reconnect_delay_s": 600.0},
])
def test_step_equals_the_full_evaluation_bit_for_bit(seed, over):
    cfg = CampusConfig(bus="18", capacity_mw=1.2, ride_through=[[0.5, 0.02], [0.7, 0.5], [0.8, 10.0], [0.86, 300.0]], **over)
    fast = Campus(cfg, 60.0, np.random.default_rng(seed), 6 * 3600.0, SHOCKY)
    ref = Campus(cfg, 60.0, np.random.default_rng(seed), 6 * 3600.0, SHOCKY)
    v_rng = np.random.default_rng(seed + 100)
    shots = fault_shots(seed, 6 * 3600.0)
    for k in range(1440):
        t = 6 * 3600.0 + 60.0 * k
        v = float(v_rng.uniform(0.72, 1.02)) if k % 97 < 4 else 0.95
        now = [r for r in shots if t <= r["t_s"] < t + 60.0]
        assert fast.step(t, v, now) == reference_step(ref, t, v, now), f"step {k}"
    assert len(fast.trips) >= 2 and fast.schedule.episodes  # the shortcuts were exercised
    assert fast.schedule.unsupported.trips != fast.trips  # and the counterfactual's


@settings(max_examples=300, deadline=None)
@given(t=st.floats(-1e6, 1e6), t0=st.floats(-1e6, 1e6), r=st.sampled_from([0.0, 1e-3, 1.0, 60.0, 600.0]))
def test_scalar_ramp_is_the_array_ramp(t, t0, r):
    assert _ramp_at(t, t0, r) == float(ramp(np.array([t]), np.array([t0]), r)[0])
