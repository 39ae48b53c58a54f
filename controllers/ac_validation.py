"""AC validation: the MILPs' network model (LinDistFlow, :mod:`controllers.network`)
against OpenDSS, without mosaik (docs/kpis.md, "AC validation"; docs/feeders.md, "How close
is LinDistFlow"; docs/optimization.md §1.6–1.7).

Over a run, :func:`network_model_validation` re-evaluates the network model at every step's
recorded injections, linearised at the previous step's AC operating point, and compares it
with the voltages OpenDSS reported (the run's ``ac_validation`` KPI).

On one snapshot, :func:`snapshot_accuracy` adds loads (campuses) to a compiled feeder, solves it in OpenDSS and
evaluates the MILPs' network model (:func:`controllers.network.linear_state`) for the same
loads, in three forms:

* ``flat``: lossless LinDistFlow from the flat start, uncalibrated (Baran & Wu);
* ``ac``: losses linearised at the AC base case, uncalibrated;
* ``calibrated``: linearised and calibrated at the AC base case (what Stage I uses before it
  has a measurement, and what Stage II and the run's AC validation do at every step with the
  previous step's AC state).

The error is ``| sqrt(v_j) − |V_j|^OpenDSS |`` over the energized buses (mean of a bus's
phases, as the time series and the MILP's voltage rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from controllers.network import OperatingPoint, base_operating_point, linear_state, load_arrays
from models.network import FeederData


def snapshot_accuracy(feeder: Any, loads_mw: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """Max and mean |V| error (pu) of the network model against OpenDSS with ``loads_mw``
    (bus → (P MW, Q Mvar), + = consumption) added to the base case of ``feeder`` (a
    :class:`models.feeder.DSSFeeder` as :meth:`~models.feeder.DSSFeeder.open` left it).

    Two OpenDSS solves: ``frozen`` keeps regulator taps and capacitors where the base case
    has them (the network model alone), ``controls`` lets them respond to the new loads as
    OpenDSS's control loop does (what one co-simulation step can see). The loads are added
    as injections ``acc_<k>``, set back to zero afterwards and the base case re-solved.
    """
    fd = feeder.data
    names = {}
    for k, (bus, (p, q)) in enumerate(loads_mw.items()):
        name = f"acc_{k}"
        if name not in feeder.injections:
            feeder.add_injection(name, bus)
        feeder.set_injection(name, p, q)
        names[name] = bus
    try:
        results = {"frozen": feeder.solve(controls=False), "controls": feeder.solve()}
    finally:
        feeder.set_injections({n: (0.0, 0.0) for n in names})
        feeder.solve()
    bi = fd.bus_index
    p_net, q_net = (x[:, None] for x in load_arrays(fd))
    for bus, (pp, qq) in loads_mw.items():
        p_net[bi[bus.lower()], 0] += pp
        q_net[bi[bus.lower()], 0] += qq
    base = base_operating_point(fd)
    uncalibrated = None if base is None else OperatingPoint(base.v_pu, base.p_mw, base.q_mvar)
    v_src_sq = float(fd.v_source_pu) ** 2 if base is None else float(base.v_pu[fd.source_bus]) ** 2
    models = {}
    for label, op in (("flat", None), ("ac", uncalibrated), ("calibrated", base)):
        _, _, v = linear_state(fd, p_net, q_net, op, v_source_sq=v_src_sq)
        models[label] = np.sqrt(np.maximum(v[:, 0], 0.0))
    out: dict[str, Any] = {"campus_mw": float(sum(x[0] for x in loads_mw.values()))}
    for case, res in results.items():
        if not res.converged:
            out[case] = {"converged": False, "cause": res.cause}
            continue
        v_of = res.bus_voltages()
        v_ac = np.array([v_of.get(b, math.nan) for b in fd.bus_names])
        ok = np.isfinite(v_ac)
        row: dict[str, Any] = {"converged": True, "buses": int(ok.sum())}
        for label, v_model in models.items():
            err = np.abs(v_model - v_ac)[ok]
            worst = int(np.argmax(err))
            row[label] = {"max_abs_v_error_pu": float(err.max()),
                          "mean_abs_v_error_pu": float(err.mean()),
                          "worst_bus": str(np.asarray(fd.bus_names)[ok][worst])}
        out[case] = row
    return out


def network_model_validation(ts: pd.DataFrame, feeder: FeederData, campuses: Mapping[str, str],
                             fcms: Mapping[str, str], initial_grid: Mapping[str, Any]
                             ) -> dict[str, Any]:
    """LinDistFlow against OpenDSS at the operating points a run visited.

    ``ts`` is the run's time series (docs/results.md), ``feeder`` the plan's network,
    ``campuses`` and ``fcms`` map campus names and FCM labels to their buses, and
    ``initial_grid`` is the grid reading before the first step (``bus_v_pu``,
    ``branch_p_mw``, ``branch_q_mvar``, ``p_load_mw``, ``q_load_mvar``).

    For every converged step t the MILP's network model (:func:`controllers.network.
    linear_state`, linearised and calibrated at the AC operating point OpenDSS reported for
    step t − 1 with the loads of step t − 1, as the MPC does with ``linearize_at = "ac"``;
    at t = 0 ``initial_grid``; ``flat_*``: lossless and uncalibrated, at the flat
    start) is evaluated with the net injections OpenDSS was given in step t (background
    ``s_t·p^nom``, campus and FCM ``p, q``)::

        e_{b,t} = | sqrt(v^LDF_{b,t}) − |V|^OpenDSS_{b,t} |

    Unlike ``ac_validation`` (the MILP's prediction, which also carries the forecast error
    and the plant's clipping) this isolates the network model. Returns max and mean of e,
    the 99.9 % quantile of the per-step maximum and the number of steps above 0.01 pu (a step
    where the state jumps, e.g. a campus trip, is far from the previous step's linearisation
    point).
    """
    fd = feeder
    names = fd.bus_names
    bus_cols = [f"bus.{b}.v_pu" for b in names]
    if "sub.load_scale" not in ts.columns or not all(c in ts.columns for c in bus_cols):
        return {"max_abs_v_error_pu": math.nan, "mean_abs_v_error_pu": math.nan, "steps": 0}
    v_meas = ts[bus_cols].to_numpy(float)
    ok = np.isfinite(v_meas).all(axis=1)
    p_nom, q_nom = load_arrays(fd)
    scale = ts["sub.load_scale"].to_numpy(float)
    p = np.outer(p_nom, scale)
    q = np.outer(q_nom, scale)
    idx = fd.bus_index
    for name, bus in campuses.items():
        p[idx[bus.lower()]] += ts[f"dc.{name}.p_mw"].to_numpy(float)
        q[idx[bus.lower()]] += ts[f"dc.{name}.q_mvar"].to_numpy(float)
    for label, bus in fcms.items():
        p[idx[bus.lower()]] -= ts[f"fcm.{label}.p_mw"].to_numpy(float)
        q[idx[bus.lower()]] -= ts[f"fcm.{label}.q_mvar"].to_numpy(float)
    lines = [br.name for br in fd.branches]
    has_flows = all(f"branch.{n}.q_mvar" in ts.columns for n in lines)
    if has_flows:
        flow_p = ts[[f"branch.{n}.p_mw" for n in lines]].to_numpy(float)
        flow_q = ts[[f"branch.{n}.q_mvar" for n in lines]].to_numpy(float)
    errs: list[np.ndarray] = []
    flat: list[np.ndarray] = []
    for t in range(len(ts)):
        if not ok[t]:
            continue
        if t == 0:
            g = initial_grid
            op = OperatingPoint(g.get("bus_v_pu", {}), g.get("branch_p_mw", {}),
                                g.get("branch_q_mvar", {}), g.get("p_load_mw", {}),
                                g.get("q_load_mvar", {}))
        elif ok[t - 1] and has_flows:
            op = OperatingPoint(dict(zip(names, v_meas[t - 1])), dict(zip(lines, flow_p[t - 1])),
                                dict(zip(lines, flow_q[t - 1])),
                                dict(zip(names, p[:, t - 1])), dict(zip(names, q[:, t - 1])))
        else:
            op = None
        v_src = v_meas[t, idx[fd.source_bus]]
        _, _, v = linear_state(fd, p[:, t:t + 1], q[:, t:t + 1], op, v_source_sq=float(v_src) ** 2)
        errs.append(np.abs(np.sqrt(np.maximum(v[:, 0], 0.0)) - v_meas[t]))
        _, _, v0 = linear_state(fd, p[:, t:t + 1], q[:, t:t + 1], None, v_source_sq=float(v_src) ** 2)
        flat.append(np.abs(np.sqrt(np.maximum(v0[:, 0], 0.0)) - v_meas[t]))
    if not errs:
        return {"max_abs_v_error_pu": math.nan, "mean_abs_v_error_pu": math.nan, "steps": 0}
    e, f = np.concatenate(errs), np.concatenate(flat)
    per_step = np.array([x.max() for x in errs])
    return {"max_abs_v_error_pu": float(e.max()), "mean_abs_v_error_pu": float(e.mean()),
            "p999_step_max_abs_v_error_pu": float(np.quantile(per_step, 0.999)),
            "steps_above_0_01_pu": int((per_step > 0.01).sum()),
            "steps": len(errs), "linearize_at": "previous step's OpenDSS operating point",
            "flat_max_abs_v_error_pu": float(f.max()), "flat_mean_abs_v_error_pu": float(f.mean())}


def campus_buses(fd: Any, count: int = 2) -> list[str]:
    """``count`` three-phase buses of the feeder's most common primary voltage level, far
    from the source (largest path resistance), on different laterals where possible: where
    a study would put campuses when it has no better idea."""
    levels: dict[float, int] = {}
    for b in fd.buses:
        if b.phases == 3 and b.name != fd.source_bus:
            levels[round(b.base_kv_ll, 3)] = levels.get(round(b.base_kv_ll, 3), 0) + 1
    if not levels:
        return []
    kv = max(levels, key=levels.get)
    dist: dict[str, float] = {fd.source_bus: 0.0}
    path: dict[str, tuple[str, ...]] = {fd.source_bus: ()}
    for br in fd.branches:
        dist[br.to_bus] = dist[br.from_bus] + max(br.r_pu, 0.0)
        path[br.to_bus] = path[br.from_bus] + (br.to_bus,)
    cands = sorted((b for b in fd.buses if b.phases == 3 and round(b.base_kv_ll, 3) == kv
                    and b.name != fd.source_bus and fd.load_by_bus.get(b.name) is not None),
                   key=lambda b: -dist[b.name])
    if not cands:
        cands = sorted((b for b in fd.buses if b.phases == 3 and round(b.base_kv_ll, 3) == kv),
                       key=lambda b: -dist[b.name])
    chosen: list[str] = []
    for b in cands:
        if all(c not in path[b.name] and b.name not in path[c] for c in chosen):
            chosen.append(b.name)
        if len(chosen) == count:
            break
    return chosen
