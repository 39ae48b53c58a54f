"""Baseline controllers (``none``, ``rule``); :mod:`controllers.factory` makes them by name.

Both have the :class:`controllers.interface.Controller` interface ``step(measurement) ->
Dispatch`` and act on every call (ControllerSim calls them every co-simulation step).

``rule`` is transparent on purpose, so every setpoint can be traced to one line below.
Notation: ``P^sub`` the measured import (previous step), ``S`` the schedule in force,
``RΔt`` the upstream ramp allowance per call, ``a = ramp_use_frac``, ``b = deadband_mw``.

1. **Target import.** ``U = P^sub + Σ p_fcm`` is the import the feeder would draw without
   FCMs (last measurement). The target keeps the import within the dead band of the
   schedule, moving at most ``a·RΔt`` from the measured import per step::

       T = clip(clip(U, S − b, S + b), P^sub − a·RΔt, P^sub + a·RΔt)

   With ``feedforward`` the campus operator's published forecast of this step ``p̂_c``
   (``Measurement.campus_next_mw[c]``, or the first value of ``campus_forecast_mw[c]``
   where that is not given: planned reconnections, scheduled job starts and stops)
   replaces the measured draw: ``U = P^sub + Σ p_fcm + Σ_c (p̂_c − p_c)``.
   The FCMs supply ``G = U − T`` (+ = inject). So the FCMs counter (a) a change of the
   import beyond the ramp allowance and (b) a deviation from the schedule beyond the dead
   band, and nothing else. ``a < 1`` leaves ``(1 − a)·RΔt`` for the change the controller
   cannot see coming (measurements arrive one step late).
2. **SoC drift.** Storage drifts towards ``soc_init·Ē`` at no more than ``restore_frac·P̄``,
   and only inside the allowances: the drift power ``r`` (+ = charging) moves the target
   to ``T' = clip(T + r, [S − b, S + b] ∩ [P^sub − a·RΔt, P^sub + a·RΔt])`` when ``T``
   lies in that set (otherwise no drift), so restoring never by itself pushes the import
   out of the dead band or beyond the ramp allowance. Storage never charges for the drift
   while its bus is below ``v_min_pu``.
3. **Allocation.** DR's own output ``p̂_DR`` (curtailment or payback, rule 4) is part of
   the FCM total: storage and generation supply ``G' = U − T' − p̂_DR``. The generators
   follow the positive part of ``G'`` (a start when it exceeds their minimum output; a
   running unit asked for less runs at its minimum, as the device does, and is asked to
   stop once ``G'`` falls below half its minimum output); storage supplies
   the rest, ``G' − ĝ`` with ``ĝ`` the generation expected this step (setpoint within the
   generator's ramp from its measured output), shared in proportion to what each store can
   deliver this step within its energy bounds, tapered near a bound to
   ``sqrt(2·RΔt·E_left/Δt_h)`` (a store walked down at RΔt per step reaches 0 before the
   bound, so hitting the bound is not a step change of the import). While its bus is below ``v_min_pu`` a store
   charges only what holding the ramp needs, ``max(0, P^sub − a·RΔt − U)`` (charging there
   would deepen the sag): the import may then stay below the schedule.
4. **DR.** A DR module curtails fully (``D̄``; the device enforces its budget and the load
   of its bus, which the rule expects from the measured background) only in a
   sag, when its bus voltage is below ``v_sag_pu`` (lower than the operating limit
   ``v_min_pu``), and stops once the voltage is back above ``v_min_pu + dr_release_pu``
   (the wide band keeps its own voltage lift from switching it off again).
   Payback is deferred while the voltage is below ``v_min_pu + dr_release_pu`` (the device
   still forces it at its deadline) and runs at ``D̄`` once the voltage has recovered, but
   not in the step right after a curtailment (no ``+D̄ → −D̄`` swing in one step).
5. **Ramp guard of a held plan** (:meth:`RuleController.trim`, used by the MPC between and
   at its re-solves, ``controller.trim = "ramp"``). With ``f̂_k`` what FCM k delivers
   this step for its *planned* setpoint and ``I = U − Σ_k f̂_k`` the import expected under
   the plan, storage takes the excess beyond the allowance,
   ``e = I − clip(I, P^sub − a·RΔt, P^sub + a·RΔt)``, on top of its planned output, shared
   by the room each store has left in that direction. Generators and DR keep the plan.

A measurement from a diverged power flow (``converged=False``) carries no usable numbers;
the rule controller then sets every FCM to 0 for that step (status ``rule:no-measurement``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.interface import Dispatch, Measurement
from models.errors import ScenarioError
from models.fcm import technology_of
from models.fcm_catalog import FCMType, Placement
from models.network import FeederData

logger = logging.getLogger(__name__)


class IdleController:
    """``none``: every FCM at 0 MW."""

    def __init__(self, placements: Sequence[Placement]) -> None:
        self.labels = [pl.label for pl in placements]

    def step(self, measurement: Measurement) -> Dispatch:
        return Dispatch(p_mw={label: 0.0 for label in self.labels}, status="idle")


@dataclass(frozen=True)
class RuleParams:
    """``step_s``: seconds between calls (the co-simulation step, or the MPC re-solve period
    when used as its fallback); ``ramp_limit_mw_per_min``: upstream limit R;
    ``deadband_mw``: b, the tolerated deviation from the schedule; ``ramp_use_frac``: a,
    the share of RΔt the controller's own correction may use; ``v_sag_pu``: DR sheds below
    it (``None``: ``v_min_pu − 0.03``); the rest as in the module docstring."""

    step_s: float
    ramp_limit_mw_per_min: float
    v_min_pu: float = 0.95
    dr_release_pu: float = 0.01
    restore_frac: float = 0.1
    deadband_mw: float = 0.05
    ramp_use_frac: float = 0.25
    v_sag_pu: float | None = None
    feedforward: bool = True

    @property
    def sag_pu(self) -> float:
        return self.v_min_pu - 0.03 if self.v_sag_pu is None else self.v_sag_pu


class RuleController:
    """``rule``: schedule and ramp holding by generation and storage, SoC drift inside the
    allowances, DR in sags only with deferred payback.

    See the module docstring for the four rules. The only state is which DR modules are
    curtailing and how long ago each one's curtailment ended (to foresee the payback its
    device forces at the end of the payback window).
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: RuleParams) -> None:
        self.params = params
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.sizes = {pl.label: technology_of(catalog[pl.kind]).sizes(pl, catalog[pl.kind])
                      for pl in placements}
        self.dr_active: set[str] = set()
        self.dr_since_s: dict[str, float] = {}
        load = feeder.load_by_bus
        self.host_nominal_mw = {pl.label: load[pl.bus].p_mw if pl.bus in load else 0.0
                                for pl in placements}
        self.nominal_total_mw = sum(ld.p_mw for ld in feeder.loads)
        for pl in placements:
            if not feeder.has_bus(pl.bus):
                raise ScenarioError("fcm", f"placements[{pl.label}].bus",
                                    f"unknown bus {pl.bus!r} of feeder {feeder.name}")
        # the rules know three roles; a placement of another technology is held at 0
        role = {pl.label: technology_of(self.catalog[pl.kind]).name for pl in self.placements}
        self.storages = [pl for pl in self.placements if role[pl.label] == "storage"]
        self.gens = [pl for pl in self.placements if role[pl.label] == "generator"]
        self.drs = [pl for pl in self.placements if role[pl.label] == "dr"]

    def step(self, measurement: Measurement) -> Dispatch:
        p = self.params
        m = measurement
        out = {pl.label: 0.0 for pl in self.placements}
        if not m.converged or not math.isfinite(m.sub_p_mw):
            return Dispatch(p_mw=out, status="rule:no-measurement")
        dt_h = p.step_s / 3600.0
        uncontrolled = self._uncontrolled(m)
        sched = float(m.p_sched_mw[0]) if len(m.p_sched_mw) and math.isfinite(m.p_sched_mw[0]) \
            else m.sub_p_mw
        move = p.ramp_use_frac * p.ramp_limit_mw_per_min * p.step_s / 60.0
        lo = max(sched - p.deadband_mw, m.sub_p_mw - move)
        hi = min(sched + p.deadband_mw, m.sub_p_mw + move)
        # rule 1: within the dead band of the schedule, at most a·RΔt from the import
        target = min(max(min(max(uncontrolled, sched - p.deadband_mw), sched + p.deadband_mw),
                         m.sub_p_mw - move), m.sub_p_mw + move)
        # rule 2: SoC drift, only when the target already lies inside both allowances
        if self.storages and lo <= target + 1e-12 and target <= hi + 1e-12:
            drift = sum(self._drift(pl, m, dt_h) for pl in self.storages)
            target = min(max(target + drift, lo), hi)
        # rule 4 first: DR's own output is part of the FCM total
        dr_out = {pl.label: self._dr(pl, m, dt_h) for pl in self.drs}
        out.update({k: v[0] for k, v in dr_out.items()})
        dr_total = sum(v[1] for v in dr_out.values())
        need = uncontrolled - target - dr_total
        # rule 3: generation follows the positive part, storage the rest
        gen_expected = 0.0
        rest = need
        for pl in self.gens:
            tech = self.catalog[pl.kind]
            p_cap = self.sizes[pl.label][0]
            st = m.fcm.get(pl.label)
            on = bool(st.committed) if st is not None else False
            p_min = tech.p_min_frac * p_cap
            want = min(max(rest, 0.0), p_cap)
            if want > p_min or (on and want >= 0.5 * p_min):  # hysteresis: stop below P_min/2
                out[pl.label] = want
                g = self._gen_expected(pl, st, want, p_min, p_cap)
            else:
                out[pl.label] = 0.0
                g = self._gen_expected(pl, st, 0.0, p_min, p_cap)
            gen_expected += g
            rest -= g
        store_need = need - gen_expected
        room = {pl.label: self._storage_room(pl, m, dt_h) for pl in self.storages}
        if store_need > 0:
            self._share(store_need, {k: v[0] for k, v in room.items()}, out)
        elif store_need < 0:
            # at a bus below v_min storage charges only what holding the ramp needs (rule 1a)
            ramp_need = max(0.0, (m.sub_p_mw - move) - (uncontrolled - dr_total - gen_expected))
            can = {pl.label: room[pl.label][1] if self._bus_ok(pl, m)
                   else min(room[pl.label][1], ramp_need) for pl in self.storages}
            taken: dict[str, float] = {}
            self._share(-store_need, can, taken)
            for k, v in taken.items():
                out[k] = -v
        return Dispatch(p_mw=out, status="rule")

    def trim(self, measurement: Measurement, plan: Mapping[str, float]) -> dict[str, float]:
        """Rule 5: the ramp guard of a plan another controller holds (the MPC between, and at,
        its re-solves). Returns the plan with its storage setpoints corrected.

        ``U`` as in rule 1 (with the feed-forward), ``f̂_k`` what FCM k delivers this step for
        its planned setpoint (generators within their ramp and minimum, storage within its
        energy bounds, DR with its forced payback), ``I = U − Σ_k f̂_k`` the import expected
        under the plan. The excess beyond the ramp allowance of the measured import,

            e = I − clip(I, P^sub − a·RΔt, P^sub + a·RΔt),

        is taken by storage on top of its planned output, shared in proportion to the room
        each store has left in that direction (rule 3's energy bounds and taper). Generators
        and DR keep the plan (their commitment and payback are the plan's decisions). Within
        the allowance (``e = 0``) the plan is returned unchanged.
        """
        m, p = measurement, self.params
        out = {pl.label: float(plan.get(pl.label, 0.0)) for pl in self.placements}
        for pl in self.drs:  # the payback clock runs whether or not a trim is needed
            self._dr_track(pl, m)
        if not m.converged or not math.isfinite(m.sub_p_mw) or not self.storages:
            return out
        dt_h = p.step_s / 3600.0
        expected = 0.0
        for pl in self.gens:
            tech = self.catalog[pl.kind]
            p_cap = self.sizes[pl.label][0]
            expected += self._gen_expected(pl, m.fcm.get(pl.label), out[pl.label],
                                           tech.p_min_frac * p_cap, p_cap)
        for pl in self.drs:
            expected += self._dr_expected(pl, m, out[pl.label], dt_h)
        room = {pl.label: self._storage_room(pl, m, dt_h) for pl in self.storages}
        planned = {k: min(max(out[k], -chg), dis) for k, (dis, chg) in room.items()}
        expected += sum(planned.values())
        move = p.ramp_use_frac * p.ramp_limit_mw_per_min * p.step_s / 60.0
        excess = self._uncontrolled(m) - expected
        excess -= min(max(excess, m.sub_p_mw - move), m.sub_p_mw + move)
        if abs(excess) <= 1e-9:
            return out
        if excess > 0:
            can = {k: room[k][0] - planned[k] for k in room}
        else:
            can = {k: room[k][1] + planned[k] for k in room}
        extra: dict[str, float] = {}
        self._share(abs(excess), can, extra)
        for k, v in extra.items():
            out[k] = planned[k] + math.copysign(v, excess)
        return out

    def _uncontrolled(self, m: Measurement) -> float:
        """Rule 1: ``U``, the import the feeder would draw without FCMs (MW), with the
        operator's forecast of this step in place of the measured campus draw (rule 1b)."""
        u = m.sub_p_mw + sum(m.fcm[pl.label].p_mw for pl in self.placements if pl.label in m.fcm)
        if self.params.feedforward:
            for name, p_now in m.campus_p_mw.items():
                nx = m.campus_next_mw.get(name)
                if nx is not None:
                    u += nx - float(p_now)
                    continue
                fc = m.campus_forecast_mw.get(name)
                if fc is not None and len(fc) and math.isfinite(float(fc[0])):
                    u += float(fc[0]) - float(p_now)
        return u

    def _bus_ok(self, pl: Placement, m: Measurement) -> bool:
        """Is the bus voltage at or above ``v_min_pu`` (unknown counts as yes)?"""
        v = m.bus_v_pu.get(pl.bus)
        return v is None or not math.isfinite(v) or v >= self.params.v_min_pu

    def _gen_expected(self, pl: Placement, st: Any, p_set: float, p_min: float, p_cap: float) -> float:
        """What the generator will deliver this step for ``p_set`` (models.fcm.generator.Generator
        without its min up/down bookkeeping: a committed unit stays within its ramp and at or
        above its minimum; an uncommitted one reaches at most ``max(P_min, RΔt)``)."""
        tech = self.catalog[pl.kind]
        r = tech.ramp_mw_per_min_for(p_cap) * self.params.step_s / 60.0
        if st is None or not st.committed:
            if p_set <= 0.0:
                return 0.0
            return min(max(p_set, p_min), max(p_min, min(r, p_cap)))
        prev = float(st.p_mw)
        if p_set <= 0.0 and st.time_in_state_s >= tech.min_up_s:
            return 0.0
        return min(max(p_set, max(p_min, prev - r)), min(p_cap, prev + r))

    def _dr(self, pl: Placement, m: Measurement, dt_h: float) -> tuple[float, float]:
        """(setpoint, expected output) of a DR module: curtail in a sag, pay back once the
        voltage has recovered (rule 4)."""
        p = self.params
        d_cap, budget = self.sizes[pl.label]
        st = m.fcm.get(pl.label)
        debt = float(st.debt_mwh) if st is not None else 0.0
        used = float(st.soc_mwh) if st is not None else 0.0
        v = m.bus_v_pu.get(pl.bus)
        if v is not None and math.isfinite(v):
            if v < p.sag_pu:
                self.dr_active.add(pl.label)
            elif v > p.v_min_pu + p.dr_release_pu:
                self.dr_active.discard(pl.label)
        self._dr_track(pl, m)
        left = max(budget - used, 0.0) / dt_h if budget > 0 else d_cap
        if pl.label in self.dr_active and left > 1e-9:
            return d_cap, min(d_cap, left, self._host_mw(pl, m))
        recovered = v is None or not math.isfinite(v) or v > p.v_min_pu + p.dr_release_pu
        was_curtailing = st is not None and st.p_mw > 1e-9
        if debt > 1e-9 and recovered and not was_curtailing:  # no +D̄ → −D̄ swing in one step
            return -d_cap, -min(d_cap, debt / dt_h)
        # deferred; the device still pays at its deadline (models.fcm.dr.DemandResponse)
        return 0.0, self._dr_expected(pl, m, 0.0, dt_h)

    def _host_mw(self, pl: Placement, m: Measurement) -> float:
        """The load of the DR module's bus, which bounds its curtailment: its nominal load ×
        the measured background scale (the device's bound, a step late as measured)."""
        bg = m.background_p_mw
        scale = (bg / self.nominal_total_mw if bg is not None and math.isfinite(bg)
                 and self.nominal_total_mw > 0 else 1.0)
        return max(0.0, self.host_nominal_mw[pl.label] * scale)

    def _dr_track(self, pl: Placement, m: Measurement) -> None:
        """Time since the module's curtailment ended, counted from its measured output (the
        controller knows the payback window W, so it can foresee the forced payback)."""
        st = m.fcm.get(pl.label)
        self.dr_since_s[pl.label] = 0.0 if st is not None and st.p_mw > 1e-9 \
            else self.dr_since_s.get(pl.label, 0.0) + self.params.step_s

    def _dr_expected(self, pl: Placement, m: Measurement, p_set: float, dt_h: float) -> float:
        """What the DR device (models.fcm.dr.DemandResponse) delivers this step for the
        setpoint ``p_set``: curtailment within its budget, or payback at ``−p_set`` unless
        the deadline forces more."""
        d_cap, budget = self.sizes[pl.label]
        st = m.fcm.get(pl.label)
        debt = float(st.debt_mwh) if st is not None else 0.0
        if p_set > 1e-9:
            used = float(st.soc_mwh) if st is not None else 0.0
            left = max(budget - used, 0.0) / dt_h if budget > 0 else d_cap
            return min(p_set, d_cap, left, self._host_mw(pl, m))
        if debt <= 1e-9:
            return 0.0
        tech = self.catalog[pl.kind]
        since = self.dr_since_s.get(pl.label, 0.0)
        left_s = max(tech.payback_window_s - since - self.params.step_s, 0.0)
        forced = (debt - d_cap * left_s / 3600.0) / dt_h
        return -min(max(-p_set, forced, 0.0), d_cap, debt / dt_h)

    def _storage_room(self, pl: Placement, m: Measurement, dt_h: float) -> tuple[float, float]:
        """(discharge, charge) power this step can deliver within the energy bounds."""
        tech = self.catalog[pl.kind]
        p_cap, e_cap = self.sizes[pl.label]
        e = m.fcm[pl.label].soc_mwh if pl.label in m.fcm else tech.soc_init * e_cap
        e_dis = max(e - tech.soc_min * e_cap, 0.0) * tech.eta_discharge
        e_chg = max(tech.soc_max * e_cap - e, 0.0) / tech.eta_charge
        # taper near a bound: a store delivering P can still be walked down to 0 at RΔt per
        # step before the bound stops it (energy P²Δt_h/(2RΔt)), so reaching it is no step
        r = self.params.ramp_limit_mw_per_min * self.params.step_s / 60.0
        dis = min(p_cap, e_dis / dt_h, math.sqrt(2.0 * r * e_dis / dt_h))
        chg = min(p_cap, e_chg / dt_h, math.sqrt(2.0 * r * e_chg / dt_h))
        return dis, chg

    @staticmethod
    def _share(need: float, can: Mapping[str, float], out: dict[str, float]) -> float:
        """Split ``need`` over ``can`` in proportion to each one's capability; returns the total."""
        total = sum(can.values())
        if total <= 0:
            return 0.0
        take = min(need, total)
        for k, c in can.items():
            out[k] = take * c / total
        return take

    def _drift(self, pl: Placement, m: Measurement, dt_h: float) -> float:
        """Rule 2: the storage's drift power towards ``soc_init·Ē`` (+ = charging), at most
        ``restore_frac·P̄``; no charging while its bus is below ``v_min_pu``."""
        tech = self.catalog[pl.kind]
        p_cap, e_cap = self.sizes[pl.label]
        e = m.fcm[pl.label].soc_mwh if pl.label in m.fcm else tech.soc_init * e_cap
        limit = self.params.restore_frac * p_cap
        gap_mwh = tech.soc_init * e_cap - e
        if gap_mwh > 1e-6 and self._bus_ok(pl, m):
            return min(limit, gap_mwh / (tech.eta_charge * dt_h))
        if gap_mwh < -1e-6:
            return -min(limit, -gap_mwh * tech.eta_discharge / dt_h)
        return 0.0


def rule_params_from_scenario(scenario: Any, step_s: float | None = None) -> RuleParams:
    """Rule parameters from the scenario (``step_s`` default: the co-simulation step)."""
    return RuleParams(
        step_s=float(step_s if step_s is not None else scenario.simulation.step_s),
        ramp_limit_mw_per_min=scenario.grid.ramp_limit_mw_per_min,
        v_min_pu=scenario.grid.v_min_pu,
    )
