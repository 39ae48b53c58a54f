"""Risk and ambiguity layer of Stage I: CVaR (Rockafellar–Uryasev) under an ambiguous law.

Given the second-stage costs ``Q_s`` of ``N`` sampled shock scenarios with nominal
probabilities ``p⁰`` (uniform for Monte-Carlo samples), the risk functional is

    R(Q) = max_{p ∈ P} [ (1−β)·E_p[Q] + β·CVaR_α^p(Q) ]                          (R)

with ``P`` an ambiguity set around ``p⁰``:

* ``none``        P = {p⁰}                               (sample-average approximation)
* ``l1``          P = {p ∈ Δ_N : ‖p − p⁰‖₁ ≤ θ}           (total variation, Jiang & Guan 2018)
* ``wasserstein`` P = {p ∈ Δ_N : W_d(p, p⁰) ≤ θ}          (type-1 Wasserstein distance with the
  ground metric ``d`` of :func:`ground_distances`; **the ball contains only distributions
  supported on the N samples**, not the continuous ball of the general theory)

Joint reformulation (derivation in docs/stage1.md §2). With Rockafellar–Uryasev,
``CVaR_α^p(Q) = min_η η + (1/(1−α)) Σ_s p_s (Q_s − η)⁺`` and, since Σ p_s = 1,

    R(Q) = max_{p∈P} min_η Σ_s p_s h_s(η),   h_s(η) = (1−β)Q_s + βη + (β/(1−α))(Q_s − η)⁺.

``Σ_s p_s h_s(η)`` is convex in η and linear in p and P is convex and compact, so Sion's
minimax theorem swaps max and min. Because p ≥ 0 the positive part can be replaced by
``u_s ≥ Q_s − η, u_s ≥ 0``, and the inner ``max_{p∈P} Σ p_s h_s`` is a linear programme
whose dual turns (R) into a minimisation (built by :func:`add_risk_block`):

* none:        R = Σ_s p⁰_s h_s
* l1:          R = min Σ_s p⁰_s (h_s + ν_s) + θλ   s.t. |h_s + ν_s − μ| ≤ λ,  ν ≥ 0, λ ≥ 0
* wasserstein: R = min θλ + Σ_i p⁰_i σ_i           s.t. σ_i + λ d_ij ≥ h_j ∀i,j,  λ ≥ 0

The worst-case law p* is recovered independently from the primal side (:func:`worst_case`):
by CVaR's dual representation ``CVaR_α^p(Q) = max {Σ q_s Q_s : 0 ≤ q ≤ p/(1−α), Σ q = 1}``,

    R(Q) = max_{p∈P, q} (1−β) Σ p_s Q_s + β Σ q_s Q_s   s.t. 0 ≤ q_s ≤ p_s/(1−α), Σ q_s = 1,

a linear programme in (p, q) (plus a transport plan π for Wasserstein) whose maximiser p* is
a worst-case distribution; its value equals the dualised minimisation (strong LP duality),
which the tests check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition

from controllers.solve import highs, raise_if_interrupted

log = logging.getLogger(__name__)

Ambiguity = Literal["none", "l1", "wasserstein"]
AMBIGUITIES: tuple[str, ...] = ("none", "l1", "wasserstein")


@dataclass(frozen=True)
class RiskSpec:
    """Risk measure ``(1−β)E + βCVaR_α`` and ambiguity set (kind, radius θ)."""

    ambiguity: Ambiguity = "none"
    radius: float = 0.0
    alpha: float = 0.9
    beta: float = 0.5

    def __post_init__(self) -> None:
        if self.ambiguity not in AMBIGUITIES:
            raise ValueError(f"ambiguity {self.ambiguity!r}; allowed: {', '.join(AMBIGUITIES)}")
        if not self.radius >= 0:
            raise ValueError(f"radius must be >= 0, got {self.radius}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")


@dataclass(frozen=True)
class RiskEvaluation:
    """R(Q) at fixed costs, with the worst-case law and its mean and CVaR."""

    value: float
    probabilities: np.ndarray
    expected: float
    cvar: float


def nominal_probabilities(n: int) -> np.ndarray:
    """Uniform nominal law p⁰_s = 1/N of N Monte-Carlo samples."""
    if n < 1:
        raise ValueError("need at least one scenario")
    return np.full(n, 1.0 / n)


def ground_distances(
    trajectories: np.ndarray, metric: Literal["l1", "l2"] = "l1", scale_mw: float | None = None
) -> np.ndarray:
    """Ground metric d_ij between scenario trajectories ξ (shape ``(N, campuses, steps)``, MW).

    Normalised L1 (default), the time-mean of the summed absolute campus difference as a
    fraction of ``S`` (``scale_mw``, e.g. the total campus capacity):

        d_ij = (1 / (S·T)) Σ_t Σ_c |ξ_ict − ξ_jct|

    Normalised L2, the root-mean-square over time of the campus-difference norm:

        d_ij = (1 / S) · sqrt( (1/T) Σ_t Σ_c (ξ_ict − ξ_jct)² )

    With ``0 ≤ ξ ≤ capacity`` and ``S`` the total capacity both lie in [0, 1], so the
    Wasserstein radius θ reads as "mean load shift as a fraction of campus capacity".
    ``S`` defaults to the largest absolute value in the ensemble (then ≥ 1 MW·1e-9).
    """
    xi = np.asarray(trajectories, dtype=float)
    if xi.ndim == 2:
        xi = xi[:, None, :]
    if xi.ndim != 3:
        raise ValueError(f"trajectories must have shape (N, campuses, steps), got {xi.shape}")
    n, _, steps = xi.shape
    scale = float(scale_mw) if scale_mw is not None else max(float(np.abs(xi).max()), 1e-9)
    if scale <= 0:
        raise ValueError(f"scale_mw must be > 0, got {scale_mw}")
    flat = xi.reshape(n, -1)
    diff = flat[:, None, :] - flat[None, :, :]
    if metric == "l1":
        d = np.abs(diff).sum(axis=2) / (scale * steps)
    elif metric == "l2":
        d = np.sqrt((diff**2).sum(axis=2) / steps) / scale
    else:
        raise ValueError(f"metric {metric!r}; allowed: l1, l2")
    np.fill_diagonal(d, 0.0)
    return d


def cvar(values: Sequence[float], probs: Sequence[float], alpha: float) -> float:
    """CVaR_α of a discrete law: min over η ∈ {Q_s} of η + (1/(1−α)) Σ p_s (Q_s − η)⁺.

    The Rockafellar–Uryasev function is convex and piecewise linear in η with kinks at the
    atoms Q_s, so its minimum is attained at an atom; this is an LP-free reference value.
    """
    q = np.asarray(values, dtype=float)
    p = np.asarray(probs, dtype=float)
    etas = q[:, None]
    vals = etas[:, 0] + (p[None, :] * np.maximum(q[None, :] - etas, 0.0)).sum(axis=1) / (1 - alpha)
    return float(vals.min())


def _check_inputs(n: int, p0: np.ndarray, spec: RiskSpec, distances: np.ndarray | None) -> None:
    if p0.shape != (n,):
        raise ValueError(f"p0 has shape {p0.shape}, expected ({n},)")
    if abs(p0.sum() - 1.0) > 1e-9 or (p0 < 0).any():
        raise ValueError("p0 must be a probability vector")
    if spec.ambiguity == "wasserstein":
        if distances is None or np.asarray(distances).shape != (n, n):
            raise ValueError(f"wasserstein needs an ({n}, {n}) distance matrix")


def add_risk_block(
    blk: pyo.Block,
    costs: Sequence[object],
    p0: np.ndarray,
    spec: RiskSpec,
    distances: np.ndarray | None = None,
) -> pyo.Expression:
    """Add the dualised risk functional R(Q) of eq. (R) to ``blk``; return ``blk.value``.

    ``costs[s]`` is a Pyomo expression (or variable, or number) for Q_s. Variables added:
    ``eta`` (η, the VaR level), ``u[s]`` (u_s ≥ Q_s − η, u_s ≥ 0), ``h[s]`` (h_s, defined by
    ``h_s = (1−β)Q_s + βη + (β/(1−α)) u_s``) and the dual multipliers of the ambiguity set
    (``lam``, ``mu``, ``nu`` for l1; ``lam``, ``sigma`` for Wasserstein). The minimum of
    ``blk.value`` over these variables equals R(Q) (module docstring).
    """
    n = len(costs)
    p0 = np.asarray(p0, dtype=float)
    _check_inputs(n, p0, spec, distances)
    a, b, theta = spec.alpha, spec.beta, spec.radius
    S = range(n)
    blk.S = pyo.Set(initialize=S, ordered=True)
    blk.eta = pyo.Var()
    blk.u = pyo.Var(blk.S, domain=pyo.NonNegativeReals)
    blk.h = pyo.Var(blk.S)
    blk.u_def = pyo.Constraint(blk.S, rule=lambda _, s: blk.u[s] >= costs[s] - blk.eta)
    blk.h_def = pyo.Constraint(
        blk.S, rule=lambda _, s: blk.h[s] == (1 - b) * costs[s] + b * blk.eta + (b / (1 - a)) * blk.u[s]
    )
    if spec.ambiguity == "none":
        blk.value = pyo.Expression(expr=sum(float(p0[s]) * blk.h[s] for s in S))
    elif spec.ambiguity == "l1":
        blk.lam = pyo.Var(domain=pyo.NonNegativeReals)
        blk.mu = pyo.Var()
        blk.nu = pyo.Var(blk.S, domain=pyo.NonNegativeReals)
        blk.tv_up = pyo.Constraint(blk.S, rule=lambda _, s: blk.h[s] + blk.nu[s] - blk.mu <= blk.lam)
        blk.tv_lo = pyo.Constraint(blk.S, rule=lambda _, s: blk.mu - blk.h[s] - blk.nu[s] <= blk.lam)
        blk.value = pyo.Expression(
            expr=sum(float(p0[s]) * (blk.h[s] + blk.nu[s]) for s in S) + theta * blk.lam
        )
    else:
        d = np.asarray(distances, dtype=float)
        blk.lam = pyo.Var(domain=pyo.NonNegativeReals)
        blk.sigma = pyo.Var(blk.S)
        blk.w_dual = pyo.Constraint(
            blk.S, blk.S, rule=lambda _, i, j: blk.sigma[i] + float(d[i, j]) * blk.lam >= blk.h[j]
        )
        blk.value = pyo.Expression(
            expr=theta * blk.lam + sum(float(p0[i]) * blk.sigma[i] for i in S)
        )
    return blk.value


class WorstCase:
    """Persistent primal LP of R(Q) in (p, q[, π]); :meth:`evaluate` re-solves for new Q.

        max (1−β) Σ_s p_s Q_s + β Σ_s q_s Q_s
        s.t. 0 ≤ q_s ≤ p_s/(1−α), Σ_s q_s = 1, p ∈ P

    with p ∈ P written as ``p = p⁰ + a − b, Σ(a+b) ≤ θ, Σp = 1`` (l1) or as the column sums
    of a transport plan ``π ≥ 0, Σ_j π_ij = p⁰_i, Σ_ij d_ij π_ij ≤ θ`` (Wasserstein). The
    model is built once (Q enters only the objective, as mutable parameters) and kept in a
    persistent HiGHS instance, so the Benders loop re-evaluates it cheaply.
    """

    def __init__(self, p0: np.ndarray, spec: RiskSpec, distances: np.ndarray | None = None):
        p0 = np.asarray(p0, dtype=float)
        n = p0.size
        _check_inputs(n, p0, spec, distances)
        self.spec = spec
        a, b, theta = spec.alpha, spec.beta, spec.radius
        m = pyo.ConcreteModel()
        m.S = pyo.Set(initialize=range(n), ordered=True)
        m.Q = pyo.Param(m.S, initialize=0.0, mutable=True)
        m.p = pyo.Var(m.S, domain=pyo.NonNegativeReals)
        m.q = pyo.Var(m.S, domain=pyo.NonNegativeReals)
        m.q_cap = pyo.Constraint(m.S, rule=lambda _, s: (1 - a) * m.q[s] <= m.p[s])
        m.q_sum = pyo.Constraint(expr=sum(m.q[s] for s in m.S) == 1)
        if spec.ambiguity == "none" or theta == 0:
            m.p_fix = pyo.Constraint(m.S, rule=lambda _, s: m.p[s] == float(p0[s]))
        elif spec.ambiguity == "l1":
            m.up = pyo.Var(m.S, domain=pyo.NonNegativeReals)
            m.dn = pyo.Var(m.S, domain=pyo.NonNegativeReals)
            m.p_def = pyo.Constraint(
                m.S, rule=lambda _, s: m.p[s] == float(p0[s]) + m.up[s] - m.dn[s]
            )
            m.p_sum = pyo.Constraint(expr=sum(m.p[s] for s in m.S) == 1)
            m.tv = pyo.Constraint(expr=sum(m.up[s] + m.dn[s] for s in m.S) <= theta)
        else:
            d = np.asarray(distances, dtype=float)
            m.pi = pyo.Var(m.S, m.S, domain=pyo.NonNegativeReals)
            m.row = pyo.Constraint(
                m.S, rule=lambda _, i: sum(m.pi[i, j] for j in m.S) == float(p0[i])
            )
            m.col = pyo.Constraint(m.S, rule=lambda _, j: sum(m.pi[i, j] for i in m.S) == m.p[j])
            m.budget = pyo.Constraint(
                expr=sum(float(d[i, j]) * m.pi[i, j] for i in m.S for j in m.S if d[i, j] > 0)
                <= theta
            )
        m.obj = pyo.Objective(
            expr=sum(((1 - b) * m.p[s] + b * m.q[s]) * m.Q[s] for s in m.S), sense=pyo.maximize
        )
        self.model = m
        self.solver = highs(load_solution=True)

    def evaluate(self, values: Sequence[float]) -> RiskEvaluation:
        """R(Q), a worst-case law p*, E_{p*}[Q] and CVaR_α^{p*}(Q) (by :func:`cvar`)."""
        m = self.model
        q_val = np.asarray(values, dtype=float)
        if q_val.shape != (len(m.S),):
            raise ValueError(f"expected {len(m.S)} costs, got shape {q_val.shape}")
        for s in m.S:
            m.Q[s] = float(q_val[s])
        res = self.solver.solve(m)
        raise_if_interrupted(self.solver)
        if res.termination_condition != TerminationCondition.optimal:
            raise RuntimeError(f"worst-case LP ended with {res.termination_condition}")
        p_star = np.clip(np.array([pyo.value(m.p[s]) for s in m.S]), 0.0, None)
        p_star = p_star / p_star.sum()
        return RiskEvaluation(
            value=float(pyo.value(m.obj)),
            probabilities=p_star,
            expected=float(p_star @ q_val),
            cvar=cvar(q_val, p_star, self.spec.alpha),
        )


def worst_case(
    values: Sequence[float],
    p0: np.ndarray,
    spec: RiskSpec,
    distances: np.ndarray | None = None,
) -> RiskEvaluation:
    """R(Q) at fixed costs and a worst-case law p* (one-off :class:`WorstCase`)."""
    return WorstCase(p0, spec, distances).evaluate(values)


def dual_risk_value(
    values: Sequence[float], p0: np.ndarray, spec: RiskSpec, distances: np.ndarray | None = None
) -> float:
    """R(Q) at fixed costs from the dualised minimisation of :func:`add_risk_block`."""
    m = pyo.ConcreteModel()
    m.risk = pyo.Block()
    value = add_risk_block(m.risk, [float(v) for v in values], p0, spec, distances)
    m.obj = pyo.Objective(expr=value)
    res = highs(load_solution=True).solve(m)
    if res.termination_condition != TerminationCondition.optimal:
        raise RuntimeError(f"dual risk LP ended with {res.termination_condition}")
    return float(pyo.value(m.obj))
