"""Synthetic test data: a realistic time series in the column layout of docs/results.md,
and a MILP HiGHS cannot close quickly (:func:`knapsack`, for time-limit tests).

For developing and testing the report and the KPIs before (and independently of) real runs.
It is *not* a simulation: voltages come from a linear sensitivity to the total load, line
loadings from the load downstream. Shapes are plausible for the IEEE 33-bus feeder with a
1.2 MW campus at bus 18: the background follows the RTS daily shape of models.schedule, the
campus oscillates, ramps a training job, rides through a sag (trip and reconnection), and
the FCMs push back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.schedule import background_shape

# IEEE 33-bus main feeder 1-18 and laterals 19-22, 23-25, 26-33 (Baran & Wu topology)
PARENT = {b: b - 1 for b in range(2, 19)} | {19: 2, 20: 19, 21: 20, 22: 21, 23: 3, 24: 23,
                                                25: 24, 26: 6} | {b: b - 1 for b in range(27, 34)}


def _depth(bus: int) -> int:
    d = 0
    while bus != 1:
        bus, d = PARENT[bus], d + 1
    return d


def synthetic_timeseries(hours: float = 6.0, step_s: int = 60, fcms: bool = True,
                         controller: bool = True, seed: int = 0,
                         campus: str = "campus1") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(round(hours * 3600 / step_s))
    t = np.arange(n) * step_s
    h = t / 3600.0
    bg = 3.715 * background_shape(t, start_hour=8.0)                    # MW, feeder's own load

    demand = 0.9 + 0.15 * np.sin(2 * np.pi * h / 0.37) + 0.02 * rng.standard_normal(n)
    demand = np.where((h > 1.0) & (h < 3.2), demand + 0.25, demand)     # a training job
    demand = np.clip(demand, 0.2, 1.2)
    online = ~((h >= 2.0) & (h < 2.35))                                  # ride-through trip
    p_dc = np.where(online, demand, 0.0)
    p_min = np.where(online, demand - 0.08 - 0.02 * rng.random(n), 0.0)
    p_max = np.where(online, demand + 0.08 + 0.02 * rng.random(n), 0.0)

    cols: dict[str, np.ndarray] = {}
    fcm_net = np.zeros(n)
    if fcms:
        shock = np.gradient(p_dc)
        bess = np.clip(-8.0 * shock + 0.3 * (p_dc - 1.0), -0.5, 0.5)
        soc = np.clip(0.5 - np.cumsum(bess) * step_s / 3600.0 / 1.0, 0.1, 0.9)
        gen_on = (h > 1.9) & (h < 3.0)
        gen = np.where(gen_on, np.minimum(0.5, 0.15 + 0.25 * (h - 1.9)), 0.0)
        dr = np.where((h > 1.0) & (h < 1.4), 0.2, np.where((h >= 1.4) & (h < 2.0), -0.1, 0.0))
        for label, p, s, e, c in (("bess_18", bess, soc, soc * 1.0, 10.0),
                                  ("gen_33", gen, np.full(n, np.nan), np.zeros(n), 120.0),
                                  ("dr_18", dr, np.full(n, np.nan), np.cumsum(np.clip(dr, 0, None)) / 60, 200.0)):
            cols[f"fcm.{label}.p_set_mw"] = p
            cols[f"fcm.{label}.p_mw"] = p
            cols[f"fcm.{label}.q_mvar"] = np.zeros(n)
            cols[f"fcm.{label}.soc"] = s
            cols[f"fcm.{label}.soc_mwh"] = e
            cols[f"fcm.{label}.committed"] = gen_on if label == "gen_33" else np.zeros(n, bool)
            cols[f"fcm.{label}.cost"] = c * np.abs(p) * step_s / 3600.0
            fcm_net += p

    load = bg + p_dc - fcm_net
    losses = 0.0055 * load ** 2 / 3.7
    sub = load + losses
    sched_blocks = pd.Series(bg + 0.95 + 0.0055 * (bg + 0.95) ** 2 / 3.7).groupby(t // 3600).transform("mean")
    converged = np.ones(n, bool)
    converged[int(n * 0.8)] = False

    frame: dict[str, np.ndarray] = {
        "pf.converged": converged,
        "sub.p_mw": np.where(converged, sub, np.nan),
        "sub.q_mvar": np.where(converged, 0.62 * sub, np.nan),
        "sub.p_sched_mw": sched_blocks.to_numpy(),
        "sub.losses_mw": np.where(converged, losses, np.nan),
    }
    depth = {b: _depth(b) for b in range(1, 34)}
    for b in range(1, 34):
        k = 0.0033 * depth[b] * (1.5 if b in range(13, 19) else 1.0)
        v = 1.0 - k * load / 4.9 * 1.06
        frame[f"bus.{b}.v_pu"] = np.where(converged, v, np.nan)
    for b in range(2, 34):
        share = 1.0 - depth[b] / 18.0
        frame[f"line.L{b - 1}.loading_pct"] = np.where(converged, 100.0 * share * load / 5.2, np.nan)
    frame |= {
        f"dc.{campus}.p_mw": p_dc, f"dc.{campus}.q_mvar": 0.2 * p_dc,
        f"dc.{campus}.p_min_mw": p_min, f"dc.{campus}.p_max_mw": p_max,
        f"dc.{campus}.p_demand_mw": demand, f"dc.{campus}.online": online,
        f"dc.{campus}.v_poi_pu": np.roll(frame["bus.18.v_pu"], 1),
    }
    frame |= cols
    if controller:
        solved = (np.arange(n) % 5) == 0
        frame["ctrl.solved"] = solved
        frame["ctrl.fallback"] = solved & (rng.random(n) < 0.05)
        frame["ctrl.solve_s"] = np.where(solved, 0.05 + 0.2 * rng.random(n), 0.0)
        frame["ctrl.status"] = np.where(solved, "optimal", "hold")
        for b in range(1, 34):
            frame[f"pred.bus.{b}.v_pu"] = frame[f"bus.{b}.v_pu"] + 0.002 * rng.standard_normal(n)
        frame["pred.sub.p_mw"] = frame["sub.p_mw"] + 0.01 * rng.standard_normal(n)
    return pd.DataFrame(frame, index=pd.Index(t, name="time_s"))


def knapsack(n: int = 60, m: int = 30) -> Any:
    """A multi-dimensional 0-1 knapsack HiGHS does not close within a fraction of a second."""
    import pyomo.environ as pyo

    rng = np.random.default_rng(0)
    k = pyo.ConcreteModel()
    k.I = pyo.RangeSet(0, n - 1)
    k.x = pyo.Var(k.I, domain=pyo.Binary)
    value = rng.integers(50, 100, n)
    k.obj = pyo.Objective(expr=-sum(float(value[i]) * k.x[i] for i in k.I))
    k.rows = pyo.ConstraintList()
    for _ in range(m):
        w = rng.integers(20, 80, n)
        k.rows.add(sum(float(w[i]) * k.x[i] for i in k.I) <= float(w.sum()) / 2)
    return k
