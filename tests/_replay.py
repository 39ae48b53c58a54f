"""An independent replay of a run in plain opendssdirect (tests of real feeders).

Test code written from docs/feeders.md ("Injections", "When a solve fails") and not from
the loader: it compiles the master file in a plain opendssdirect engine, adds one
constant-PQ load per injection bus with the bus's own kV and phase nodes (delta on three
phases, line to neutral on one), and for every recorded step sets the recorded load
multiplier and the recorded campus and FCM powers (P and Q), solves, and returns the
substation import. A loader that puts an injection at the wrong kV, on the wrong nodes, or
that reuses an old result, does not reproduce the run's import.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import opendssdirect
import pytest


def replay_import(master: Path, extra: list[str], sc, ts, reactive: bool = False,
                  open_at: dict[int, list[str]] | None = None) -> np.ndarray:
    """The recorded set-points of a run of scenario ``sc`` on the OpenDSS ``master`` file
    (with the ``extra`` commands) in a plain opendssdirect engine; the substation import
    (MW) of each step of ``ts``, or with ``reactive`` its reactive import (Mvar).
    ``open_at``: step index -> OpenDSS elements opened (terminal 1) from that step on (a
    protective device that locked out)."""
    dss = opendssdirect.NewContext()
    dss.Basic.AllowChangeDir(False)
    dss.Text.Command(f'redirect "{master}"')
    for cmd in extra:
        dss.Text.Command(cmd)
    dss.Text.Command("set mode=snapshot")
    if sc.grid.v_source_pu != 1.0:
        dss.Vsources.First()
        dss.Vsources.PU(sc.grid.v_source_pu)
    dss.Solution.Solve()
    dss.Solution.Solve()
    # what the run drew at each bus (load convention): campuses plus FCMs (−p delivered)
    draw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in sc.campus:
        p, q = ts[f"dc.{c.name}.p_mw"].to_numpy(float), ts[f"dc.{c.name}.q_mvar"].to_numpy(float)
        old = draw.get(c.bus, (0.0, 0.0))
        draw[c.bus] = (old[0] + p, old[1] + q)
    for pl in sc.fcm.placements:
        p, q = ts[f"fcm.{pl.label}.p_mw"].to_numpy(float), ts[f"fcm.{pl.label}.q_mvar"].to_numpy(float)
        old = draw.get(pl.bus, (0.0, 0.0))
        draw[pl.bus] = (old[0] - p, old[1] - q)
    for k, bus in enumerate(draw):
        dss.Circuit.SetActiveBus(bus)
        nodes = [n for n in dss.Bus.Nodes() if 1 <= n <= 3]
        kv_ln = dss.Bus.kVBase()
        if len(nodes) == 3:
            spec = f"bus1={bus}.1.2.3 phases=3 conn=delta kv={kv_ln * math.sqrt(3)}"
        elif len(nodes) == 1:
            spec = f"bus1={bus}.{nodes[0]} phases=1 conn=wye kv={kv_ln}"
        else:
            pytest.fail(f"the replay has no rule for {len(nodes)}-phase bus {bus}")
        dss.Text.Command(f"new load.replay{k} {spec} model=1 status=fixed vminpu=0.5 vmaxpu=2 kw=0 kvar=0")
    scale = ts["sub.load_scale"].to_numpy(float)
    out = []
    for t in range(len(ts)):
        for element in (open_at or {}).get(t, ()):
            dss.Text.Command(f"open {element} 1")
        dss.Solution.LoadMult(float(scale[t]))
        for k, (p, q) in enumerate(draw.values()):
            dss.Loads.Name(f"replay{k}")
            dss.Loads.kW(float(np.broadcast_to(p, scale.shape)[t]) * 1e3)
            dss.Loads.kvar(float(np.broadcast_to(q, scale.shape)[t]) * 1e3)
        assert solve_with_recovery(dss, cold=t == 0 or not ts["pf.converged"].iloc[t - 1]), \
            f"replay step {t} did not converge"
        out.append(-dss.Circuit.TotalPower()[1 if reactive else 0] / 1e3)
    return np.array(out)


def solve_with_recovery(dss, cold: bool) -> bool:
    """docs/feeders.md, "When a solve fails": an abort clears OpenDSS's abort state (the
    solution mode is set again); an abort for control iterations is retried, then solved
    with the controls frozen; a warm start that does not converge is retried cold."""
    def attempt(fn) -> tuple[bool, bool]:
        try:
            fn()
        except opendssdirect.DSSException as exc:
            dss.Text.Command("set mode=snapshot")
            return False, "#485" in str(exc)
        return bool(dss.Solution.Converged()), False

    ok, control = attempt(dss.Solution.Solve)
    if ok:
        return True
    if control:
        return attempt(dss.Solution.Solve)[0] or attempt(dss.Solution.SolveNoControl)[0]
    if not cold:
        dss.Solution.InitSnap()
        return attempt(dss.Solution.Solve)[0]
    return False
