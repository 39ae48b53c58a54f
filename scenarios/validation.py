"""The network model against OpenDSS on one snapshot (docs/feeders.md, "How close is
LinDistFlow"; docs/optimization.md §1.6–1.7).

:func:`snapshot_accuracy` adds loads (campuses) to a compiled feeder, solves it in OpenDSS and
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

from controllers.network import OperatingPoint, base_operating_point, linear_state, load_arrays


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
