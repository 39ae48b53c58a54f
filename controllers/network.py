"""LinDistFlow network block for the MILPs (Baran & Wu 1989), shared by Stage I and Stage II.

The block is built from plain numbers (:class:`models.network.FeederData` and
:class:`NetworkParams`) over index sets: branches ``L``, buses ``N`` and horizon steps ``T``.
Symbols are those of docs/optimization.md §1.

For each branch ``l = (i → j)`` and step ``t`` (flows in MW/Mvar at the sending end,
``v = |V|²`` in pu², impedances in pu on ``S_base``)::

    P_lt = Σ_{k: j→k} P_kt + (p^L_jt − s_jt) − g_jt + r_l S_base ℓ_lt
    Q_lt = Σ_{k: j→k} Q_kt + (q^L_jt − ρ_j s_jt) − h_jt + x_l S_base ℓ_lt
    v_jt = τ_l² v_it − 2 (r_l P_lt + x_l Q_lt) / S_base + (r_l² + x_l²) ℓ_lt

``τ_l`` is a transformer's off-nominal ratio (``Branch.tap``; 1 for lines). ``p^L``/``q^L`` are the bus loads (mutable parameters, + = consumption), ``s`` load shed
(unserved, ``0 ≤ s ≤ p^L``, reactive part ``ρ_j = q^L/p^L`` at nominal), ``g``/``h`` the FCM
injections at the bus (+ = into the grid). ``ℓ`` is the squared branch current in pu,
linearised around an operating point (P⁰, Q⁰, v⁰) from an AC power flow::

    ℓ_lt = c^P_l P_lt + c^Q_l Q_lt + c^V_l v_it,
    c^P = 2 P⁰ / (v⁰ S_base²),  c^Q = 2 Q⁰ / (v⁰ S_base²),  c^V = −ℓ⁰ / v⁰,
    ℓ⁰ = (P⁰² + Q⁰²) / (v⁰ S_base²)

(the constant term of the Taylor expansion of ``(P² + Q²)/v`` vanishes because the function
is homogeneous of degree one). At the flat start all ``c`` are zero and the block is the
lossless LinDistFlow of Baran & Wu.

Calibration at an AC operating point (docs/optimization.md §1.7). When the operating point
also carries the net bus loads ``p⁰, q⁰`` it was solved at, each branch gets constant
residuals that make the model reproduce that AC state exactly::

    ε^P_l = P⁰_l − Σ_{k: j→k} P⁰_k − p⁰_j − r_l S_base ℓ⁰_l          (likewise ε^Q_l)
    δ_l   = v⁰_j − τ_l² v⁰_i + 2 (r_l P⁰_l + x_l Q⁰_l) / S_base − (r_l² + x_l²) ℓ⁰_l

added to the right-hand sides of the balance and drop rows above. They hold what the
positive-sequence tree leaves out (regulator and transformer taps, capacitors, voltage-
dependent and unbalanced loads, shunt charging), so only changes from the operating point
go through the linear model.

Limits, all soft (penalised slack ≥ 0):

* voltage, one ranged row per bus and step: ``V_min² ≤ v_jt + σ⁻_jt − σ⁺_jt ≤ V_max²``;
* thermal, an ``n``-sided polygon inscribed in ``P² + Q² ≤ S̄²``:
  ``cos θ_k P_lt + sin θ_k Q_lt ≤ S̄_l cos(π/n) + τ_lt`` for ``θ_k = 2πk/n``;
* substation ramp: ``|P^sub_t − P^sub_{t−1}| ≤ R Δt + ρ_t`` with ``P^sub_{−1}`` the
  measured import (a mutable parameter).

The block exposes the named objective terms as Pyomo ``Expression`` components so a report
can print each value: ``voltage_slack_pu`` (pu·steps of |V| beyond the limit, σ/(2V_lim)),
``thermal_slack_mva`` (MVA·steps), ``ramp_violation_mwh`` (Σ ρ_t Δt_h) and ``unserved_mwh``
(Σ s Δt_h). The caller weights them.

Two forms build the same model: :func:`build_network` (branch flows as variables; Stage I)
and :class:`CompactNetwork` (superposition around a base state evaluated by
:func:`linear_state`; no flow variables, several times faster in the rolling Stage II).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
    ``screen_load_factor`` (``None``: off) drops the polygon of a branch that cannot reach its
    limit: see :func:`thermal_screen`. ``network_rows`` (compact form only): ``"full"``, one
    voltage row per bus and step and a polygon per rated branch; ``"reduced"``, one voltage
    row per group of buses with the same sensitivities to the injections
    (:func:`voltage_groups`) and polygons only on branches whose flow the injections change
    (docs/optimization.md §1.5).
    """

    dt_s: float = 300.0
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    v_source_pu: float = 1.0
    ramp_limit_mw_per_min: float | None = None
    thermal_sides: int = 8
    loading_frac: float = 1.0
    allow_shedding: bool = True
    screen_load_factor: float | None = None
    network_rows: str = "full"

    @property
    def dt_h(self) -> float:
        return self.dt_s / 3600.0


@dataclass(frozen=True)
class OperatingPoint:
    """An AC operating point to linearise the losses around.

    ``v_pu`` maps bus → |V| in pu; ``p_mw``/``q_mvar`` map branch name → sending-end flow
    (MW, Mvar; + = from ``from_bus`` to ``to_bus``). Missing entries count as the flat start
    (|V| = 1, no flow) for that branch. ``p_load_mw``/``q_load_mvar`` (bus → MW, Mvar; + =
    consumption, net of FCM injections) are the loads the point was solved at; with them the
    model is calibrated to reproduce the point (:func:`calibration`), without them it is not.
    """

    v_pu: Mapping[str, float]
    p_mw: Mapping[str, float]
    q_mvar: Mapping[str, float]
    p_load_mw: Mapping[str, float] = field(default_factory=dict)
    q_load_mvar: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Tree:
    """Index arrays of a feeder's tree for the vectorised evaluations below (built once
    per :class:`FeederData` object)."""

    names: tuple[str, ...]
    frm: np.ndarray        # from-bus index of each branch
    to: np.ndarray         # to-bus index of each branch
    parent: np.ndarray     # index of the branch feeding each branch's from-bus (−1: source)
    r: np.ndarray
    x: np.ndarray
    tap2: np.ndarray       # τ²
    source: int


_TREES: dict[int, tuple[FeederData, _Tree]] = {}


def _tree(feeder: FeederData) -> _Tree:
    hit = _TREES.get(id(feeder))
    if hit is not None and hit[0] is feeder:
        return hit[1]
    bi = feeder.bus_index
    names = tuple(br.name for br in feeder.branches)
    pos = {br.to_bus: k for k, br in enumerate(feeder.branches)}
    tree = _Tree(
        names=names,
        frm=np.array([bi[br.from_bus] for br in feeder.branches], dtype=np.int64),
        to=np.array([bi[br.to_bus] for br in feeder.branches], dtype=np.int64),
        parent=np.array([pos.get(br.from_bus, -1) for br in feeder.branches], dtype=np.int64),
        r=np.array([br.r_pu for br in feeder.branches], dtype=float),
        x=np.array([br.x_pu for br in feeder.branches], dtype=float),
        tap2=np.array([br.tap ** 2 for br in feeder.branches], dtype=float),
        source=bi[feeder.source_bus],
    )
    if len(_TREES) > 64:
        _TREES.clear()
    _TREES[id(feeder)] = (feeder, tree)
    return tree


def _op_arrays(feeder: FeederData, op: OperatingPoint) -> tuple[np.ndarray, ...]:
    """``(P⁰, Q⁰, has_flow, V⁰)`` of ``op`` as arrays in feeder order (``P⁰`` 0 and
    ``has_flow`` False where the point gives no flow, ``V⁰`` NaN where it gives no voltage)."""
    tree = _tree(feeder)
    p0 = np.array([op.p_mw.get(n, math.nan) for n in tree.names], dtype=float)
    q0 = np.array([op.q_mvar.get(n, 0.0) for n in tree.names], dtype=float)
    v0 = np.array([op.v_pu.get(b, math.nan) for b in feeder.bus_names], dtype=float)
    has = np.isfinite(p0)
    return np.where(has, p0, 0.0), np.nan_to_num(q0), has, v0


def _linearisation(feeder: FeederData, op: OperatingPoint | None,
                   calibrate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Loss coefficients ``(c^P, c^Q, c^V)`` and calibration residuals ``(ε^P, ε^Q, δ)`` at
    ``op``, each of shape ``(3, n_branch)`` in feeder order (:func:`loss_coefficients`,
    :func:`calibration`), from one reading of the operating point."""
    n = len(feeder.branches)
    coef, cal = np.zeros((3, n)), np.zeros((3, n))
    if op is None:
        return coef, cal
    tree = _tree(feeder)
    s_base = feeder.s_base_mva
    p0, q0, has, v_bus = _op_arrays(feeder, op)
    vf = v_bus[tree.frm] ** 2
    v0 = np.where(np.isfinite(vf), vf, 1.0)
    s2 = s_base ** 2
    ell0 = (p0 * p0 + q0 * q0) / (v0 * s2)
    coef[:] = np.where(has, np.vstack([2.0 * p0 / (v0 * s2), 2.0 * q0 / (v0 * s2), -ell0 / v0]), 0.0)
    if not calibrate or not op.p_load_mw:
        return coef, cal
    ell = coef[0] * p0 + coef[1] * q0 + coef[2] * v0
    kids = tree.parent >= 0
    child_p = np.bincount(tree.parent[kids], weights=p0[kids], minlength=n)
    child_q = np.bincount(tree.parent[kids], weights=q0[kids], minlength=n)
    kid_missing = np.bincount(tree.parent[kids], weights=(~has[kids]).astype(float), minlength=n) > 0
    names = feeder.bus_names
    pl = np.array([float(op.p_load_mw.get(names[j], 0.0)) for j in tree.to])
    ql = np.array([float(op.q_load_mvar.get(names[j], 0.0)) for j in tree.to])
    ok = has & ~kid_missing
    cal[0] = np.where(ok, p0 - child_p - pl - tree.r * s_base * ell, 0.0)
    cal[1] = np.where(ok, q0 - child_q - ql - tree.x * s_base * ell, 0.0)
    drop = (v_bus[tree.to] ** 2 - tree.tap2 * vf + 2.0 * (tree.r * p0 + tree.x * q0) / s_base
            - (tree.r ** 2 + tree.x ** 2) * ell)
    cal[2] = np.where(ok & np.isfinite(drop), drop, 0.0)
    return coef, np.where(np.isfinite(cal), cal, 0.0)


def loss_coefficients(feeder: FeederData, op: OperatingPoint | None) -> dict[str, tuple[float, float, float]]:
    """Linearised squared-current coefficients ``(c^P, c^Q, c^V)`` per branch name.

    ``ℓ ≈ c^P P + c^Q Q + c^V v_i`` with ``c^P = 2P⁰/(v⁰S²)``, ``c^Q = 2Q⁰/(v⁰S²)``,
    ``c^V = −ℓ⁰/v⁰`` (docs/optimization.md §1.2). ``op=None`` is the flat start (all zero);
    a branch ``op`` gives no flow for is at the flat start, a missing voltage counts as 1 pu.
    """
    c = _linearisation(feeder, op, calibrate=False)[0]
    return {name: (float(c[0, k]), float(c[1, k]), float(c[2, k]))
            for k, name in enumerate(_tree(feeder).names)}


def calibration(feeder: FeederData, op: OperatingPoint | None) -> np.ndarray:
    """Residuals ``(ε^P, ε^Q, δ)`` per branch (shape ``(3, n_branch)``, feeder order) that
    make the linear model reproduce the AC operating point ``op`` (module docstring,
    docs/optimization.md §1.7); zero without an operating point, without its loads, or for
    a branch whose flows (or whose children's flows) or end voltages the point does not
    give."""
    return _linearisation(feeder, op)[1]


def load_arrays(feeder: FeederData) -> tuple[np.ndarray, np.ndarray]:
    """The feeder's own (nominal) bus loads as arrays in ``feeder.bus_names`` order (MW,
    Mvar; + = consumption; 0 at buses without a load)."""
    p = np.zeros(len(feeder.buses))
    q = np.zeros(len(feeder.buses))
    bi = feeder.bus_index
    for ld in feeder.loads:
        p[bi[ld.bus]] += ld.p_mw
        q[bi[ld.bus]] += ld.q_mvar
    return p, q


def base_operating_point(feeder: FeederData) -> OperatingPoint | None:
    """The feeder's AC base case (``FeederData.base_*``: nominal loads, no injection, the
    scenario's source voltage) as a calibrating operating point; ``None`` without one."""
    if not feeder.base_bus_v_pu or not feeder.base_branch_p_mw:
        return None
    names = [br.name for br in feeder.branches]
    return OperatingPoint(
        v_pu=dict(zip(feeder.bus_names, feeder.base_bus_v_pu)),
        p_mw=dict(zip(names, feeder.base_branch_p_mw)),
        q_mvar=dict(zip(names, feeder.base_branch_q_mvar)),
        p_load_mw={ld.bus: ld.p_mw for ld in feeder.loads},
        q_load_mvar={ld.bus: ld.q_mvar for ld in feeder.loads},
    )


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


def thermal_screen(feeder: FeederData, params: NetworkParams,
                   extra_mva: Mapping[str, float] | None = None,
                   peak_load_mva: Mapping[str, float] | None = None) -> list[str]:
    """Branches that keep their line-limit polygon (the one thermal screen of both stages).

    A branch is kept only if an upper bound of its apparent flow can exceed the polygon::

        B_l = 1.1 · Σ_{j below l} (L_j + X_j)  >  S̄_l·loading·cos(π/n)

    ``L_j`` is the largest apparent load at bus j: ``peak_load_mva[j]`` when given (Stage I:
    background and campus peaks over all scenarios and steps), else ``λ |S^L_j|`` with ``λ`` =
    ``screen_load_factor`` (Stage II: the largest multiple of the nominal loads expected;
    ``None`` and no peaks: no screening, every rated branch). ``X_j`` = ``extra_mva[j]``
    (campus capacity, FCM ratings at bus j); 1.1 is a margin for the losses. Since
    ``|S_l| ≤ Σ_{j below l} |S_j|``, a dropped branch cannot bind while the loads stay within
    these bounds; dropping it removes ``n·|T|`` rows.
    """
    rated = [br for br in feeder.branches
             if br.rating_mva is not None and br.rating_mva > 0 and params.thermal_sides >= 3]
    if params.screen_load_factor is None and peak_load_mva is None:
        return [br.name for br in rated]
    extra = extra_mva or {}
    load = feeder.load_by_bus

    def own(j: str) -> float:
        if peak_load_mva is not None:
            return abs(float(peak_load_mva.get(j, 0.0)))
        return params.screen_load_factor * (math.hypot(load[j].p_mw, load[j].q_mvar) if j in load else 0.0)

    below: dict[str, float] = {}
    for br in reversed(feeder.branches):
        j = br.to_bus
        below[j] = own(j) + abs(float(extra.get(j, 0.0))) + sum(below[c.to_bus] for c in feeder.children[j])
    shrink = math.cos(math.pi / max(params.thermal_sides, 3))
    return [br.name for br in rated
            if 1.1 * below[br.to_bus] > br.rating_mva * params.loading_frac * shrink]


def build_network(
    b: pyo.Block,
    feeder: FeederData,
    time: Sequence[int],
    params: NetworkParams,
    injections: Mapping[str, Sequence[Any]] | None = None,
    q_injections: Mapping[str, Sequence[Any]] | None = None,
    operating_point: OperatingPoint | None = None,
    extra_mva: Mapping[str, float] | None = None,
    peak_load_mva: Mapping[str, float] | None = None,
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
        Linearisation point for the loss term, and the calibration point when it carries its
        loads (:func:`calibration`); ``None`` = flat start (lossless LinDistFlow).
    extra_mva, peak_load_mva:
        bus → bound of the apparent power added to the nominal load there (campus, FCMs), and
        bus → largest apparent load; used only by the thermal screening
        (:func:`thermal_screen`).

    Components added (all indexed by bus/branch name and ``t``)
    ------------------------------------------------------------
    Mutable params ``p_load_mw[j,t]``, ``q_load_mvar[j,t]``, ``v_source_sq``, ``p_sub_prev_mw``,
    ``cP[l]``, ``cQ[l]``, ``cV[l]``, ``eP[l]``, ``eQ[l]``, ``dv[l]`` (calibration); vars ``P[l,t]``, ``Q[l,t]``, ``v[j,t]``,
    ``sv_lo/sv_hi[j,t]``, ``s_th[l,t]``, ``s_ramp[t]``, ``shed[j,t]``; expressions ``ell[l,t]``,
    ``p_sub_mw[t]``, ``q_sub_mvar[t]``, ``losses_mw[t]``, ``voltage_slack_pu``,
    ``thermal_slack_mva``, ``ramp_violation_mwh``, ``unserved_mwh``, ``v_abnormal_pu[t]`` (how
    far step ``t`` is outside its voltage limits, in pu) and the mutable ``v_abnormal_max[t]``,
    a bound of it from the box on ``v`` (for the restoration term's big-M).
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
    rated = thermal_screen(feeder, params, extra_mva, peak_load_mva)
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
    coef, cal = _linearisation(feeder, operating_point)
    pos = {br.name: k for k, br in enumerate(feeder.branches)}
    for name, values in (("cP", coef[0]), ("cQ", coef[1]), ("cV", coef[2]),
                         ("eP", cal[0]), ("eQ", cal[1]), ("dv", cal[2])):
        b.add_component(name, pyo.Param(b.L, mutable=True,
                                        initialize=lambda _, l, v=values: float(v[pos[l]])))

    b.P = pyo.Var(b.L, b.T)
    b.Q = pyo.Var(b.L, b.T)
    b.v = pyo.Var(b.N, b.T, bounds=(0.0, V_SQ_MAX), initialize=1.0)
    shed_buses = [j for j in feeder.bus_names if j in load] if params.allow_shedding else []
    b.NS = pyo.Set(initialize=shed_buses, ordered=True)
    b.shed = pyo.Var(b.NS, b.T, domain=pyo.NonNegativeReals)

    # ℓ is an expression (no row of its own): its mutable coefficients enter the rows below
    b.ell = pyo.Expression(
        b.L, b.T,
        rule=lambda b, l, t: b.cP[l] * b.P[l, t] + b.cQ[l] * b.Q[l, t]
        + b.cV[l] * b.v[branch_of[l].from_bus, t],
    )

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
            + br.r_pu * s_base * b.ell[l, t] + b.eP[l]
        )

    @b.Constraint(b.L, b.T)
    def q_balance(b, l, t):
        br = branch_of[l]
        return b.Q[l, t] == (
            sum(b.Q[k, t] for k in children[br.to_bus]) + net_q(br.to_bus, t)
            + br.x_pu * s_base * b.ell[l, t] + b.eQ[l]
        )

    @b.Constraint(b.L, b.T)
    def v_drop(b, l, t):
        br = branch_of[l]
        return b.v[br.to_bus, t] == (
            br.tap ** 2 * b.v[br.from_bus, t]
            - 2.0 * (br.r_pu * b.P[l, t] + br.x_pu * b.Q[l, t]) / s_base
            + (br.r_pu ** 2 + br.x_pu ** 2) * b.ell[l, t] + b.dv[l]
        )

    @b.Constraint(b.T)
    def v_source(b, t):
        return b.v[src, t] == b.v_source_sq

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
    b.shed_max = pyo.Constraint(b.NS, b.T, rule=lambda b, j, t: b.shed[j, t] <= b.p_load_mw[j, t])
    b.unserved_mwh = pyo.Expression(expr=sum(b.shed[j, t] * dt_h for j in b.NS for t in b.T))

    vmin2, vmax2 = params.v_min_pu ** 2, params.v_max_pu ** 2
    b.VG = pyo.Set(initialize=[j for j in feeder.bus_names if j != src], ordered=True)
    add_limits(b, feeder, params, lambda j, t: b.v[j, t], lambda j, t: vmin2, lambda j, t: vmax2)
    # v ∈ [0, V_SQ_MAX]: no voltage slack can exceed these at an optimum
    per_bus = vmin2 / (2 * params.v_min_pu) + (V_SQ_MAX - vmax2) / (2 * params.v_max_pu)
    b.v_abnormal_max = pyo.Param(b.T, mutable=True, initialize=per_bus * len(b.VG))
    return b


V_SQ_MAX = 4.0
"""Upper bound of the branch form's ``v = |V|²`` (2 pu), a box that keeps its LP bounded."""


def add_limits(b: pyo.Block, feeder: FeederData, params: NetworkParams, v_row: Any,
               v_lo: Any, v_hi: Any, w_lo: Any = None, w_hi: Any = None) -> None:
    """The soft limit rows of docs/optimization.md §1.3 on a network block of either form.

    ``b`` has ``T``, the voltage rows' index ``VG`` (buses, or groups of buses), the rated
    branches ``LR`` with flows ``P[l,t]``/``Q[l,t]``, ``p_sub_mw[t]`` and ``p_sub_prev_mw``;
    ``v_row(g, t)``, ``v_lo(g, t)`` and ``v_hi(g, t)`` give each voltage row's expression and
    bounds (``V_min²``/``V_max²``, or those less a base value). Adds::

        v_lo ≤ v_row + σ⁻ − σ⁺ ≤ v_hi,                     σ± ≥ 0     (one ranged row)
        cos θ_k P_lt + sin θ_k Q_lt ≤ S̄_l·loading·cos(π/n) + τ_lt,   θ_k = 2πk/n,  τ ≥ 0
        |P^sub_t − P^sub_{t−1}| ≤ R Δt + ρ_t,               ρ ≥ 0     (P^sub_{−1} measured)

    and the terms ``voltage_slack_pu`` = Σ (w⁻σ⁻/(2V_min) + w⁺σ⁺/(2V_max)) (pu·steps of |V|;
    ``w`` = 1 unless a group row stands for several buses), ``thermal_slack_mva`` = Σ τ,
    ``ramp_violation_mwh`` = Σ ρ Δt_h, and ``v_abnormal_pu[t]`` = Σ_g (σ⁻/(2V_min) +
    σ⁺/(2V_max)) at step ``t``: how far, in pu of |V|, the step is outside its voltage
    limits (the restoration term's measure, docs/optimization.md §3.1).
    """
    b.sv_lo = pyo.Var(b.VG, b.T, domain=pyo.NonNegativeReals)
    b.sv_hi = pyo.Var(b.VG, b.T, domain=pyo.NonNegativeReals)
    b.s_th = pyo.Var(b.LR, b.T, domain=pyo.NonNegativeReals)
    b.s_ramp = pyo.Var(b.T, domain=pyo.NonNegativeReals)

    @b.Constraint(b.VG, b.T)
    def v_limits(b, g, t):  # one ranged row: V_min² ≤ v + σ⁻ − σ⁺ ≤ V_max²
        return pyo.inequality(v_lo(g, t), v_row(g, t) + b.sv_lo[g, t] - b.sv_hi[g, t], v_hi(g, t))

    n = max(params.thermal_sides, 3)
    shrink = math.cos(math.pi / n)
    rating = {br.name: br.rating_mva for br in feeder.branches}

    @b.Constraint(b.LR, b.K, b.T)
    def thermal(b, l, k, t):
        theta = 2.0 * math.pi * k / n
        return (math.cos(theta) * b.P[l, t] + math.sin(theta) * b.Q[l, t]
                <= rating[l] * params.loading_frac * shrink + b.s_th[l, t])

    if params.ramp_limit_mw_per_min is not None:
        ramp = params.ramp_limit_mw_per_min * params.dt_s / 60.0
        first = b.T.first()

        def prev(t: int) -> Any:
            return b.p_sub_prev_mw if t == first else b.p_sub_mw[b.T.prev(t)]

        b.ramp_up = pyo.Constraint(b.T, rule=lambda b, t: b.p_sub_mw[t] - prev(t) <= ramp + b.s_ramp[t])
        b.ramp_down = pyo.Constraint(b.T, rule=lambda b, t: prev(t) - b.p_sub_mw[t] <= ramp + b.s_ramp[t])
    else:
        for t in b.T:
            b.s_ramp[t].fix(0.0)

    lo2, hi2 = 2 * params.v_min_pu, 2 * params.v_max_pu
    if w_lo is None:
        w_lo = w_hi = {(g, t): 1.0 for g in b.VG for t in b.T}
    b.voltage_slack_pu = pyo.Expression(
        expr=sum(w_lo[g, t] * b.sv_lo[g, t] / lo2 + w_hi[g, t] * b.sv_hi[g, t] / hi2
                 for g in b.VG for t in b.T))
    b.thermal_slack_mva = pyo.Expression(expr=sum(b.s_th[l, t] for l in b.LR for t in b.T))
    b.ramp_violation_mwh = pyo.Expression(expr=sum(b.s_ramp[t] * params.dt_h for t in b.T))
    b.v_abnormal_pu = pyo.Expression(
        b.T, rule=lambda b, t: sum(b.sv_lo[g, t] / lo2 + b.sv_hi[g, t] / hi2 for g in b.VG))


def set_operating_point(b: pyo.Block, feeder: FeederData, op: OperatingPoint | None) -> None:
    """Update the loss-linearisation and calibration parameters of a built block (``None`` =
    flat start, uncalibrated)."""
    coef, cal = _linearisation(feeder, op)
    names = [br.name for br in feeder.branches]
    for param, values in ((b.cP, coef[0]), (b.cQ, coef[1]), (b.cV, coef[2]),
                          (b.eP, cal[0]), (b.eQ, cal[1]), (b.dv, cal[2])):
        param.store_values(dict(zip(names, values.tolist())), check=False)


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


# ---- compact (superposition) form ------------------------------------------------------------

def linear_state(
    feeder: FeederData,
    p_load_mw: np.ndarray,
    q_load_mvar: np.ndarray,
    op: OperatingPoint | None = None,
    v_source_sq: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate the LinDistFlow equations of §1.1–1.2 for given net loads (no optimisation).

    ``p_load_mw``/``q_load_mvar`` have shape ``(n_bus, n_steps)`` in ``feeder.bus_names``
    order (+ = consumption, net of any injection). Returns ``(P, Q, v)`` with shapes
    ``(n_branch, n_steps)``, ``(n_branch, n_steps)``, ``(n_bus, n_steps)``: the unique
    solution of the linear system formed by the balance and voltage-drop equations with the
    linearised loss term (one sparse factorisation, all steps as right-hand sides). This is
    the same linear model the MILP uses, not an AC power flow.
    """
    p_load = np.atleast_2d(np.asarray(p_load_mw, dtype=float))
    q_load = np.atleast_2d(np.asarray(q_load_mvar, dtype=float))
    nb, nl = len(feeder.buses), len(feeder.branches)
    tree = _tree(feeder)
    s_base = feeder.s_base_mva
    (cp, cq, cv), cal = _linearisation(feeder, op)
    n = 2 * nl + nb
    iP, iQ, iV = 0, nl, 2 * nl
    k = np.arange(nl)
    kids = np.flatnonzero(tree.parent >= 0)
    z2 = tree.r ** 2 + tree.x ** 2
    rows, cols, vals = [], [], []

    def put(r: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(np.broadcast_to(v, r.shape))

    for base, z in ((iP, tree.r), (iQ, tree.x)):  # balance rows of P and of Q
        put(base + k, base + k, 1.0 - (z * s_base * cp if base == iP else z * s_base * cq))
        put(base + tree.parent[kids], base + kids, -1.0)
        put(base + k, (iQ if base == iP else iP) + k, -z * s_base * (cq if base == iP else cp))
        put(base + k, iV + tree.frm, -z * s_base * cv)
    row = iV + tree.to  # voltage-drop row stored at the to-bus index
    put(row, row, 1.0)
    put(row, iV + tree.frm, -tree.tap2 - z2 * cv)
    put(row, iP + k, 2.0 * tree.r / s_base - z2 * cp)
    put(row, iQ + k, 2.0 * tree.x / s_base - z2 * cq)
    put(np.array([iV + tree.source]), np.array([iV + tree.source]), 1.0)
    rhs = np.zeros((n, p_load.shape[1]))
    rhs[iP:iP + nl] = p_load[tree.to] + cal[0][:, None]
    rhs[iQ:iQ + nl] = q_load[tree.to] + cal[1][:, None]
    rhs[iV + tree.to] = cal[2][:, None]
    rhs[iV + tree.source] = v_source_sq
    r_all, c_all, v_all = (np.concatenate(x) for x in (rows, cols, vals))
    # duplicate (row, col) entries are summed by the sparse constructor
    from scipy.sparse import csc_matrix  # a declared dependency: no silent dense fallback
    from scipy.sparse.linalg import splu

    a_mat = csc_matrix((v_all, (r_all, c_all)), shape=(n, n))
    x = splu(a_mat).solve(rhs)
    return x[iP:iP + nl], x[iQ:iQ + nl], x[iV:]


def path_sensitivities(feeder: FeederData, buses: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lossless LinDistFlow sensitivities to an injection at each of ``buses``.

    Returns ``(Rv, Xv, below)``: ``Rv[j, b] = 2 Σ_{l ∈ path(j) ∩ path(b)} r_l / S_base`` and
    ``Xv`` likewise with ``x_l`` (so ``Δv_j = Rv[j,b] g_b + Xv[j,b] h_b``), and
    ``below[l, b] = 1`` when bus ``b`` is downstream of branch ``l`` (``ΔP_l = −g_b``).
    """
    bi = feeder.bus_index
    path: dict[str, list[int]] = {feeder.source_bus: []}
    for k, br in enumerate(feeder.branches):
        path[br.to_bus] = path[br.from_bus] + [k]
    r = np.array([br.r_pu for br in feeder.branches])
    x = np.array([br.x_pu for br in feeder.branches])
    nb, nl = len(feeder.buses), len(feeder.branches)
    on_path = np.zeros((nb, nl))
    for name, ks in path.items():
        on_path[bi[name], ks] = 1.0
    cols = [bi[b] for b in buses]
    shared = on_path[:, None, :] * on_path[cols][None, :, :]  # (nb, nbus_inj, nl)
    rv = 2.0 * (shared @ r) / feeder.s_base_mva
    xv = 2.0 * (shared @ x) / feeder.s_base_mva
    below = on_path[cols].T  # (nl, n_inj): branch l on the path to b  ⇔  b below l
    return rv, xv, below


#: Sensitivities that agree to this fraction of the largest one count as equal (reduced rows).
SENSITIVITY_TOL = 1e-4


def voltage_groups(dg: np.ndarray, dh: np.ndarray, source: int, mode: str = "full") -> list[np.ndarray]:
    """Buses (row indices, the source bus left out) whose voltage rows the compact form
    keeps together.

    ``mode="full"``: every bus alone. ``mode="reduced"``: buses whose sensitivity rows
    ``(∂v_j/∂g, ∂v_j/∂h)`` agree to :data:`SENSITIVITY_TOL` of the largest sensitivity share
    a group; such buses move together whatever the FCMs do (every bus that leaves the
    union of the paths to the injection buses at the same point does, up to the second-order
    loss terms), so the group's limits hold for every member iff they hold for its lowest
    and its highest base voltage. Groups keep the order of their first bus."""
    n = dg.shape[0]
    rows = [j for j in range(n) if j != source]
    if mode == "full":
        return [np.array([j]) for j in rows]
    if mode != "reduced":
        raise ValueError(f"network_rows must be 'full' or 'reduced', got {mode!r}")
    sens = np.hstack([dg, dh])
    scale = float(np.abs(sens).max()) or 1.0
    keys = np.round(sens / (scale * SENSITIVITY_TOL)).astype(np.int64)
    members: dict[bytes, list[int]] = {}
    for j in rows:
        members.setdefault(keys[j].tobytes(), []).append(j)
    return [np.array(m) for m in members.values()]


class CompactNetwork:
    """LinDistFlow in superposition form for the rolling controller (docs §1.5).

    The branch-flow model of §1.1–1.2 is linear once the operating point is fixed, so its
    state is an affine function of the FCM injections ``g_b`` (MW) and ``h_b`` (Mvar) at the
    injection buses. The *base* (all loads, FCMs at zero) and the *sensitivities* are
    are evaluated outside the MILP with :func:`linear_state` (one sparse factorisation)::

        v_jt  = v^base_jt  + Σ_b (∂v_j/∂g_b g_bt + ∂v_j/∂h_b h_bt)
        P_lt  = P^base_lt  + Σ_b (∂P_l/∂g_b g_bt + ∂P_l/∂h_b h_bt)      (likewise Q_lt)
        P^sub_t = P^sub,base_t + Σ_b (∂P^sub/∂g_b g_bt + ∂P^sub/∂h_b h_bt)

    With bases and sensitivities from the same operating point this is exactly the
    branch-flow block's solution (superposition holds in a linear model). The MILP keeps only
    the limit rows of §1.3, ``P``/``Q`` of the rated branches and ``P^sub`` as variables.
    The sensitivities are computed once, at the ``operating_point`` given to the constructor
    (``None``: flat start), and are constants of the model; :meth:`update` recomputes the
    bases at each new operating point and writes them into mutable parameters, so a rolling
    solve only changes right-hand sides. The price is that the loss sensitivity to the FCM
    injections stays at the construction point (second order; measured in the benchmark).
    Load shedding is not offered in this form.

    The block gets the same named components as :func:`build_network` (``v``, ``P``/``Q``
    for the rated branches, ``p_sub_mw``, ``q_sub_mvar``, ``losses_mw``, the slack terms,
    ``v_abnormal_pu``/``v_abnormal_max``, ``p_load_mw``/``q_load_mvar``, ``p_sub_prev_mw``),
    with ``v``, ``P``, ``Q`` as expressions; after :meth:`update`, ``p_sub_base`` holds the
    import with the FCMs at zero (MW per step) and :attr:`sub_swing_mw` how far they can move
    it.
    """

    def __init__(self, b: pyo.Block, feeder: FeederData, time: Sequence[int], params: NetworkParams,
                 injections: Mapping[str, Sequence[Any]] | None = None,
                 q_injections: Mapping[str, Sequence[Any]] | None = None,
                 extra_mva: Mapping[str, float] | None = None,
                 operating_point: OperatingPoint | None = None,
                 peak_load_mva: Mapping[str, float] | None = None) -> None:
        self.b = b
        self.feeder = feeder
        self.params = params
        injections = injections or {}
        q_injections = q_injections or {}
        for bus in list(injections) + list(q_injections):
            if bus not in feeder.bus_index:
                raise ValueError(f"injection at unknown bus {bus!r} of feeder {feeder.name}")
        inj_buses = sorted(set(injections) | set(q_injections), key=feeder.bus_index.get)
        self.inj_buses = inj_buses
        src = feeder.source_bus
        load = feeder.load_by_bus
        names = list(feeder.bus_names)
        dt_h = params.dt_h

        b.T = pyo.Set(initialize=list(time), ordered=True)
        b.N = pyo.Set(initialize=names, ordered=True)
        b.L = pyo.Set(initialize=[br.name for br in feeder.branches], ordered=True)
        b.B = pyo.Set(initialize=inj_buses, ordered=True)
        sens = self._sensitivities(operating_point)
        self.sens = sens
        self.grouped = params.network_rows == "reduced"
        rated = thermal_screen(feeder, params, extra_mva, peak_load_mva)
        if self.grouped:  # only branches whose flow the injections move
            li0 = {br.name: k for k, br in enumerate(feeder.branches)}
            reach = np.hstack([*sens["P"], *sens["Q"]])
            moved = np.abs(reach).max(axis=1) > SENSITIVITY_TOL * (float(np.abs(reach).max()) or 1.0)
            rated = [name for name in rated if moved[li0[name]]]
        b.LR = pyo.Set(initialize=rated, ordered=True)
        n_sides = max(params.thermal_sides, 3)
        b.K = pyo.Set(initialize=list(range(n_sides if rated else 0)), ordered=True)

        # bus loads: numpy arrays (set_loads); with full rows also mutable params, as the
        # branch form has them
        p_nom, q_nom = load_arrays(feeder)
        self._p_load = np.repeat(p_nom[:, None], len(time), axis=1)
        self._q_load = np.repeat(q_nom[:, None], len(time), axis=1)
        self._loads_from_params = not self.grouped
        if self._loads_from_params:
            b.p_load_mw = pyo.Param(b.N, b.T, mutable=True,
                                    initialize=lambda _, j, t: load[j].p_mw if j in load else 0.0)
            b.q_load_mvar = pyo.Param(b.N, b.T, mutable=True,
                                      initialize=lambda _, j, t: load[j].q_mvar if j in load else 0.0)
        b.p_load_total_mw = pyo.Param(b.T, mutable=True, initialize=float(self._p_load[:, 0].sum()))
        b.p_sub_prev_mw = pyo.Param(mutable=True, initialize=0.0)
        b.v_abnormal_max = pyo.Param(b.T, mutable=True, initialize=1.0)
        if not self.grouped:
            b.v_base = pyo.Param(b.N, b.T, mutable=True, initialize=1.0)
        b.p_base = pyo.Param(b.LR, b.T, mutable=True, initialize=0.0)
        b.q_base = pyo.Param(b.LR, b.T, mutable=True, initialize=0.0)
        b.p_sub_base = pyo.Param(b.T, mutable=True, initialize=0.0)
        b.q_sub_base = pyo.Param(b.T, mutable=True, initialize=0.0)
        has_q = set(q_injections)

        def g(bus: str, t: int) -> Any:
            return sum(item[t] for item in injections.get(bus, ()))

        def h(bus: str, t: int) -> Any:
            return sum(item[t] for item in q_injections.get(bus, ()))

        def lin(kind: str, row: int, t: int) -> Any:
            dg, dh = sens[kind]
            out = 0.0
            for c, bus in enumerate(inj_buses):
                if bus in injections and dg[row, c] != 0.0:
                    out = out + float(dg[row, c]) * g(bus, t)
                if bus in has_q and dh[row, c] != 0.0:
                    out = out + float(dh[row, c]) * h(bus, t)
            return out

        bi = feeder.bus_index
        li = {br.name: k for k, br in enumerate(feeder.branches)}
        self.injections, self.q_injections = injections, q_injections
        self.groups = voltage_groups(*sens["v"], bi[src], params.network_rows)
        order = np.concatenate(self.groups) if self.groups else np.zeros(0, dtype=int)
        self._group_order = order
        self._group_starts = np.cumsum([0] + [len(m) for m in self.groups[:-1]])
        rep = [int(m[0]) for m in self.groups]
        self._swings = self._slack_swings(rep, extra_mva or {})
        b.VG = pyo.Set(initialize=list(range(len(self.groups))), ordered=True)
        if not self.grouped:  # per bus: v as an expression of the block, as build_network's
            b.v = pyo.Expression(b.N, b.T, rule=lambda b, j, t: b.v_base[j, t] + lin("v", bi[j], t))
        # the limit rows carry V_lim² − v^base as plain parameters (cheap to update)
        b.v_lo_rhs = pyo.Param(b.VG, b.T, mutable=True, initialize=params.v_min_pu ** 2 - 1.0)
        b.v_hi_rhs = pyo.Param(b.VG, b.T, mutable=True, initialize=params.v_max_pu ** 2 - 1.0)
        b.P = pyo.Var(b.LR, b.T)
        b.Q = pyo.Var(b.LR, b.T)
        b.P_def = pyo.Constraint(b.LR, b.T, rule=lambda b, l, t: b.P[l, t] - lin("P", li[l], t) == b.p_base[l, t])
        b.Q_def = pyo.Constraint(b.LR, b.T, rule=lambda b, l, t: b.Q[l, t] - lin("Q", li[l], t) == b.q_base[l, t])
        b.p_sub = pyo.Var(b.T)
        b.p_sub_def = pyo.Constraint(b.T, rule=lambda b, t: b.p_sub[t] - lin("sub", 0, t) == b.p_sub_base[t])
        b.p_sub_mw = pyo.Expression(b.T, rule=lambda b, t: b.p_sub[t])
        b.q_sub_mvar = pyo.Expression(b.T, rule=lambda b, t: b.q_sub_base[t] + lin("qsub", 0, t))
        b.losses_mw = pyo.Expression(b.T, rule=lambda b, t: b.p_sub[t] - b.p_load_total_mw[t]
                                     + sum(g(bus, t) for bus in inj_buses))

        if self.grouped:  # a group's slack counts once per member below its limit (≥ 1)
            b.w_lo = pyo.Param(b.VG, b.T, mutable=True, initialize=1.0)
            b.w_hi = pyo.Param(b.VG, b.T, mutable=True, initialize=1.0)
            weights = (b.w_lo, b.w_hi)
        else:
            weights = (None, None)
        # V_min² ≤ v_jt + σ⁻ − σ⁺ ≤ V_max², with v^base moved to the bounds
        add_limits(b, feeder, params, lambda g, t: lin("v", rep[g], t),
                   lambda g, t: b.v_lo_rhs[g, t], lambda g, t: b.v_hi_rhs[g, t], *weights)
        b.unserved_mwh = pyo.Expression(expr=0.0)
        self.update(None)

    def _slack_swings(self, rep: list[int], extra_mva: Mapping[str, float]) -> dict[str, Any]:
        """The constants of :meth:`_set_abnormal_bound`, fixed with the sensitivities: the
        largest change the injections (``|g_b|, |h_b| ≤ X_b``, ``X_b`` = ``extra_mva``, the
        ratings at bus b) can make of each voltage row and of the import,
        ``Σ_b (|∂/∂g_b| + |∂/∂h_b|) X_b``."""
        bound = np.array([abs(float(extra_mva.get(bus, 0.0))) for bus in self.inj_buses])

        def swing(kind: str) -> np.ndarray:
            dg, dh = self.sens[kind]
            return (np.abs(dg) + np.abs(dh)) @ bound if bound.size else np.zeros(dg.shape[0])

        return {"v": swing("v")[rep][:, None], "sub": float(swing("sub")[0])}

    @property
    def sub_swing_mw(self) -> float:
        """The largest change of ``P^sub`` the injections can make (MW, :meth:`_slack_swings`):
        ``|P^sub_t − P^sub,base_t|`` is at most this."""
        return self._swings["sub"]

    def _set_abnormal_bound(self, lo: np.ndarray, hi: np.ndarray, steps: list[int]) -> None:
        """``v_abnormal_max[t]``: an upper bound of ``v_abnormal_pu[t]`` at any injections
        within their bounds, for the restoration indicator's big-M (docs/optimization.md
        §3.1): each row's slack is at most its base violation plus the largest change the
        injections can make of the row (:meth:`_slack_swings`), in pu of |V|."""
        p, sw = self.params, self._swings
        total = (np.maximum(lo + sw["v"], 0.0) / (2 * p.v_min_pu)
                 + np.maximum(sw["v"] - hi, 0.0) / (2 * p.v_max_pu)).sum(axis=0)
        self.b.v_abnormal_max.store_values(dict(zip(steps, total.tolist())), check=False)

    def set_loads(self, p_load_mw: np.ndarray, q_load_mvar: np.ndarray) -> None:
        """Bus loads over the horizon, shape ``(n_bus, n_steps)`` in ``feeder.bus_names``
        order (MW, Mvar; + = consumption); :meth:`update` uses them."""
        self._p_load = np.asarray(p_load_mw, dtype=float)
        self._q_load = np.asarray(q_load_mvar, dtype=float)
        self._loads_from_params = False

    def voltages_pu(self, t: int) -> dict[str, float]:
        """|V| in pu of every bus at step ``t`` of the solved block: ``sqrt(v^base + ∂v/∂g g +
        ∂v/∂h h)`` with the injections' values (every bus, also when rows are grouped)."""
        k = list(self.b.T).index(t)
        g = np.array([sum(float(pyo.value(x[t])) for x in self.injections.get(bus, ()))
                      for bus in self.inj_buses])
        h = np.array([sum(float(pyo.value(x[t])) for x in self.q_injections.get(bus, ()))
                      for bus in self.inj_buses])
        dg, dh = self.sens["v"]
        v = self._v_base[:, k] + (dg @ g if g.size else 0.0) + (dh @ h if h.size else 0.0)
        return dict(zip(self.feeder.bus_names, np.sqrt(np.maximum(v, 0.0)).tolist()))

    def _sensitivities(self, op: OperatingPoint | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """∂(v, P, Q, P^sub, Q^sub)/∂(g_b, h_b) at ``op`` by unit injections in the linear model."""
        f = self.feeder
        bi = f.bus_index
        nb, n_b = len(f.buses), len(self.inj_buses)
        p = np.zeros((nb, 1 + 2 * n_b))
        q = np.zeros((nb, 1 + 2 * n_b))
        for k, bus in enumerate(self.inj_buses):
            p[bi[bus], 1 + k] = -1.0          # +1 MW injected = −1 MW of load
            q[bi[bus], 1 + n_b + k] = -1.0
        P, Q, v = linear_state(f, p, q, op, 1.0)
        sub_p, sub_q = self._sub(P, Q, p, q)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for kind, arr in (("v", v), ("P", P), ("Q", Q), ("sub", sub_p[None, :]), ("qsub", sub_q[None, :])):
            d = arr - arr[:, :1]
            out[kind] = (d[:, 1:1 + n_b], d[:, 1 + n_b:])
        return out

    def _sub(self, P: np.ndarray, Q: np.ndarray, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = self.feeder
        li = {br.name: k for k, br in enumerate(f.branches)}
        first = [li[c.name] for c in f.children[f.source_bus]]
        src = f.bus_index[f.source_bus]
        return P[first].sum(axis=0) + p[src], Q[first].sum(axis=0) + q[src]

    def update(self, op: OperatingPoint | None, v_source_sq: float = 1.0) -> None:
        """Recompute the bases (FCMs at zero) from the block's load parameters, the source
        voltage and the operating point ``op`` (``None``: flat start); write them into the
        mutable parameters. Sensitivities stay those of construction."""
        b, f = self.b, self.feeder
        steps = list(b.T)
        names = list(f.bus_names)
        if self._loads_from_params:  # set through the params (set_loads of this module)
            p = np.array([[b.p_load_mw[j, t].value for t in steps] for j in names])
            q = np.array([[b.q_load_mvar[j, t].value for t in steps] for j in names])
        else:
            p, q = self._p_load, self._q_load
        b.p_load_total_mw.store_values(dict(zip(steps, p.sum(axis=0).tolist())), check=False)
        P, Q, v = linear_state(f, p, q, op, v_source_sq)
        p_sub, q_sub = self._sub(P, Q, p, q)
        li = {br.name: k for k, br in enumerate(f.branches)}
        vmin2, vmax2 = self.params.v_min_pu ** 2, self.params.v_max_pu ** 2
        b.p_sub_base.store_values({t: float(p_sub[k]) for k, t in enumerate(steps)}, check=False)
        b.q_sub_base.store_values({t: float(q_sub[k]) for k, t in enumerate(steps)}, check=False)
        self._v_base = v
        if not self.grouped:
            b.v_base.store_values({(j, t): float(v[a, k]) for a, j in enumerate(names)
                                   for k, t in enumerate(steps)}, check=False)
        # per group and step: the tightest member sets each bound (module docstring)
        vo = v[self._group_order]
        lo = np.maximum.reduceat(vmin2 - vo, self._group_starts, axis=0)
        hi = np.minimum.reduceat(vmax2 - vo, self._group_starts, axis=0)
        keys = [(g, t) for g in range(len(self.groups)) for t in steps]
        b.v_lo_rhs.store_values(dict(zip(keys, lo.ravel().tolist())), check=False)
        b.v_hi_rhs.store_values(dict(zip(keys, hi.ravel().tolist())), check=False)
        self._set_abnormal_bound(lo, hi, steps)
        self.p_sub_base = p_sub
        if self.grouped:
            n_lo = np.maximum(np.add.reduceat((vo < vmin2).astype(float), self._group_starts, axis=0), 1.0)
            n_hi = np.maximum(np.add.reduceat((vo > vmax2).astype(float), self._group_starts, axis=0), 1.0)
            b.w_lo.store_values(dict(zip(keys, n_lo.ravel().tolist())), check=False)
            b.w_hi.store_values(dict(zip(keys, n_hi.ravel().tolist())), check=False)
        rated = list(b.LR)
        b.p_base.store_values({(l, t): float(P[li[l], k]) for l in rated for k, t in enumerate(steps)},
                              check=False)
        b.q_base.store_values({(l, t): float(Q[li[l], k]) for l in rated for k, t in enumerate(steps)},
                              check=False)
