"""Baseline controllers (``none``, ``rule``) and the controller factory used by ControllerSim.

Both have the :class:`controllers.interface.Controller` interface ``step(measurement) ->
Dispatch`` and act on every call (ControllerSim calls them every co-simulation step).

``rule`` is transparent on purpose, so every setpoint can be traced to one line below:

1. **Ramp smoothing.** ``U = P^sub + Σ p_fcm`` is the import the feeder would draw without
   FCMs (from the last measurement). A target follows it at the upstream ramp limit and
   never sits more than one ramp allowance from the measured import ``P^sub``::

       T_k = clip(clip(U_k, T_{k−1} − RΔt, T_{k−1} + RΔt), P^sub_k − RΔt, P^sub_k + RΔt)

   and the FCMs supply the gap ``G = U − T`` (+ = inject). The outer clip matters after a
   jump the controller could not see coming (measurements arrive one step late): the
   import is then walked back and released at no more than ``RΔt`` per step instead of
   being pulled back to the old trajectory in one go.
2. **Allocation.** ``G > 0``: storage discharges first, shared in proportion to what each
   can deliver this step, ``min(P̄, (E − E_min) η_d / Δt_h)``; the rest goes to the
   generators (a generator set below its minimum output runs at the minimum, as the device
   does). ``G < 0``: storage charges, in proportion to ``min(P̄, (E_max − E)/(η_c Δt_h))``.
3. **Restoring.** When calm (``|G|`` below the dead band) storage moves its stored energy
   towards the end target ``soc_init·Ē`` at no more than ``restore_frac·P̄`` and no more than
   a share of the ramp allowance, so restoring never causes a ramp violation by itself.
4. **DR.** A DR module curtails fully (``D̄``; the device enforces its budget) while the
   voltage at its bus is below ``v_min_pu``, and stops once it is back above
   ``v_min_pu + dr_release_pu`` (hysteresis); the device then pays the energy back.

A measurement from a diverged power flow (``converged=False``) carries no usable numbers;
the rule controller then sets every FCM to 0 for that step (status ``rule:no-measurement``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.blocks import placement_sizes
from controllers.interface import Controller, Dispatch, Measurement
from models.errors import ScenarioError
from models.fcm_catalog import DRType, FCMType, GeneratorType, Placement, StorageType
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
    when used as its fallback); ``ramp_limit_mw_per_min``: upstream limit R."""

    step_s: float
    ramp_limit_mw_per_min: float
    v_min_pu: float = 0.95
    dr_release_pu: float = 0.01
    restore_frac: float = 0.1
    deadband_mw: float = 1e-3


class RuleController:
    """``rule``: ramp smoothing by storage then generation, SoC restoring, DR on low voltage.

    See the module docstring for the four rules. The only state is the ramp target ``T``
    and which DR modules are curtailing.
    """

    def __init__(self, feeder: FeederData, placements: Sequence[Placement],
                 catalog: Mapping[str, FCMType], params: RuleParams) -> None:
        self.params = params
        self.placements = list(placements)
        self.catalog = dict(catalog)
        self.sizes = {pl.label: placement_sizes(pl, catalog[pl.kind]) for pl in placements}
        self.target_mw: float | None = None
        self.dr_active: set[str] = set()
        for pl in placements:
            if not feeder.has_bus(pl.bus):
                raise ScenarioError("fcm", f"placements[{pl.label}].bus",
                                    f"unknown bus {pl.bus!r} of feeder {feeder.name}")

    def step(self, measurement: Measurement) -> Dispatch:
        p = self.params
        out = {pl.label: 0.0 for pl in self.placements}
        if not measurement.converged or not math.isfinite(measurement.sub_p_mw):
            return Dispatch(p_mw=out, status="rule:no-measurement")
        dt_h = p.step_s / 3600.0
        fcm_now = sum(measurement.fcm[pl.label].p_mw for pl in self.placements
                      if pl.label in measurement.fcm)
        uncontrolled = measurement.sub_p_mw + fcm_now
        ramp = p.ramp_limit_mw_per_min * p.step_s / 60.0
        if self.target_mw is None:
            self.target_mw = uncontrolled
        target = min(max(uncontrolled, self.target_mw - ramp), self.target_mw + ramp)
        self.target_mw = min(max(target, measurement.sub_p_mw - ramp), measurement.sub_p_mw + ramp)
        gap = uncontrolled - self.target_mw

        storages = [pl for pl in self.placements if isinstance(self.catalog[pl.kind], StorageType)]
        gens = [pl for pl in self.placements if isinstance(self.catalog[pl.kind], GeneratorType)]
        headroom = {pl.label: self._storage_room(pl, measurement, dt_h) for pl in storages}
        if gap > p.deadband_mw:
            can = {k: v[0] for k, v in headroom.items()}
            used = self._share(gap, can, out)
            rest = gap - used
            for pl in gens:
                if rest <= p.deadband_mw:
                    break
                p_cap = self.sizes[pl.label][0]
                out[pl.label] = min(rest, p_cap)
                rest -= out[pl.label]
        elif gap < -p.deadband_mw:
            can = {k: v[1] for k, v in headroom.items()}
            used = self._share(-gap, can, out)
            for k in can:
                out[k] = -out[k]
        else:
            share = ramp / (2.0 * max(len(storages), 1))
            for pl in storages:
                out[pl.label] = self._restore(pl, measurement, dt_h, share, headroom[pl.label])

        for pl in self.placements:
            if not isinstance(self.catalog[pl.kind], DRType):
                continue
            v = measurement.bus_v_pu.get(pl.bus)
            if v is not None and math.isfinite(v):
                if v < p.v_min_pu:
                    self.dr_active.add(pl.label)
                elif v > p.v_min_pu + p.dr_release_pu:
                    self.dr_active.discard(pl.label)
            out[pl.label] = self.sizes[pl.label][0] if pl.label in self.dr_active else 0.0
        return Dispatch(p_mw=out, status="rule")

    def _storage_room(self, pl: Placement, m: Measurement, dt_h: float) -> tuple[float, float]:
        """(discharge, charge) power this step can deliver within the energy bounds."""
        tech = self.catalog[pl.kind]
        p_cap, e_cap = self.sizes[pl.label]
        e = m.fcm[pl.label].soc_mwh if pl.label in m.fcm else tech.soc_init * e_cap
        dis = min(p_cap, max(e - tech.soc_min * e_cap, 0.0) * tech.eta_discharge / dt_h)
        chg = min(p_cap, max(tech.soc_max * e_cap - e, 0.0) / (tech.eta_charge * dt_h))
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

    def _restore(self, pl: Placement, m: Measurement, dt_h: float, ramp_share: float,
                 room: tuple[float, float]) -> float:
        tech = self.catalog[pl.kind]
        p_cap, e_cap = self.sizes[pl.label]
        e = m.fcm[pl.label].soc_mwh if pl.label in m.fcm else tech.soc_init * e_cap
        limit = min(self.params.restore_frac * p_cap, ramp_share)
        gap_mwh = tech.soc_init * e_cap - e
        if gap_mwh > 1e-6:  # charge towards the target
            return -min(limit, room[1], gap_mwh / (tech.eta_charge * dt_h))
        if gap_mwh < -1e-6:  # discharge towards it
            return min(limit, room[0], -gap_mwh * tech.eta_discharge / dt_h)
        return 0.0


def rule_params_from_scenario(scenario: Any, step_s: float | None = None) -> RuleParams:
    """Rule parameters from the scenario (``step_s`` default: the co-simulation step)."""
    return RuleParams(
        step_s=float(step_s if step_s is not None else scenario.simulation.step_s),
        ramp_limit_mw_per_min=scenario.grid.ramp_limit_mw_per_min,
        v_min_pu=scenario.grid.v_min_pu,
    )


def make_controller(kind: str, feeder: FeederData, placements: Sequence[Placement],
                    catalog: Mapping[str, FCMType], scenario: Any, forecaster: Any = None) -> Controller:
    """The controller named by ``controller.kind``: ``none``, ``rule`` or ``mpc``.

    ``forecaster`` overrides the one ``controller.forecaster`` selects (e.g. a
    :class:`controllers.forecast.PerfectForecaster` holding the realised campus series).
    """
    for i, pl in enumerate(placements):
        if pl.kind not in catalog:
            raise ScenarioError("fcm", f"placements[{i}].kind",
                                f"{pl.kind!r} is not in the catalog; allowed: {', '.join(sorted(catalog))}")
    if kind == "none":
        return IdleController(placements)
    if kind == "rule":
        return RuleController(feeder, placements, catalog, rule_params_from_scenario(scenario))
    if kind == "mpc":
        from controllers.stage2 import RollingMPC

        return RollingMPC.from_scenario(feeder, placements, catalog, scenario, forecaster=forecaster)
    raise ScenarioError("controller", "kind", f"unknown controller {kind!r}; allowed: none, rule, mpc")
