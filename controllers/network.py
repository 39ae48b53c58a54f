"""LinDistFlow network block for the MILPs (Baran & Wu 1989), shared by Stage I and Stage II.

The block is built from plain numbers (:class:`models.network.FeederData` and
:class:`NetworkParams`) over index sets: branches ``L``, buses ``N`` and horizon steps ``T``.
Symbols are those of docs/optimization.md §1.

For each branch ``l = (i → j)`` and step ``t`` (flows in MW/Mvar at the sending end,
``v = |V|²`` in pu², impedances in pu on ``S_base``)::

    P_lt = Σ_{k: j→k} P_kt + (p^L_jt − s_jt) − g_jt + r_l S_base ℓ_lt
    Q_lt = Σ_{k: j→k} Q_kt + (q^L_jt − ρ_j s_jt) − h_jt + x_l S_base ℓ_lt
    v_jt = v_it − 2 (r_l P_lt + x_l Q_lt) / S_base + (r_l² + x_l²) ℓ_lt

``p^L``/``q^L`` are the bus loads (mutable parameters, + = consumption), ``s`` load shed
(unserved, ``0 ≤ s ≤ p^L``, reactive part ``ρ_j = q^L/p^L`` at nominal), ``g``/``h`` the FCM
injections at the bus (+ = into the grid). ``ℓ`` is the squared branch current in pu,
linearised around an operating point (P⁰, Q⁰, v⁰) from an AC power flow::

    ℓ_lt = c^P_l P_lt + c^Q_l Q_lt + c^V_l v_it,
    c^P = 2 P⁰ / (v⁰ S_base²),  c^Q = 2 Q⁰ / (v⁰ S_base²),  c^V = −ℓ⁰ / v⁰,
    ℓ⁰ = (P⁰² + Q⁰²) / (v⁰ S_base²)

(the constant term of the Taylor expansion of ``(P² + Q²)/v`` vanishes because the function
is homogeneous of degree one). At the flat start all ``c`` are zero and the block is the
lossless LinDistFlow of Baran & Wu.

Limits, all soft (penalised slack ≥ 0):

* voltage: ``V_min² − σ⁻_jt ≤ v_jt ≤ V_max² + σ⁺_jt``;
* thermal, an ``n``-sided polygon inscribed in ``P² + Q² ≤ S̄²``:
  ``cos θ_k P_lt + sin θ_k Q_lt ≤ S̄_l cos(π/n) + τ_lt`` for ``θ_k = 2πk/n``;
* substation ramp: ``|P^sub_t − P^sub_{t−1}| ≤ R Δt + ρ_t`` with ``P^sub_{−1}`` the
  measured import (a mutable parameter).

The block exposes the named objective terms as Pyomo ``Expression`` components so a report
can print each value: ``voltage_slack_pu`` (pu·steps of |V| beyond the limit, σ/(2V_lim)),
``thermal_slack_mva`` (MVA·steps), ``ramp_violation_mwh`` (Σ ρ_t Δt_h) and ``unserved_mwh``
(Σ s Δt_h). The caller weights them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo

from models.network import FeederData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkParams:
    """Plain-number parameters of the network block.

    ``dt_s`` is the horizon step Δt in seconds. ``ramp_limit_mw_per_min`` is the upstream limit
    R on the change of substation import (``None``: no ramp constraint). ``thermal_sides`` is
    n of the line-limit polygon (0 disables thermal limits). ``loading_frac`` scales every
    branch rating (1.0 = 100 % of ``rating_mva``); branches without a rating are unlimited.
    ``allow_shedding`` adds the unserved-load variables ``s`` (bounded by the load).
    """

    dt_s: float = 300.0
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    v_source_pu: float = 1.0
    ramp_limit_mw_per_min: float | None = None
    thermal_sides: int = 8
    loading_frac: float = 1.0
    allow_shedding: bool = True

    @property
    def dt_h(self) -> float:
        return self.dt_s / 3600.0


@dataclass(frozen=True)
class OperatingPoint:
    """An AC operating point to linearise the losses around.

    ``v_pu`` maps bus → |V| in pu; ``p_mw``/``q_mvar`` map branch name → sending-end flow
    (MW, Mvar; + = from ``from_bus`` to ``to_bus``). Missing entries count as the flat start
    (|V| = 1, no flow) for that branch.
    """

    v_pu: Mapping[str, float]
    p_mw: Mapping[str, float]
    q_mvar: Mapping[str, float]


def loss_coefficients(feeder: FeederData, op: OperatingPoint | None) -> dict[str, tuple[float, float, float]]:
    """Linearised squared-current coefficients ``(c^P, c^Q, c^V)`` per branch name.

    ``ℓ ≈ c^P P + c^Q Q + c^V v_i`` with ``c^P = 2P⁰/(v⁰S²)``, ``c^Q = 2Q⁰/(v⁰S²)``,
    ``c^V = −ℓ⁰/v⁰`` (docs/optimization.md §1.2). ``op=None`` is the flat start (all zero).
    """
    s2 = feeder.s_base_mva ** 2
    out: dict[str, tuple[float, float, float]] = {}
    for br in feeder.branches:
        if op is None or br.name not in op.p_mw:
            out[br.name] = (0.0, 0.0, 0.0)
            continue
        p0 = float(op.p_mw[br.name])
        q0 = float(op.q_mvar.get(br.name, 0.0))
        v0 = float(op.v_pu.get(br.from_bus, 1.0)) ** 2
        ell0 = (p0 * p0 + q0 * q0) / (v0 * s2)
        out[br.name] = (2.0 * p0 / (v0 * s2), 2.0 * q0 / (v0 * s2), -ell0 / v0)
    return out


def operating_point_from_power_flow(result: Any) -> OperatingPoint:
    """The operating point of an AC snapshot (``models.feeder.PowerFlowResult``-like).

    Uses ``bus_voltages()`` (bus → |V| pu) and ``line_names``/``line_p_mw``/``line_q_mvar``
    (flows entering each branch at its ``from_bus``).
    """
    return OperatingPoint(
        v_pu={str(k): float(v) for k, v in result.bus_voltages().items()},
        p_mw={str(n): float(p) for n, p in zip(result.line_names, result.line_p_mw)},
        q_mvar={str(n): float(q) for n, q in zip(result.line_names, result.line_q_mvar)},
    )


def lossless_operating_point(
    feeder: FeederData,
    v_pu: Mapping[str, float],
    p_load_mw: Mapping[str, float],
    q_load_mvar: Mapping[str, float],
) -> OperatingPoint:
    """An operating point from measured voltages and flows estimated as downstream load sums.

    Used when branch flows are not measured: ``P⁰_l = Σ_{buses below l} p^L`` (and likewise
    Q⁰), i.e. the lossless flow of the given net loads, with the measured |V|.
    """
    p: dict[str, float] = {}
    q: dict[str, float] = {}
    for br in reversed(feeder.branches):
        j = br.to_bus
        p[br.name] = float(p_load_mw.get(j, 0.0)) + sum(p[c.name] for c in feeder.children[j])
        q[br.name] = float(q_load_mvar.get(j, 0.0)) + sum(q[c.name] for c in feeder.children[j])
    return OperatingPoint(v_pu=dict(v_pu), p_mw=p, q_mvar=q)


def build_network(
    b: pyo.Block,
    feeder: FeederData,
    time: Sequence[int],
    params: NetworkParams,
    injections: Mapping[str, Sequence[Any]] | None = None,
    q_injections: Mapping[str, Sequence[Any]] | None = None,
    operating_point: OperatingPoint | None = None,
) -> pyo.Block:
    """Add the LinDistFlow model (module docstring, docs/optimization.md §1) to block ``b``.

    Parameters
    ----------
    b:
        An empty Pyomo ``Block`` (or ``ConcreteModel``) to fill; Stage I passes one block per
        scenario, Stage II its model's ``net`` block.
    feeder:
        The radial feeder; its ``loads`` initialise the mutable load parameters.
    time:
        Horizon step indices ``T`` (e.g. ``range(24)``).
    params:
        Limits and step size.
    injections, q_injections:
        bus → list of objects indexable by ``t`` (Pyomo Var/Expression or numbers) whose sum
        is the FCM injection ``g_jt`` / ``h_jt`` at that bus (MW/Mvar, + = into the grid).
    operating_point:
        Linearisation point for the loss term; ``None`` = flat start (lossless LinDistFlow).

    Components added (all indexed by bus/branch name and ``t``)
    ------------------------------------------------------------
    Mutable params ``p_load_mw[j,t]``, ``q_load_mvar[j,t]``, ``v_source_sq``, ``p_sub_prev_mw``,
    ``cP[l]``, ``cQ[l]``, ``cV[l]``; vars ``P[l,t]``, ``Q[l,t]``, ``v[j,t]``, ``ell[l,t]``,
    ``sv_lo/sv_hi[j,t]``, ``s_th[l,t]``, ``s_ramp[t]``, ``shed[j,t]``; expressions
    ``p_sub_mw[t]``, ``q_sub_mvar[t]``, ``losses_mw[t]``, ``voltage_slack_pu``,
    ``thermal_slack_mva``, ``ramp_violation_mwh``, ``unserved_mwh``, ``abnormal[t]`` (sum of
    all slacks at ``t``, for the restoration term).
    """
    injections = injections or {}
    q_injections = q_injections or {}
    for bus in list(injections) + list(q_injections):
        if bus not in feeder.bus_index:
            raise ValueError(f"injection at unknown bus {bus!r} of feeder {feeder.name}")
    s_base = feeder.s_base_mva
    dt_h = params.dt_h
    src = feeder.source_bus
    branch_of = {br.name: br for br in feeder.branches}
    load = feeder.load_by_bus
    ratio = {
        j: (load[j].q_mvar / load[j].p_mw if j in load and abs(load[j].p_mw) > 1e-12 else 0.0)
        for j in feeder.bus_names
    }

    b.T = pyo.Set(initialize=list(time), ordered=True)
    b.N = pyo.Set(initialize=list(feeder.bus_names), ordered=True)
    b.L = pyo.Set(initialize=[br.name for br in feeder.branches], ordered=True)
    rated = [
        br.name for br in feeder.branches
        if br.rating_mva is not None and br.rating_mva > 0 and params.thermal_sides >= 3
    ]
    b.LR = pyo.Set(initialize=rated, ordered=True)
    b.K = pyo.Set(initialize=list(range(params.thermal_sides if rated else 0)), ordered=True)

    b.p_load_mw = pyo.Param(
        b.N, b.T, mutable=True, initialize=lambda _, j, t: load[j].p_mw if j in load else 0.0
    )
    b.q_load_mvar = pyo.Param(
        b.N, b.T, mutable=True, initialize=lambda _, j, t: load[j].q_mvar if j in load else 0.0
    )
    b.v_source_sq = pyo.Param(mutable=True, initialize=params.v_source_pu ** 2)
    b.p_sub_prev_mw = pyo.Param(mutable=True, initialize=0.0)
    coef = loss_coefficients(feeder, operating_point)
    b.cP = pyo.Param(b.L, mutable=True, initialize=lambda _, l: coef[l][0])
    b.cQ = pyo.Param(b.L, mutable=True, initialize=lambda _, l: coef[l][1])
    b.cV = pyo.Param(b.L, mutable=True, initialize=lambda _, l: coef[l][2])

    b.P = pyo.Var(b.L, b.T)
    b.Q = pyo.Var(b.L, b.T)
    b.v = pyo.Var(b.N, b.T, bounds=(0.0, 4.0), initialize=1.0)
    b.ell = pyo.Var(b.L, b.T, initialize=0.0)
    b.sv_lo = pyo.Var(b.N, b.T, domain=pyo.NonNegativeReals)
    b.sv_hi = pyo.Var(b.N, b.T, domain=pyo.NonNegativeReals)
    b.s_th = pyo.Var(b.LR, b.T, domain=pyo.NonNegativeReals)
    b.s_ramp = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    shed_buses = [j for j in feeder.bus_names if j in load] if params.allow_shedding else []
    b.NS = pyo.Set(initialize=shed_buses, ordered=True)
    b.shed = pyo.Var(b.NS, b.T, domain=pyo.NonNegativeReals)

    def g(j: str, t: int, table: Mapping[str, Sequence[Any]]) -> Any:
        return sum(item[t] for item in table.get(j, ()))

    def net_p(j: str, t: int) -> Any:
        shed = b.shed[j, t] if j in shed_buses else 0.0
        return b.p_load_mw[j, t] - shed - g(j, t, injections)

    def net_q(j: str, t: int) -> Any:
        shed = ratio[j] * b.shed[j, t] if j in shed_buses else 0.0
        return b.q_load_mvar[j, t] - shed - g(j, t, q_injections)

    children = {j: [c.name for c in feeder.children[j]] for j in feeder.bus_names}

    @b.Constraint(b.L, b.T)
    def p_balance(b, l, t):
        br = branch_of[l]
        return b.P[l, t] == (
            sum(b.P[k, t] for k in children[br.to_bus]) + net_p(br.to_bus, t)
            + br.r_pu * s_base * b.ell[l, t]
        )

    @b.Constraint(b.L, b.T)
    def q_balance(b, l, t):
        br = branch_of[l]
        return b.Q[l, t] == (
            sum(b.Q[k, t] for k in children[br.to_bus]) + net_q(br.to_bus, t)
            + br.x_pu * s_base * b.ell[l, t]
        )

    @b.Constraint(b.L, b.T)
    def v_drop(b, l, t):
        br = branch_of[l]
        return b.v[br.to_bus, t] == (
            b.v[br.from_bus, t]
            - 2.0 * (br.r_pu * b.P[l, t] + br.x_pu * b.Q[l, t]) / s_base
            + (br.r_pu ** 2 + br.x_pu ** 2) * b.ell[l, t]
        )

    @b.Constraint(b.L, b.T)
    def ell_lin(b, l, t):
        br = branch_of[l]
        return b.ell[l, t] == b.cP[l] * b.P[l, t] + b.cQ[l] * b.Q[l, t] + b.cV[l] * b.v[br.from_bus, t]

    @b.Constraint(b.T)
    def v_source(b, t):
        return b.v[src, t] == b.v_source_sq

    vmin2, vmax2 = params.v_min_pu ** 2, params.v_max_pu ** 2

    @b.Constraint(b.N, b.T)
    def v_lo(b, j, t):
        if j == src:
            return pyo.Constraint.Skip
        return b.v[j, t] + b.sv_lo[j, t] >= vmin2

    @b.Constraint(b.N, b.T)
    def v_hi(b, j, t):
        if j == src:
            return pyo.Constraint.Skip
        return b.v[j, t] - b.sv_hi[j, t] <= vmax2

    n = max(params.thermal_sides, 3)
    shrink = math.cos(math.pi / n)

    @b.Constraint(b.LR, b.K, b.T)
    def thermal(b, l, k, t):
        theta = 2.0 * math.pi * k / n
        s_max = branch_of[l].rating_mva * params.loading_frac
        return (
            math.cos(theta) * b.P[l, t] + math.sin(theta) * b.Q[l, t]
            <= s_max * shrink + b.s_th[l, t]
        )

    src_branches = children[src]
    b.p_sub_mw = pyo.Expression(
        b.T, rule=lambda b, t: sum(b.P[l, t] for l in src_branches) + net_p(src, t)
    )
    b.q_sub_mvar = pyo.Expression(
        b.T, rule=lambda b, t: sum(b.Q[l, t] for l in src_branches) + net_q(src, t)
    )
    b.losses_mw = pyo.Expression(
        b.T, rule=lambda b, t: sum(branch_of[l].r_pu * s_base * b.ell[l, t] for l in b.L)
    )

    if params.ramp_limit_mw_per_min is not None:
        ramp = params.ramp_limit_mw_per_min * params.dt_s / 60.0
        first = b.T.first()

        def prev(t: int) -> Any:
            return b.p_sub_prev_mw if t == first else b.p_sub_mw[b.T.prev(t)]

        b.ramp_up = pyo.Constraint(
            b.T, rule=lambda b, t: b.p_sub_mw[t] - prev(t) <= ramp + b.s_ramp[t]
        )
        b.ramp_down = pyo.Constraint(
            b.T, rule=lambda b, t: prev(t) - b.p_sub_mw[t] <= ramp + b.s_ramp[t]
        )
    else:
        for t in b.T:
            b.s_ramp[t].fix(0.0)

    b.shed_max = pyo.Constraint(b.NS, b.T, rule=lambda b, j, t: b.shed[j, t] <= b.p_load_mw[j, t])

    b.voltage_slack_pu = pyo.Expression(
        expr=sum(b.sv_lo[j, t] / (2 * params.v_min_pu) + b.sv_hi[j, t] / (2 * params.v_max_pu)
                 for j in b.N for t in b.T if j != src)
    )
    b.thermal_slack_mva = pyo.Expression(expr=sum(b.s_th[l, t] for l in b.LR for t in b.T))
    b.ramp_violation_mwh = pyo.Expression(expr=sum(b.s_ramp[t] * dt_h for t in b.T))
    b.unserved_mwh = pyo.Expression(expr=sum(b.shed[j, t] * dt_h for j in b.NS for t in b.T))
    b.abnormal = pyo.Expression(
        b.T,
        rule=lambda b, t: (
            sum(b.sv_lo[j, t] + b.sv_hi[j, t] for j in b.N if j != src)
            + sum(b.s_th[l, t] for l in b.LR) + b.s_ramp[t]
            + sum(b.shed[j, t] for j in b.NS)
        ),
    )
    return b


def set_operating_point(b: pyo.Block, feeder: FeederData, op: OperatingPoint | None) -> None:
    """Update the loss-linearisation parameters of a built block (``None`` = flat start)."""
    for name, (cp, cq, cv) in loss_coefficients(feeder, op).items():
        b.cP[name] = cp
        b.cQ[name] = cq
        b.cV[name] = cv


def set_loads(
    b: pyo.Block,
    p_load_mw: Mapping[str, Sequence[float]],
    q_load_mvar: Mapping[str, Sequence[float]],
) -> None:
    """Set the mutable bus loads: bus → one value per horizon step (MW/Mvar, + = consumption).

    Buses not named keep their current values.
    """
    steps = list(b.T)
    for table, param in ((p_load_mw, b.p_load_mw), (q_load_mvar, b.q_load_mvar)):
        for j, values in table.items():
            for k, t in enumerate(steps):
                param[j, t] = float(values[k])


def predicted_voltages(b: pyo.Block, t: int | None = None) -> dict[str, float]:
    """|V| in pu (``sqrt(v)``) of each bus at step ``t`` (default: the first) of a solved block."""
    t = b.T.first() if t is None else t
    return {j: math.sqrt(max(pyo.value(b.v[j, t]), 0.0)) for j in b.N}
