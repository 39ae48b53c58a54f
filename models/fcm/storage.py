"""Storage FCMs (BESS, LDES): catalog entry, device physics, Pyomo block (docs/fcm.md).

Two catalog kinds share this technology in the shipped scenarios: a 2-hour battery (``bess``)
and a long-duration store (``ldes``, 10 hours, lower efficiency). Equations: the device in
:class:`Storage` (docs/cosim.md §4), the block in :func:`add_storage` (docs/optimization.md
§2.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import pyomo.environ as pyo
from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator

from models.fcm.base import (
    Device,
    DeviceOutput,
    FaultSupport,
    Placement,
    Technology,
    add_pq_capability,
    big_m,
    finite,
)
from models.schema import StrictModel


class StorageType(StrictModel):
    """Battery (BESS) or long-duration storage (LDES) module."""

    technology: Literal["storage"] = "storage"
    p_mw_per_module: PositiveFloat = 0.25
    e_mwh_per_module: PositiveFloat = 0.5
    eta_charge: float = Field(0.95, gt=0, le=1)
    eta_discharge: float = Field(0.95, gt=0, le=1)
    soc_min: float = Field(0.1, ge=0, le=1)
    soc_max: float = Field(0.9, ge=0, le=1)
    soc_init: float = Field(0.5, ge=0, le=1)
    ramp_mw_per_s: PositiveFloat | None = None
    capex_per_module: NonNegativeFloat = 150_000.0
    cost_per_mwh: NonNegativeFloat = 10.0
    max_modules: int = Field(8, ge=1)
    # the inverter (docs/fcm.md, "Reactive power and fault-time support")
    s_over_p: float = Field(1.0, ge=1.0, le=3.0)
    s_over_p_max: float = Field(1.5, ge=1.0, le=3.0)
    capex_per_kva: NonNegativeFloat = 60.0
    cost_per_mvarh: NonNegativeFloat = 0.5
    fault_k: float = Field(2.0, ge=0, le=10)
    fault_current_limit_pu: float = Field(1.0, gt=0, le=2)
    fault_deadband_pu: float = Field(0.1, ge=0, le=0.5)

    @model_validator(mode="after")
    def _soc_band(self) -> "StorageType":
        if not self.soc_min < self.soc_max:
            raise ValueError(f"soc_min ({self.soc_min}) must be below soc_max ({self.soc_max})")
        if not self.soc_min <= self.soc_init <= self.soc_max:
            raise ValueError(f"soc_init ({self.soc_init}) must lie in [soc_min, soc_max] = "
                             f"[{self.soc_min}, {self.soc_max}]")
        if self.s_over_p_max < self.s_over_p:
            raise ValueError(f"s_over_p_max ({self.s_over_p_max}) must be at least s_over_p "
                             f"({self.s_over_p})")
        return self


class Storage(Device):
    """Battery or long-duration storage with charge/discharge efficiencies.

    Energy balance over a step of Δt seconds (Δt_h = Δt/3600)::

        E_{t+1} = E_t + η_c · P^c · Δt_h − P^d · Δt_h / η_d,   P = P^d − P^c

    Only one of P^c, P^d is non-zero in a step (the sign of the setpoint chooses). The
    delivered power is the setpoint clipped, in this order, to the power rating
    ``|P| ≤ P̄``, the ramp limit ``|P − P_prev| ≤ R·Δt`` (if the type has one), and the
    energy bounds: discharge ``P ≤ (E − E_min) η_d / Δt_h``, charge
    ``−P ≤ (E_max − E) / (η_c Δt_h)``. The energy bound wins over the ramp limit: a store
    cannot deliver energy it does not hold. Reactive power is limited by the inverter's
    apparent-power rating, ``|Q| ≤ sqrt(S̄² − P²)``. Operating cost = ``c · |P| · Δt_h +
    c_q · |Q| · Δt_h`` (throughput, reactive). Its fault-time response is
    :class:`models.fcm.base.FaultSupport`'s.
    """

    def __init__(self, placement: Placement, tech: StorageType) -> None:
        self.label = placement.label
        self.p_max, self.e_max_mwh = TECHNOLOGY.sizes(placement, tech)
        self.s_max = TECHNOLOGY.s_mva(placement, tech)
        self.tech = tech
        self.q_prev = 0.0
        self.e_lo = tech.soc_min * self.e_max_mwh
        self.e_hi = tech.soc_max * self.e_max_mwh
        self.eta_c = tech.eta_charge
        self.eta_d = tech.eta_discharge
        self.ramp_mw_per_s = tech.ramp_mw_per_s
        self.cost_per_mwh = tech.cost_per_mwh
        self.e_mwh = min(max(tech.soc_init * self.e_max_mwh, self.e_lo), self.e_hi)
        self.p_prev = 0.0

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        dt_h = dt_s / 3600.0
        p = finite(p_set_mw)
        p = min(max(p, -self.p_max), self.p_max)
        if self.ramp_mw_per_s is not None:
            r = self.ramp_mw_per_s * dt_s
            p = min(max(p, self.p_prev - r), self.p_prev + r)
        if p > 0:
            p = min(p, max(self.e_mwh - self.e_lo, 0.0) * self.eta_d / dt_h)
            self.e_mwh -= p * dt_h / self.eta_d
        elif p < 0:
            p = max(p, -max(self.e_hi - self.e_mwh, 0.0) / (self.eta_c * dt_h))
            self.e_mwh += -p * self.eta_c * dt_h
        # round-off must not push the state outside its bounds
        self.e_mwh = min(max(self.e_mwh, self.e_lo), self.e_hi)
        q_room = math.sqrt(max(self.s_max ** 2 - p ** 2, 0.0))
        q = min(max(finite(q_set_mvar), -q_room), q_room)
        self.p_prev, self.q_prev = p, q
        cost = (self.cost_per_mwh * abs(p) + self.tech.cost_per_mvarh * abs(q)) * dt_h
        return DeviceOutput(p, q, self._soc(), self.e_mwh, False, cost)

    def reading(self) -> DeviceOutput:
        return DeviceOutput(0.0, 0.0, self._soc(), self.e_mwh, False, 0.0)

    def fault_support(self) -> FaultSupport:
        """The response at the last step's ``(P, Q)``, currents at 1 pu voltage."""
        i_lim = self.tech.fault_current_limit_pu * self.s_max
        room = math.sqrt(max(i_lim ** 2 - self.p_prev ** 2, 0.0)) - self.q_prev
        return FaultSupport(self.tech.fault_k * self.s_max, max(room, 0.0),
                            self.tech.fault_deadband_pu)

    def _soc(self) -> float:
        return self.e_mwh / self.e_max_mwh if self.e_max_mwh > 0 else math.nan


def add_storage(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: StorageType,
    *,
    p_cap: Any,
    e_cap: Any,
    e_init: Any,
    e_target: Any = None,
    p_max: float | None = None,
    s_cap: Any = None,
) -> pyo.Block:
    """Storage (BESS, LDES) over steps ``T`` of Δt_h hours (docs/optimization.md §2.1).

    ::

        E_0 = E^init
        E_{t+1} = E_t + η_c P^c_t Δt_h − P^d_t Δt_h / η_d          t ∈ T
        0 ≤ P^c_t ≤ P̄,  0 ≤ P^d_t ≤ P̄
        P^d_t ≤ M u_t,  P^c_t ≤ M (1 − u_t),  u_t ∈ {0, 1}          (no simultaneous c/d)
        soc_min Ē ≤ E_{t+1} ≤ soc_max Ē
        E_{|T|} + e^short ≥ E^target,  e^short ≥ 0                  (soft end target)
        p_t = P^d_t − P^c_t
        (p_t, q_t), (p_t, q_t + R_t) in the S̄-polygon         (models.fcm.base.add_pq_capability)
        op_cost = c Σ_t (P^c_t + P^d_t) Δt_h + c_q Σ_t |q_t| Δt_h

    ``spec`` is the catalog entry (``η_c``, ``η_d``, ``soc_min``, ``soc_max``, ``c``, ``c_q``).
    ``P̄ = p_cap``, ``Ē = e_cap``, ``S̄ = s_cap`` (``None``: ``s_over_p · P̄``),
    ``M = p_max`` (or ``p_cap`` when numeric). The energy
    bounds are hard, so an ``e_init`` outside what the first step can reach is infeasible
    (the rolling controller turns that into its fallback). ``e_target=None``: no target.
    Exposes ``E[t]`` for ``t = 0..|T|`` (``E[0]`` the initial energy), ``pc``, ``pd``, ``u``,
    ``p_mw``, ``q_mvar``, ``q_room_mvar``, ``target_shortfall_mwh`` and ``op_cost``.
    """
    m_big = big_m(p_cap, p_max, "add_storage")
    steps = list(time)
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.TE = pyo.Set(initialize=list(range(len(steps) + 1)), ordered=True)
    b.pc = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.pd = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.u = pyo.Var(b.T, domain=pyo.Binary)
    b.E = pyo.Var(b.TE, domain=pyo.NonNegativeReals)
    b.e_short = pyo.Var(domain=pyo.NonNegativeReals)
    pos = {t: k for k, t in enumerate(steps)}

    b.e_start = pyo.Constraint(expr=b.E[0] == e_init)
    b.balance = pyo.Constraint(
        b.T,
        rule=lambda b, t: b.E[pos[t] + 1]
        == b.E[pos[t]] + spec.eta_charge * b.pc[t] * dt_h - b.pd[t] * dt_h / spec.eta_discharge,
    )
    b.pc_cap = pyo.Constraint(b.T, rule=lambda b, t: b.pc[t] <= p_cap)
    b.pd_cap = pyo.Constraint(b.T, rule=lambda b, t: b.pd[t] <= p_cap)
    b.pd_mode = pyo.Constraint(b.T, rule=lambda b, t: b.pd[t] <= m_big * b.u[t])
    b.pc_mode = pyo.Constraint(b.T, rule=lambda b, t: b.pc[t] <= m_big * (1 - b.u[t]))
    b.e_lo = pyo.Constraint(b.T, rule=lambda b, t: b.E[pos[t] + 1] >= spec.soc_min * e_cap)
    b.e_hi = pyo.Constraint(b.T, rule=lambda b, t: b.E[pos[t] + 1] <= spec.soc_max * e_cap)
    if e_target is not None:
        b.e_end = pyo.Constraint(expr=b.E[len(steps)] + b.e_short >= e_target)
    else:
        b.e_short.fix(0.0)
    b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.pd[t] - b.pc[t])
    add_pq_capability(b, spec.s_over_p * p_cap if s_cap is None else s_cap)
    b.target_shortfall_mwh = pyo.Expression(expr=b.e_short)
    b.op_cost = pyo.Expression(
        expr=sum((spec.cost_per_mwh * (b.pc[t] + b.pd[t]) + spec.cost_per_mvarh * b.q_abs[t]) * dt_h
                 for t in b.T)
    )
    return b


class StorageTechnology(Technology):
    """Storage (module docstring). Block state: ``e_init`` (MWh, nominal ``soc_init·Ē``);
    the end target is the nominal energy ``soc_init·Ē``."""

    name = "storage"
    catalog_type = StorageType
    energy_name = "energy capacity"
    inverter = True
    reactive = True

    def e_mwh_per_module(self, tech: StorageType) -> float:
        return float(tech.e_mwh_per_module)

    def s_mva(self, placement: Placement, tech: StorageType) -> float:
        if placement.s_kva is not None:
            return float(placement.s_kva) / 1e3
        return float(tech.s_over_p) * float(placement.p_mw)

    def s_extra_max(self, tech: StorageType) -> float:
        return float(tech.s_over_p_max - tech.s_over_p)

    def placement_problem(self, placement: Placement, tech: StorageType) -> str | None:
        """:meth:`Technology.placement_problem`, and an inverter rated at least P̄:
        ``s_kva ≥ 1000 p_mw``."""
        if (msg := super().placement_problem(placement, tech)) is not None:
            return msg
        if placement.s_kva is not None and placement.s_kva < 1e3 * placement.p_mw * (1 - 1e-9):
            return (f"s_kva: the inverter of a {self.name} placement is rated at least its "
                    f"p_mw, got {placement.s_kva:g} kVA for {placement.p_mw:g} MW; allowed: "
                    f"s_kva >= {1e3 * placement.p_mw:g}")
        return None

    def device(self, placement: Placement, tech: StorageType,
               host_p_mw: float | None = None) -> Storage:
        return Storage(placement, tech)

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: StorageType, *,
                  p_cap: Any, e_cap: Any, p_max: float | None = None,
                  plant_step_s: float | None = None, s_cap: Any = None) -> pyo.Block:
        nominal = tech.soc_init * e_cap
        if isinstance(nominal, (int, float)):  # a numeric size: the state is a parameter
            b.e_init = pyo.Param(mutable=True, initialize=float(nominal))
            b.e_target = pyo.Param(mutable=True, initialize=float(nominal))
            e_init, e_target = b.e_init, b.e_target
        else:  # a variable size (Stage I): the nominal state scales with it
            e_init = e_target = nominal
        return add_storage(b, time, dt_h, tech, p_cap=p_cap, e_cap=e_cap, e_init=e_init,
                           e_target=e_target, p_max=p_max, s_cap=s_cap)

    def set_state(self, b: pyo.Block, tech: StorageType, state: Any, dt_s: float) -> None:
        b.e_init = float(state.soc_mwh)


TECHNOLOGY = StorageTechnology()
