"""Seeded demand-shock scenario generator.

``generate_shocks`` draws N independent samples of every campus's behaviour over the
scenario horizon. A sample uses exactly the mechanisms and parameters of the SimPy campus
(:mod:`models.campus`): the same :class:`models.campus.Schedule` draws the events (training
jobs, surges, oscillation episodes, ride-through trips, reconnections), a few dozen SimPy
events per sample-day, and the same closed-form step means
(:func:`models.campus.step_means`) turn them into MW per step, vectorised with numpy. The
upstream faults of the ``[faults]`` law are drawn once per sample, as a run draws them
for its feeder, and every campus of the sample sees the same shots.
What the generator cannot know is the feeder: it sees no POI voltage and solves no fault,
so a shot retains the fraction ``r`` of a UPS input at 1.0 pu (the fast estimate,
:func:`models.faults.draws.upstream_shot_records`; the co-simulation solves each shot in
OpenDSS, adds voltage-driven trips and the feeder's own faults). docs/campus.md
§"Shock generator" lists the differences.

Randomness: sample ``s`` of campus ``c`` uses
``numpy.random.default_rng(SeedSequence(seed).spawn(samples)[s].spawn(n_campus)[c])``, and
its faults ``SeedSequence(seed, spawn_key=(s, 2**32))``, so a sample does not depend on how
many others are drawn.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from models.campus import DAY_S, ONLINE_EPS_S, Schedule, connection, linear_recurrence, step_means, swing_levels
from models.faults.draws import FAULT_STREAM_KEY, draw_faults, fault_rng, upstream_shot_records

log = logging.getLogger(__name__)


def sample_rng(seed: int, sample: int, campus: int) -> np.random.Generator:
    """The stream of ``sample`` of ``campus``: ``SeedSequence(seed).spawn(N)[sample]
    .spawn(n_campus)[campus]``, built directly from its spawn key ``(sample, campus)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(sample, campus)))


def sample_fault_rng(seed: int, sample: int) -> np.random.Generator:
    """The fault stream of ``sample``: ``SeedSequence(seed, spawn_key=(sample, 2**32))``,
    beside its campuses' ``(sample, campus)`` streams."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(sample, FAULT_STREAM_KEY)))


def _upstream_shots(scenario, rng: np.random.Generator, edges: np.ndarray) -> list[dict]:
    """The shots of the upstream faults the scenario's ``[faults]`` law draws over the
    horizon (from its second step, as a run's), as every campus of the sample gets them
    (:func:`models.faults.draws.upstream_shot_records`: the fast estimate, no feeder)."""
    law = getattr(scenario, "faults", None)
    if law is None or law.transmission_per_day <= 0:
        return []
    t0 = float(edges[0])
    step = float(scenario.simulation.step_s)
    faults = draw_faults(law, (), step, float(edges[-1] - t0), rng)
    return upstream_shot_records(faults, t0)


def _sample_one(scenario, c: int, rng: np.random.Generator, edges: np.ndarray,
                shots: list[dict] = ()):
    """One campus, one sample: SimPy events over the horizon (with the grid faults'
    ``shots``), then closed-form step means."""
    cfg = scenario.campus[c]
    sch = Schedule(cfg, rng, float(edges[0]), scenario.shocks)
    sch.grid_shots(shots)
    sch.run_until(float(edges[-1]))
    step = float(edges[1] - edges[0])
    n = len(edges) - 1
    phi = math.exp(-step / cfg.inference_noise_tau_s)
    sd = cfg.inference_noise * math.sqrt(1 - phi * phi)
    nr = sch.noise_rng
    x0 = nr.normal(0.0, cfg.inference_noise) if cfg.inference_noise else 0.0
    noise = linear_recurrence(sd * nr.standard_normal(n), phi, x0)  # same AR(1) as Campus.step
    out = step_means(edges, sch.job_arrays(), sch.trip_arrays(), cfg, noise=noise)
    return sch, out


def _horizon(scenario, step_s: float | None, hours: float | None) -> np.ndarray:
    step = float(step_s or scenario.simulation.step_s)
    h = float(hours or scenario.simulation.hours)
    n = max(1, int(round(h * 3600.0 / step)))
    t0 = scenario.simulation.start_hour * 3600.0
    return t0 + step * np.arange(n + 1)


def _run(scenario, samples: int, seed: int, step_s=None, hours=None, on_sample=None):
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    edges = _horizon(scenario, step_s, hours)
    n_c = len(scenario.campus)
    results = []
    for s in range(samples):
        row = []
        shots = _upstream_shots(scenario, sample_fault_rng(seed, s), edges)
        for c in range(n_c):
            row.append(_sample_one(scenario, c, sample_rng(seed, s, c), edges, shots))
        results.append(row)
        if on_sample is not None:
            on_sample(s + 1)
    return edges, results


def sample_campus_trajectories(
    scenario, samples: int, seed: int, step_s: float | None = None, hours: float | None = None,
    on_sample=None,
) -> np.ndarray:
    """Grid draw (MW, step means) of shape ``(samples, n_campus, steps)``; ``on_sample(k)``,
    when given, is called after each of the samples (``k`` drawn so far).

    ``step_s`` and ``hours`` default to the scenario's ``simulation`` section; Stage I
    passes its own coarser step and shorter horizon. The horizon starts at
    ``simulation.start_hour``.
    """
    _, res = _run(scenario, samples, seed, step_s, hours, on_sample)
    return np.array([[out["p_mw"] for _, out in row] for row in res])


def run_seed_trajectories(scenario, seeds, step_s: float | None = None,
                          hours: float | None = None) -> np.ndarray:
    """Grid draw (MW, step means) ``(len(seeds), n_campus, steps)`` where draw ``i`` of
    campus ``c`` uses the stream a co-simulation run with ``seed = seeds[i]`` gives that
    campus (:func:`models.campus_fleet.campus_rng`: ``SeedSequence(seeds[i], spawn_key=(c,))``).

    A draw is then the campus of that run, seen without the feeder (no voltage-driven
    trips, module docstring), and a set of training draws and a set of run seeds are
    disjoint exactly when their seeds are (the study, docs/study.md §1).
    """
    from models.campus_fleet import campus_rng

    edges = _horizon(scenario, step_s, hours)
    out = []
    for k in seeds:
        shots = _upstream_shots(scenario, fault_rng(int(k)), edges)
        out.append([_sample_one(scenario, c, campus_rng(int(k), c), edges, shots)[1]["p_mw"]
                    for c in range(len(scenario.campus))])
    return np.array(out)


def generate_shocks(scenario, samples: int, seed: int) -> pd.DataFrame:
    """N samples in long format at ``simulation.step_s``.

    Columns: ``sample, time_s, campus, p_mw, q_mvar, p_min_mw, p_max_mw, online``.
    ``time_s`` counts from the start of the run; ``p_mw``/``q_mvar`` are step means of the
    grid draw (consumption > 0); ``p_min_mw``/``p_max_mw`` bound the swing within the step
    (communication and compute levels of the swing in effect, the largest episode in the
    step); ``online`` is True when the campus is grid-connected at the end of the step.
    """
    edges, res = _run(scenario, samples, seed)
    n = len(edges) - 1
    time_s = edges[:-1] - edges[0]
    frames = []
    for s, row in enumerate(res):
        for c, (sch, out) in enumerate(row):
            cfg = scenario.campus[c]
            swing = _step_max_swing(sch, edges)
            hi, lo = swing_levels(swing, cfg.swing_duty)
            it, fac = out["it_mw"], out["facility_mw"]
            g = np.where(out["it_mw"] + fac > 0, out["p_mw"] / np.maximum(it + fac, 1e-12), 0.0)
            train = out["training_mw"]
            online = connection(edges[1:] - ONLINE_EPS_S, sch.trip_arrays()) > 0
            frames.append(pd.DataFrame({
                "sample": np.full(n, s, dtype=np.int32),
                "time_s": time_s,
                "campus": cfg.name,
                "p_mw": out["p_mw"],
                "q_mvar": out["p_mw"] * cfg.tan_phi,
                "p_min_mw": out["p_mw"] - train * (1.0 - lo) * g,
                "p_max_mw": out["p_mw"] + train * (hi - 1.0) * g,
                "online": online,
            }))
    frame = pd.concat(frames, ignore_index=True)
    frame["campus"] = frame["campus"].astype("category")
    return frame


def shock_events(scenario, samples: int, seed: int, hours: float | None = None) -> pd.DataFrame:
    """The events behind the samples (same seeds as :func:`generate_shocks`): one row per
    job start/stop, surge, oscillation episode, disturbance and trip, with ``sample``,
    ``campus``, ``kind``, ``time_s`` (from the start of the run) and the event's details."""
    edges, res = _run(scenario, samples, seed, hours=hours)
    rows = []
    for s, row in enumerate(res):
        for c, (sch, _) in enumerate(row):
            for ev in sch.events:
                if edges[0] <= ev["time_s"] < edges[-1]:
                    rows.append({"sample": s, "campus": scenario.campus[c].name, **ev,
                                 "time_s": ev["time_s"] - edges[0]})
    return pd.DataFrame(rows)


def _step_max_swing(sch: Schedule, edges: np.ndarray) -> np.ndarray:
    swing = np.full(len(edges) - 1, sch.cfg.swing_frac)
    for t0, t1, sw, _ in sch.episodes:
        m = (edges[1:] > t0) & (edges[:-1] < t1)
        swing[m] = np.maximum(swing[m], sw)
    return swing


__all__ = ["generate_shocks", "sample_campus_trajectories", "shock_events", "DAY_S"]
