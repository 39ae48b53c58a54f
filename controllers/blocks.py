"""FCM constraint blocks shared by Stage I (siting) and Stage II (rolling dispatch).

One builder per technology: :func:`add_storage` (BESS, LDES), :func:`add_generator`,
:func:`add_dr`. Each fills an empty Pyomo ``Block`` over the horizon steps ``T`` with
step Δt_h hours and exposes the same interface:

* ``b.p_mw[t]``: net injection into the grid (MW, + = discharge / generation / curtailment,
  − = charging / payback), an ``Expression`` to hand to the network block;
* ``b.op_cost``: operating cost over the horizon ($), an ``Expression``;
* technology-specific state (``b.E`` energy, ``b.u`` commitment, ``b.D`` DR debt).

Fixed or variable size
----------------------
The size arguments ``p_cap`` (MW) and ``e_cap`` (MWh) may be plain numbers (Stage II: the
placement's ``p_mw``/``e_mwh``) or Pyomo variables/expressions (Stage I: e.g.
``n_modules * p_mw_per_module`` with ``n_modules ≤ max_modules · x``). Wherever the size
multiplies a binary the builders use the big-M form with ``p_max`` (an upper bound of
``p_cap``: pass the catalog maximum in Stage I; defaults to ``p_cap`` when it is a number),
so the model stays linear. With a numeric size the big-M forms are exact.

Initial states (``e_init``, ``p_init``, ...) may be numbers, mutable Params or expressions;
Stage II creates mutable Params so a rolling controller only updates values.

Equations are in each builder's docstring, with the symbols of docs/optimization.md §2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo

from models.fcm_catalog import DRType, FCMType, GeneratorType, Placement, StorageType


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _big_m(p_cap: Any, p_max: float | None, what: str) -> float:
    if p_max is not None:
        return float(p_max)
    if _is_number(p_cap):
        return float(p_cap)
    raise ValueError(f"{what}: p_max (an upper bound of the variable size p_cap) is required")


@dataclass(frozen=True)
class StorageSpec:
    """Technology parameters of a storage block (per unit of its size, so size-independent)."""

    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.1
    soc_max: float = 0.9
    cost_per_mwh: float = 0.0

    @classmethod
    def from_catalog(cls, tech: StorageType) -> "StorageSpec":
        return cls(tech.eta_charge, tech.eta_discharge, tech.soc_min, tech.soc_max, tech.cost_per_mwh)


@dataclass(frozen=True)
class GeneratorSpec:
    """Technology parameters of a generator block.

    ``ramp_frac_per_min`` is the ramp rate as a fraction of the rated power per minute
    (catalog ``ramp_mw_per_min / p_mw_per_module``), so it scales with the size.
    """

    p_min_frac: float = 0.3
    ramp_frac_per_min: float = 0.5
    min_up_s: float = 600.0
    min_down_s: float = 600.0
    startup_cost: float = 0.0
    cost_per_mwh: float = 0.0

    @classmethod
    def from_catalog(cls, tech: GeneratorType) -> "GeneratorSpec":
        return cls(
            tech.p_min_frac, tech.ramp_mw_per_min / tech.p_mw_per_module, tech.min_up_s,
            tech.min_down_s, tech.startup_cost, tech.cost_per_mwh,
        )


@dataclass(frozen=True)
class DRSpec:
    """Technology parameters of a DR block: payback fraction φ and window W (seconds)."""

    payback_frac: float = 1.0
    payback_window_s: float = 3600.0
    cost_per_mwh: float = 0.0

    @classmethod
    def from_catalog(cls, tech: DRType) -> "DRSpec":
        return cls(tech.payback_frac, tech.payback_window_s, tech.cost_per_mwh)


def spec_from_catalog(tech: FCMType) -> StorageSpec | GeneratorSpec | DRSpec:
    """The block spec for a catalog entry (chosen by its ``technology``)."""
    if isinstance(tech, StorageType):
        return StorageSpec.from_catalog(tech)
    if isinstance(tech, GeneratorType):
        return GeneratorSpec.from_catalog(tech)
    if isinstance(tech, DRType):
        return DRSpec.from_catalog(tech)
    raise TypeError(f"unknown FCM technology {type(tech).__name__}")


def placement_sizes(placement: Placement, tech: FCMType) -> tuple[float, float]:
    """``(P̄, Ē)`` of a placement: its ``p_mw`` and its ``e_mwh``, or, when ``e_mwh`` is 0,
    modules × the catalog's energy per module (storage energy, DR event budget), as the
    device models in :mod:`models.devices` do. Generators have ``Ē = 0``."""
    p_cap = float(placement.p_mw)
    if isinstance(tech, GeneratorType):
        return p_cap, 0.0
    if placement.e_mwh > 0:
        return p_cap, float(placement.e_mwh)
    return p_cap, p_cap / tech.p_mw_per_module * tech.e_mwh_per_module


def add_storage(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: StorageSpec,
    *,
    p_cap: Any,
    e_cap: Any,
    e_init: Any,
    e_target: Any = None,
    p_max: float | None = None,
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
        op_cost = c Σ_t (P^c_t + P^d_t) Δt_h

    ``P̄ = p_cap``, ``Ē = e_cap``, ``M = p_max`` (or ``p_cap`` when numeric). The energy
    bounds are hard, so an ``e_init`` outside what the first step can reach is infeasible
    (the rolling controller turns that into its fallback). ``e_target=None``: no target.
    Exposes ``E[t]`` for ``t = 0..|T|`` (``E[0]`` the initial energy), ``pc``, ``pd``, ``u``,
    ``p_mw``, ``target_shortfall_mwh`` and ``op_cost``.
    """
    m_big = _big_m(p_cap, p_max, "add_storage")
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
    b.target_shortfall_mwh = pyo.Expression(expr=b.e_short)
    b.op_cost = pyo.Expression(
        expr=spec.cost_per_mwh * sum((b.pc[t] + b.pd[t]) * dt_h for t in b.T)
    )
    return b


def add_generator(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: GeneratorSpec,
    *,
    p_cap: Any,
    u_init: Any = 0,
    p_init: Any = 0.0,
    must_on: Sequence[Any] | None = None,
    must_off: Sequence[Any] | None = None,
    p_max: float | None = None,
) -> pyo.Block:
    """Fast-ramping generator with commitment (docs/optimization.md §2.2).

    ::

        u_t − u_{t−1} = y_t − z_t,   u, y, z ∈ {0, 1},  u_{−1} = u^init
        p_t ≤ P̄,  p_t ≤ M u_t,  p_t ≥ π P̄ − π M (1 − u_t)          (min/max output)
        p_t − p_{t−1} ≤ ρ P̄ Δt_min + M y_t                           (ramp up; a start is free)
        p_{t−1} − p_t ≤ ρ P̄ Δt_min + M z_t                           (ramp down; a stop is free)
        Σ_{τ=t−U+1..t} y_τ ≤ u_t,   Σ_{τ=t−D+1..t} z_τ ≤ 1 − u_t      (min up/down time)
        u_t ≥ must_on_t,   u_t ≤ 1 − must_off_t                       (carried-over up/down time)
        op_cost = c Σ_t p_t Δt_h + C^SU Σ_t y_t

    ``P̄ = p_cap``, ``π = p_min_frac``, ``ρ = ramp_frac_per_min``, ``Δt_min = 60 Δt_h``,
    ``U = ⌈min_up_s / Δt⌉``, ``D = ⌈min_down_s / Δt⌉`` steps, ``M = p_max``. ``must_on`` /
    ``must_off`` (one value per step, numbers or mutable Params, default 0) carry the minimum
    up/down time of a state that started before the horizon; see :func:`carried_min_time`.
    Exposes ``u``, ``y``, ``z``, ``pg``, ``p_mw`` and ``op_cost``.
    """
    m_big = _big_m(p_cap, p_max, "add_generator")
    steps = list(time)
    n = len(steps)
    dt_s = dt_h * 3600.0
    up = max(1, math.ceil(spec.min_up_s / dt_s - 1e-9))
    down = max(1, math.ceil(spec.min_down_s / dt_s - 1e-9))
    ramp = spec.ramp_frac_per_min * dt_h * 60.0
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.u = pyo.Var(b.T, domain=pyo.Binary)
    b.y = pyo.Var(b.T, domain=pyo.Binary)
    b.z = pyo.Var(b.T, domain=pyo.Binary)
    b.pg = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    pos = {t: k for k, t in enumerate(steps)}
    must_on = list(must_on) if must_on is not None else [0] * n
    must_off = list(must_off) if must_off is not None else [0] * n

    def u_prev(t: int) -> Any:
        return u_init if pos[t] == 0 else b.u[steps[pos[t] - 1]]

    def p_prev(t: int) -> Any:
        return p_init if pos[t] == 0 else b.pg[steps[pos[t] - 1]]

    b.logic = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] - u_prev(t) == b.y[t] - b.z[t])
    b.p_hi = pyo.Constraint(b.T, rule=lambda b, t: b.pg[t] <= p_cap)
    b.p_on = pyo.Constraint(b.T, rule=lambda b, t: b.pg[t] <= m_big * b.u[t])
    b.p_lo = pyo.Constraint(
        b.T,
        rule=lambda b, t: b.pg[t] >= spec.p_min_frac * p_cap - spec.p_min_frac * m_big * (1 - b.u[t]),
    )
    b.ramp_up = pyo.Constraint(
        b.T, rule=lambda b, t: b.pg[t] - p_prev(t) <= ramp * p_cap + m_big * b.y[t]
    )
    b.ramp_down = pyo.Constraint(
        b.T, rule=lambda b, t: p_prev(t) - b.pg[t] <= ramp * p_cap + m_big * b.z[t]
    )
    b.min_up = pyo.Constraint(
        b.T, rule=lambda b, t: sum(b.y[steps[k]] for k in range(max(0, pos[t] - up + 1), pos[t] + 1))
        <= b.u[t]
    )
    b.min_down = pyo.Constraint(
        b.T, rule=lambda b, t: sum(b.z[steps[k]] for k in range(max(0, pos[t] - down + 1), pos[t] + 1))
        <= 1 - b.u[t]
    )
    b.carry_on = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] >= must_on[pos[t]])
    b.carry_off = pyo.Constraint(b.T, rule=lambda b, t: b.u[t] <= 1 - must_off[pos[t]])
    b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.pg[t])
    b.op_cost = pyo.Expression(
        expr=sum(spec.cost_per_mwh * b.pg[t] * dt_h + spec.startup_cost * b.y[t] for t in b.T)
    )
    return b


def carried_min_time(
    committed: bool, time_in_state_s: float, spec: GeneratorSpec, dt_s: float, steps: int
) -> tuple[list[int], list[int]]:
    """``(must_on, must_off)`` per horizon step from the state before the horizon.

    A unit on for ``τ`` seconds must stay on for the first ``⌈(min_up_s − τ)/Δt⌉`` steps
    (likewise off / ``min_down_s``).
    """
    on = [0] * steps
    off = [0] * steps
    left_s = (spec.min_up_s if committed else spec.min_down_s) - float(time_in_state_s)
    k = max(0, min(steps, math.ceil(left_s / dt_s - 1e-9))) if math.isfinite(left_s) else 0
    for i in range(k):
        (on if committed else off)[i] = 1
    return on, off


def add_dr(
    b: pyo.Block,
    time: Sequence[int],
    dt_h: float,
    spec: DRSpec,
    *,
    p_cap: Any,
    e_cap: Any,
    e_used_init: Any = 0.0,
    debt_init: Any = 0.0,
    p_max: float | None = None,
) -> pyo.Block:
    """Demand response: curtailment with an event energy cap and payback (docs §2.3).

    ::

        0 ≤ d_t ≤ D̄,   0 ≤ r_t ≤ D̄,   d_t ≤ M w_t,   r_t ≤ M (1 − w_t),   w_t ∈ {0, 1}
        e^used + Σ_t d_t Δt_h ≤ B                                   (per-event energy cap)
        D_0 = D^init,  D_{t+1} = D_t + φ d_t Δt_h − r_t Δt_h,  D_t ≥ 0   (deferred energy)
        D_{|T|} ≤ φ Σ_{t ≥ |T| − W} d_t Δt_h                          (paid back within W)
        p_t = d_t − r_t
        op_cost = c Σ_t d_t Δt_h

    ``D̄ = p_cap``, ``B = e_cap``, ``W = ⌈payback_window_s / Δt⌉`` steps, ``M = p_max``. The
    payback rule asks that all debt except that of the last ``W`` steps' curtailment is
    cleared by the end of the horizon (a horizon-level form of the device's window rule).
    Exposes ``d``, ``r``, ``w``, ``D``, ``p_mw`` and ``op_cost``.
    """
    m_big = _big_m(p_cap, p_max, "add_dr")
    steps = list(time)
    n = len(steps)
    window = max(1, math.ceil(spec.payback_window_s / (dt_h * 3600.0) - 1e-9))
    b.T = pyo.Set(initialize=steps, ordered=True)
    b.TD = pyo.Set(initialize=list(range(n + 1)), ordered=True)
    b.d = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.r = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.w = pyo.Var(b.T, domain=pyo.Binary)
    b.D = pyo.Var(b.TD, domain=pyo.NonNegativeReals)
    pos = {t: k for k, t in enumerate(steps)}

    b.d_cap = pyo.Constraint(b.T, rule=lambda b, t: b.d[t] <= p_cap)
    b.r_cap = pyo.Constraint(b.T, rule=lambda b, t: b.r[t] <= p_cap)
    b.d_mode = pyo.Constraint(b.T, rule=lambda b, t: b.d[t] <= m_big * b.w[t])
    b.r_mode = pyo.Constraint(b.T, rule=lambda b, t: b.r[t] <= m_big * (1 - b.w[t]))
    b.budget = pyo.Constraint(expr=e_used_init + sum(b.d[t] * dt_h for t in b.T) <= e_cap)
    b.debt_start = pyo.Constraint(expr=b.D[0] == debt_init)
    b.debt = pyo.Constraint(
        b.T,
        rule=lambda b, t: b.D[pos[t] + 1]
        == b.D[pos[t]] + spec.payback_frac * b.d[t] * dt_h - b.r[t] * dt_h,
    )
    b.payback = pyo.Constraint(
        expr=b.D[n] <= spec.payback_frac * sum(b.d[steps[k]] * dt_h for k in range(max(0, n - window), n))
    )
    b.p_mw = pyo.Expression(b.T, rule=lambda b, t: b.d[t] - b.r[t])
    b.op_cost = pyo.Expression(expr=spec.cost_per_mwh * sum(b.d[t] * dt_h for t in b.T))
    return b
