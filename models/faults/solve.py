"""The fault-time voltages of one shot, solved by OpenDSS (docs/faults.md §3).

A shot is solved in the feeder's own engine, from the operating point of its last snapshot
power flow (the pre-fault state), with controls frozen (``Solution.SolveNoControl``: no tap
or capacitor moves within a fault):

* the fault: an OpenDSS ``Fault`` element at the faulted bus (three-phase: every phase to
  ground through ``r``; SLG: one phase; LL: between two phases; LLG: two phases to ground),
  or, upstream, the source held at ``r`` times its voltage;
* the feeder's own loads as OpenDSS models them in a fault (a constant-PQ load below its
  ``vminpu`` is an impedance);
* the project's injections by what sits behind them, iterated to a fixed point on their
  bus voltage ``V`` (pu, mean of its phases; ``V_pre`` before the fault):

  - a campus (``ups``): its UPS rectifiers hold their power down to their current limit,
    ``P = min(P₀, i_lim P̄ V)`` (P̄ the campus capacity), until the lowest phase falls below
    the UPS's transfer voltage; from then on the UPS batteries carry the IT load for the
    sag and the grid sees only ``ρ P₀`` (``backup_residual_frac``);
  - an inverter FCM (``inverter``): its active current is held, ``P = P₀ V / V_pre``, and
    with support its reactive current rises by the K-factor response within its room,
    ``I_q = I_q₀ + min(K S̄ ΔV, I_room)`` for ``ΔV = V_pre − V`` beyond the dead band,
    ``Q = I_q V`` (:class:`models.fcm.base.FaultSupport`);
  - anything else (a generator, a DR device): a constant current at its pre-fault value.

The fixed point is the K-factor's own: OpenDSS solves the network at the currents of the
last iterate, which gives the next voltages. A shot is judged twice when inverters can
support it: with their response and without it (the counterfactual campus of
:mod:`models.ride_through`). When OpenDSS cannot solve an iterate (a collapse the current
limits do not hold), the shot is solved once with every injection as the constant
impedance of its pre-fault draw (a linear network, always solvable) and marked
``fallback``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.faults.draws import Fault

#: fixed-point tolerance on the injection bus voltages (pu) and its iteration limit
FIXED_POINT_TOL_PU = 1e-4
FIXED_POINT_MAX_ITER = 20
FAULT_ELEMENT = "dcshock_fault"
#: the smallest fault resistance OpenDSS's Fault element takes well (ohm): a bolted fault
R_BOLTED_OHM = 1e-4


@dataclass(frozen=True)
class Component:
    """One source at an injection bus as the fault solve models it (module docstring).

    ``p_mw``, ``q_mvar``: its pre-fault draw (load convention, + = consumption). ``kind``
    is ``"ups"`` (a campus; ``capacity_mw``, ``current_limit_pu``, ``transfer_v_pu``,
    ``residual_frac``), ``"inverter"`` (``k_mva_per_pu`` = K S̄, ``room_mva``,
    ``deadband_pu``) or ``"current"``."""

    kind: str
    p_mw: float
    q_mvar: float = 0.0
    capacity_mw: float = 0.0
    current_limit_pu: float = 1.2
    transfer_v_pu: float = 0.85
    residual_frac: float = 0.02
    k_mva_per_pu: float = 0.0
    room_mva: float = 0.0
    deadband_pu: float = 0.1

    def power(self, v: float, v_pre: float, v_low: float, support: bool,
              transferred: bool) -> tuple[float, float]:
        """``(p_mw, q_mvar)`` drawn at bus voltage ``v`` (pu, mean of phases; ``v_low`` the
        lowest phase), load convention."""
        v_pre = v_pre if math.isfinite(v_pre) and v_pre > 0 else 1.0
        v = max(v, 0.0)
        if self.kind == "ups":
            if transferred:
                return self.residual_frac * self.p_mw, self.residual_frac * self.q_mvar
            p = min(self.p_mw, self.current_limit_pu * self.capacity_mw * v) if self.p_mw > 0 else self.p_mw
            ratio = self.q_mvar / self.p_mw if self.p_mw else 0.0
            return p, p * ratio
        if self.kind == "inverter":
            i_p, i_q = -self.p_mw / v_pre, -self.q_mvar / v_pre   # injected currents (1 pu)
            if support:
                dv = v_pre - v
                if dv > self.deadband_pu and self.k_mva_per_pu > 0:
                    i_q += min(self.k_mva_per_pu * dv, max(self.room_mva, 0.0))
            return -i_p * v, -i_q * v
        return self.p_mw * v / v_pre, self.q_mvar * v / v_pre

    def transfers(self, v_low: float) -> bool:
        """A UPS that sees its lowest phase below its transfer voltage goes to battery."""
        return self.kind == "ups" and v_low < self.transfer_v_pu


@dataclass
class ShotSolution:
    """The voltages of one shot: every node (pu of its base), and per injection the mean
    and the lowest of its phases; ``converged`` False only when the fallback failed too."""

    node_v_pu: np.ndarray
    v_mean_pu: dict[str, float]
    v_low_pu: dict[str, float]
    converged: bool = True
    fallback: bool = False
    iterations: int = 0
    transferred: dict[str, bool] = field(default_factory=dict)


class FaultSolver:
    """Shots on one :class:`models.feeder.DSSFeeder` (module docstring).

    ``begin(result)`` with the step's snapshot result (the pre-fault state), then
    ``solve(fault, components, support)`` for each shot of the step, then ``restore()``
    once: it puts the engine back at the pre-fault set-points and has the next snapshot
    start cold (its result then does not depend on the shots' solves).
    ``power_flows`` counts the OpenDSS solves, for the benchmark's cost per shot.
    """

    def __init__(self, feeder) -> None:
        self.feeder = feeder
        self.power_flows = 0
        self._fault_made = False
        self._dirty = False
        self._pre_node_v: np.ndarray | None = None
        self._source_pu: float | None = None

    # -- engine edits -------------------------------------------------------------------
    @property
    def _eng(self):
        return self.feeder.engine

    def _apply(self, fault: Fault) -> None:
        eng = self._eng
        if fault.transmission:
            eng.Vsources.First()
            eng.Vsources.PU(self._source_pu * float(fault.retained_pu))
            return
        bus = fault.location
        ph = fault.phases
        r = max(float(fault.r_ohm), R_BOLTED_OHM)
        if fault.type == "ll":
            spec = f"phases=1 bus1={bus}.{ph[0]} bus2={bus}.{ph[1]}"
        else:  # 3ph, slg, llg: each faulted phase to ground through r
            nodes = ".".join(str(p) for p in ph)
            ground = ".".join("0" for _ in ph)
            spec = f"phases={len(ph)} bus1={bus}.{nodes} bus2={bus}.{ground}"
        if not self._fault_made:  # made by this solver, or by another one on this feeder
            self._fault_made = eng.Circuit.SetActiveElement(f"Fault.{FAULT_ELEMENT}") >= 0
        verb = "edit" if self._fault_made else "new"
        eng.Text.Command(f"{verb} Fault.{FAULT_ELEMENT} {spec} r={r:.10g} enabled=yes")
        self._fault_made = True

    def _clear(self) -> None:
        eng = self._eng
        if self._fault_made:
            eng.Text.Command(f"Fault.{FAULT_ELEMENT}.enabled=no")
        if self._source_pu is not None:
            eng.Vsources.First()
            eng.Vsources.PU(self._source_pu)

    # -- one shot -----------------------------------------------------------------------
    def begin(self, pre) -> None:
        """Start the shots of a step from the snapshot result ``pre`` (converged)."""
        self._pre_node_v = np.asarray(pre.node_v_pu, dtype=float)
        self._source_pu = self.feeder.source_voltage_pu
        self._dirty = True

    def solve(self, fault: Fault, components: Mapping[str, Sequence[Component]],
              support: bool = True) -> ShotSolution:
        """The voltages during one shot of ``fault`` with the injections' ``components``
        (injection name -> its sources), with or without the inverters' ``support``."""
        f = self.feeder
        if not self._dirty:
            raise RuntimeError("FaultSolver.solve before begin(pre-fault result)")
        nodes = f.injection_phase_nodes()
        v_pre = {n: _mean(self._pre_node_v, nodes[n]) for n in components}
        self._apply(fault)
        f.set_injection_vmin(0.0)
        try:
            sol = self._fixed_point(fault, components, support, nodes, v_pre)
            if sol is None:  # the feeder's loads as impedances (module docstring)
                f.set_feeder_loads_impedance(True)
                try:
                    sol = self._fixed_point(fault, components, support, nodes, v_pre)
                finally:
                    f.set_feeder_loads_impedance(False)
                if sol is not None:
                    sol.fallback = True
            if sol is None:
                sol = self._linear(components, v_pre, nodes)
            return sol
        finally:
            f.set_injection_vmin(None)
            self._clear()

    def _fixed_point(self, fault, components, support, nodes, v_pre) -> ShotSolution | None:
        """The injections' currents and their bus voltages iterated to agree; None when
        OpenDSS cannot solve an iterate or the iterates do not settle."""
        f = self.feeder
        guess = float(fault.retained_pu) if fault.transmission else 1.0
        v = {n: v_pre[n] * guess for n in components}
        low = dict(v)
        # a UPS whose input the fault takes below its transfer voltage is on battery from
        # the first iterate (its full draw at that voltage is the collapse it avoids)
        transferred = {n: any(c.transfers(low[n]) for c in comps) for n, comps in components.items()}
        for it in range(1, FIXED_POINT_MAX_ITER + 1):
            self._set_draws(components, v, v_pre, low, support, transferred)
            if not self._run():
                if it == 1 and not all(transferred.values()):  # once more, every UPS on battery
                    transferred = {n: True for n in components}
                    continue
                return None
            node_v = f.read_node_v_pu()
            v_new = {n: _mean(node_v, nodes[n]) for n in components}
            low = {n: _low(node_v, nodes[n]) for n in components}
            for n, comps in components.items():
                if any(c.transfers(low[n]) for c in comps):
                    transferred[n] = True
            step = max((abs(v_new[n] - v[n]) for n in components), default=0.0)
            v = v_new
            if step < FIXED_POINT_TOL_PU:
                return ShotSolution(node_v, v, low, True, False, it, transferred)
        return None

    def _set_draws(self, components, v, v_pre, low, support, transferred) -> None:
        draws = {}
        for n, comps in components.items():
            p = q = 0.0
            for c in comps:
                dp, dq = c.power(v[n], v_pre[n], low[n], support, transferred[n] and c.kind == "ups")
                p, q = p + dp, q + dq
            draws[n] = (p, q)
        self.feeder.set_injection_draws(draws)

    def _run(self) -> bool:
        self.power_flows += 1
        return self.feeder.solve_raw(controls=False)

    def _linear(self, components, v_pre, nodes) -> ShotSolution:
        """Every injection as the impedance of its pre-fault draw and the feeder's loads as
        theirs: a linear network (the fault is applied)."""
        f = self.feeder
        f.set_injection_impedance({n: sum((c.p_mw for c in comps), 0.0) for n, comps in components.items()},
                                  {n: sum((c.q_mvar for c in comps), 0.0) for n, comps in components.items()},
                                  v_pre)
        f.set_feeder_loads_impedance(True)
        try:
            ok = self._run()
            node_v = f.read_node_v_pu() if ok else np.full_like(self._pre_node_v, math.nan)
        finally:
            f.set_injection_impedance(None, None, None)
            f.set_feeder_loads_impedance(False)
        v = {n: _mean(node_v, nodes[n]) for n in components}
        low = {n: _low(node_v, nodes[n]) for n in components}
        return ShotSolution(node_v, v, low, ok, True, 1,
                            {n: any(c.transfers(low[n]) for c in comps) for n, comps in components.items()})

    def restore(self) -> None:
        """Back to the pre-fault set-points after the shots of a step; the next snapshot
        starts cold, so its result does not depend on the shots' solves."""
        if not self._dirty:
            return
        f = self.feeder
        f.set_injection_draws(f.injections)
        f.start_cold()
        self._dirty = False


def components_of(p_mw: Mapping[str, float], q_mvar: Mapping[str, float],
                  ups: Mapping[str, Mapping[str, float]],
                  support: Mapping[str, Mapping[str, float]]) -> list[Component]:
    """The sources at one injection, each by its key in ``p_mw`` (and ``q_mvar``): a campus
    that gives its UPS front end in ``ups`` (``capacity_mw``, ``current_limit_pu``,
    ``transfer_v_pu``, ``residual_frac``), an inverter FCM that gives its response in
    ``support`` (:meth:`models.fcm.base.FaultSupport.as_dict`), anything else a constant
    current."""
    out = []
    for src, p in p_mw.items():
        pq = (float(p), float(q_mvar.get(src, 0.0)))
        if ups.get(src):
            u = ups[src]
            out.append(Component("ups", *pq, capacity_mw=float(u["capacity_mw"]),
                                 current_limit_pu=float(u["current_limit_pu"]),
                                 transfer_v_pu=float(u["transfer_v_pu"]),
                                 residual_frac=float(u["residual_frac"])))
        elif support.get(src):
            d = support[src]
            out.append(Component("inverter", *pq, k_mva_per_pu=float(d["k_mva_per_pu"]),
                                 room_mva=float(d["room_mva"]), deadband_pu=float(d["deadband_pu"])))
        else:
            out.append(Component("current", *pq))
    return out


def _mean(node_v: np.ndarray, idx: np.ndarray) -> float:
    return float(np.mean(node_v[idx])) if len(idx) else math.nan


def _low(node_v: np.ndarray, idx: np.ndarray) -> float:
    return float(np.min(node_v[idx])) if len(idx) else math.nan


__all__ = ["Component", "FaultSolver", "components_of", "ShotSolution", "FIXED_POINT_TOL_PU"]
