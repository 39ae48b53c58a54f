"""AI campus load model: a SimPy process model of an AI data-center campus.

The campus's grid draw is built from documented mechanisms (docs/campus.md), never from a
canned curve:

* **Training jobs** arrive (Poisson), queue FIFO for the training pool, start, run and stop.
  A start or stop is a linear ramp of the job's size over ``job_ramp_s``.
* **Synchronized power swings** of running training jobs: a square wave between a compute
  level ``h`` and a communication level ``l`` at ``swing_hz``, duty ``d`` (compute share);
  ``h/l = 1 + swing_frac`` and the cycle mean is the job's size. **Checkpoint dips** drop a
  job to ``1 - checkpoint_depth`` of its size for ``checkpoint_s`` every
  ``checkpoint_interval_s``.
* **Inference** with a diurnal cosine shape and AR(1) noise; a constant **idle** IT floor.
* **Cooling and facility** load that follows ``(PUE - 1) × IT`` through a first-order lag.
* **Ride-through** (:mod:`models.ride_through`): the POI voltage (through an on-load tap
  changer) and the shots of grid faults (solved by the feeder, :mod:`models.faults`) are
  checked against a ride-through curve and a count of repeated sags; below the curve, or
  at the N-th sag within a window, the campus moves to UPS/backup, its grid draw falls to
  ``backup_residual_frac`` of its load, and it reconnects after ``reconnect_delay_s``, at
  once or ramped. A counterfactual state judges the same shots without the inverters'
  support.
* **Reactive power** from the power factor.

SimPy only carries the events (job arrivals, starts, stops, surges, oscillation episodes,
fault shots, trips, reconnections): a handful per hour. Within a co-simulation step the
power is evaluated vectorised on a sub-grid (:meth:`Campus.step`), and over a whole horizon
in closed form per step (:func:`step_means`, used by :mod:`models.shocks` and by
:meth:`Campus.forecast`). Both use the same mechanism functions and the same parameters.

Time: ``t_s`` is seconds on the campus clock; the time of day is ``t_s mod 86400``.
Sign: campus ``p_mw``/``q_mvar`` > 0 is consumption from the grid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import simpy
from pydantic import Field, NonNegativeFloat, PositiveFloat, field_validator, model_validator

from models.ride_through import RideThrough, Trip
from models.ride_through import ride_through_violated as _below_curve
from models.schema import Name, StrictModel
from models.shock_config import ShockConfig

log = logging.getLogger(__name__)

DAY_S = 86_400.0
#: ``online`` is the connection state at the end of a step, taken just before its end
#: (a reconnection exactly at the step's end belongs to the next step).
ONLINE_EPS_S = 1e-6
#: Upper bound on the sub-intervals :meth:`Campus.step` evaluates within one step.
MAX_SUBSTEPS = 20_000
#: (job or trip, step) pairs the closed-form step means evaluate at once (a few arrays of
#: this many floats: about 10 MB each), whatever the horizon and the number of jobs.
CHUNK_PAIRS = 1 << 20
_EPS = 1e-12


class CampusConfig(StrictModel):
    """``[[campus]]``: one AI data-center campus at a point of interconnection (POI).

    All ``*_frac`` sizes of IT load are fractions of the IT capacity
    ``capacity_mw / pue``. Defaults and the public facts behind them: docs/campus.md.
    """


    name: Name = "campus1"
    bus: str
    capacity_mw: float = Field(gt=0, le=100_000.0)   # up to 100 GW
    power_factor: float = Field(0.98, ge=0.5, le=1)
    # facility
    pue: float = Field(1.25, ge=1.0, le=3.0)
    cooling_tau_s: PositiveFloat = 600.0
    # IT composition (fractions of IT capacity); the training pool is the rest
    idle_frac: float = Field(0.10, ge=0, le=1)
    inference_frac: float = Field(0.25, ge=0, le=1)
    inference_trough: float = Field(0.6, ge=0, le=1)
    inference_peak_hour: float = Field(15.0, ge=0, lt=24)
    inference_noise: float = Field(0.05, ge=0, le=1)
    inference_noise_tau_s: PositiveFloat = 900.0
    # training jobs
    job_rate_per_h: float = Field(0.8, ge=0, le=100.0)  # bounds the arrival loop
    job_size_frac: tuple[float, float] = (0.05, 0.30)
    job_hours: tuple[PositiveFloat, PositiveFloat] = (1.0, 12.0)
    job_ramp_s: NonNegativeFloat = Field(60.0, le=3600.0)
    initial_fill: float = Field(0.8, ge=0, le=1)
    # synchronized swings and checkpoints
    swing_frac: float = Field(0.15, ge=0, le=10)
    swing_hz: float = Field(1.0, ge=0.01, le=10)
    swing_duty: float = Field(0.7, gt=0, lt=1)
    checkpoint_interval_s: NonNegativeFloat = 1800.0
    checkpoint_s: NonNegativeFloat = 30.0
    checkpoint_depth: float = Field(0.5, ge=0, le=1)
    # ride-through and reconnection
    # the ITIC (CBEMA) curve's lower boundary (docs/campus.md §3)
    ride_through: list[tuple[float, float]] = Field(
        default_factory=lambda: [(0.7, 0.02), (0.8, 0.5), (0.9, 10.0)]
    )
    tap_range_pu: float = Field(0.10, ge=0, le=0.3)
    sag_count_trip: int = Field(3, ge=0, le=100)
    sag_count_v_pu: float = Field(0.9, gt=0, le=1.2)
    sag_count_window_s: PositiveFloat = 60.0
    reconnect_delay_s: NonNegativeFloat = 1800.0
    reconnect_ramp_s: NonNegativeFloat = 600.0
    backup_residual_frac: float = Field(0.02, ge=0, le=1)
    # the UPS front end during a fault's shot (docs/campus.md §3, models/faults/solve.py):
    # its rectifiers hold their power up to this input current (pu of the current at
    # capacity and nominal voltage), and below this input voltage (lowest phase) its
    # batteries carry the IT load for the sag
    ups_current_limit_pu: float = Field(1.2, ge=0.5, le=3.0)
    ups_transfer_v_pu: float = Field(0.85, ge=0.0, le=1.0)

    @field_validator("job_size_frac")
    @classmethod
    def _size_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1] <= 1.0:
            raise ValueError(f"must be [low, high] with 0 <= low <= high <= 1, got {list(v)}")
        return v

    @field_validator("job_hours")
    @classmethod
    def _hours_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < v[0] <= v[1] <= 1000.0:
            raise ValueError(f"must be [low, high] hours with 0 < low <= high <= 1000, got {list(v)}")
        return v

    @field_validator("ride_through")
    @classmethod
    def _curve(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if not v:
            raise ValueError("needs at least one [v_pu, max_duration_s] point")
        for vk, dk in v:
            if not 0.0 < vk <= 1.2 or dk < 0:
                raise ValueError(
                    f"points are [v_pu in (0, 1.2], max_duration_s >= 0], got [{vk}, {dk}]")
        for (v0, d0), (v1, d1) in zip(v, v[1:]):
            if not (v1 > v0 and d1 >= d0):
                raise ValueError(
                    "points must rise in voltage and not fall in duration (a deeper sag is "
                    f"ridden through for no longer), got [{v0}, {d0}] then [{v1}, {d1}]")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "CampusConfig":
        if self.idle_frac + self.inference_frac > 1.0 + 1e-9:
            raise ValueError(
                f"idle_frac + inference_frac must be <= 1 (the rest is the training pool), "
                f"got {self.idle_frac} + {self.inference_frac}"
            )
        pool = 1.0 - self.idle_frac - self.inference_frac
        if self.job_rate_per_h > 0 and self.job_size_frac[1] > pool + 1e-9:
            raise ValueError(
                f"job_size_frac high ({self.job_size_frac[1]}) must fit the training pool, "
                f"1 - idle_frac - inference_frac = {pool:.3g}"
            )
        if self.checkpoint_interval_s > 0 and self.checkpoint_s > self.checkpoint_interval_s:
            raise ValueError(f"checkpoint_s ({self.checkpoint_s}) must be <= "
                             f"checkpoint_interval_s ({self.checkpoint_interval_s})")
        return self

    @property
    def it_capacity_mw(self) -> float:
        """IT capacity, ``capacity_mw / pue``: the IT load at which the grid draw is capacity."""
        return self.capacity_mw / self.pue

    @property
    def pool_mw(self) -> float:
        """Training pool in IT MW: ``(1 - idle_frac - inference_frac) × IT capacity``."""
        return max(0.0, 1.0 - self.idle_frac - self.inference_frac) * self.it_capacity_mw

    @property
    def tan_phi(self) -> float:
        """``q / p = tan(arccos(pf))`` (lagging, consuming)."""
        pf = self.power_factor
        return math.sqrt(max(0.0, 1.0 - pf * pf)) / pf


# --------------------------------------------------------------------------------------
# Mechanism functions (pure numpy; shared by Campus.step, Campus.forecast, models.shocks)
# --------------------------------------------------------------------------------------


def ramp(t: np.ndarray, t0: np.ndarray, ramp_s: float | np.ndarray) -> np.ndarray:
    """Linear ramp ``R(t) = clip((t - t0) / r, 0, 1)``; a unit step at ``t0`` when r = 0."""
    r = np.asarray(ramp_s, dtype=float)
    x = np.asarray(t, dtype=float) - t0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(r > 0, np.clip(x / np.where(r > 0, r, 1.0), 0.0, 1.0), (x >= 0) * 1.0)
    return out


def _ramp_at(t: float, t0: float, ramp_s: float) -> float:
    """:func:`ramp` at one time, in plain floats (the same IEEE operations, so the same
    value): ``clip((t − t0)/r, 0, 1)``, a unit step when r = 0."""
    x = t - t0
    if ramp_s > 0:
        return min(max(x / ramp_s, 0.0), 1.0)
    return 1.0 if x >= 0 else 0.0


def ramp_integral(t: np.ndarray, t0: np.ndarray, ramp_s: float | np.ndarray) -> np.ndarray:
    """``∫_{-∞}^{t} R(τ) dτ`` = 0 (x ≤ 0), x²/(2r) (0 < x < r), x − r/2 (x ≥ r), x = t − t0;
    written as ``min(max(x, 0), r)²/(2r) + max(x − r, 0)`` (also right for r = 0)."""
    r = np.asarray(ramp_s, dtype=float)
    x = np.asarray(t, dtype=float) - t0
    xc = np.clip(x, 0.0, r)
    return np.where(r > 0, xc * xc / (2 * np.where(r > 0, r, 1.0)), 0.0) + np.maximum(x - r, 0.0)


def square_integral(t, period, duty, first, second, phase=0.0) -> np.ndarray:
    """Integral from ``phase`` to ``t`` of a square wave that is ``first`` for the first
    fraction ``duty`` of each period and ``second`` for the rest:

    ``S(t) = T·(n·(d·a + (1−d)·b) + a·min(x, d) + b·max(x − d, 0))``, with
    ``u = (t − phase)/T``, ``n = ⌊u⌋``, ``x = u − n``.
    Differences of ``S`` give exact window means of swings and checkpoint dips.
    """
    period = np.asarray(period, dtype=float)
    u = (np.asarray(t, dtype=float) - phase) / period
    n = np.floor(u)
    x = u - n
    return period * (
        n * (duty * first + (1 - duty) * second)
        + first * np.minimum(x, duty)
        + second * np.maximum(x - duty, 0.0)
    )


def swing_levels(swing_frac: np.ndarray | float, duty: float) -> tuple[np.ndarray, np.ndarray]:
    """Compute and communication levels (per unit of the job size) of a swing:
    ``l = 1 / (1 + d·s)``, ``h = (1 + s)·l``, so that ``d·h + (1−d)·l = 1`` and ``h/l = 1+s``."""
    s = np.asarray(swing_frac, dtype=float)
    low = 1.0 / (1.0 + duty * s)
    return (1.0 + s) * low, low


def diurnal(t_s: np.ndarray, cfg: CampusConfig) -> np.ndarray:
    """Inference shape (per unit of its peak):
    ``g(t) = m + (1 − m)·(1 + cos(2π (h(t) − h_peak)/24))/2``, ``h(t)`` the hour of day,
    ``m`` = ``inference_trough``."""
    hour = (np.asarray(t_s, dtype=float) % DAY_S) / 3600.0
    m = cfg.inference_trough
    return m + (1 - m) * 0.5 * (1 + np.cos(2 * np.pi * (hour - cfg.inference_peak_hour) / 24.0))


def lag_coefficients(step_s: float, tau_s: float) -> tuple[float, float]:
    """First-order lag over a step Δ held at input x: ``F⁺ = a·F + (1−a)·x`` with
    ``a = e^{−Δ/τ}``; the step mean is ``x + (F − x)·c`` with ``c = (τ/Δ)(1 − a)``."""
    a = math.exp(-step_s / tau_s)
    return a, tau_s / step_s * (1.0 - a)


def ar1_coefficients(step_s: float, tau_s: float, sigma: float) -> tuple[float, float]:
    """AR(1) inference noise per step: ``n⁺ = φ·n + σ·√(1−φ²)·ε``, ``φ = e^{−Δ/τ}``,
    stationary standard deviation σ."""
    phi = math.exp(-step_s / tau_s)
    return phi, sigma * math.sqrt(1.0 - phi * phi)


@lru_cache(maxsize=32)
def _recurrence_kernel(a: float, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block matrices of :func:`linear_recurrence` for one ``a``, built once and kept
    (read-only): ``M[i, j] = a^(i−1−j)`` for ``j < i``, ``a^(block−1−i)`` and ``a^i``."""
    i = np.arange(block)
    expo = i[:, None] - 1 - i[None, :]
    mat = np.where(expo >= 0, a ** np.maximum(expo, 0), 0.0)
    last = a ** (block - 1 - i)
    powers = a ** i
    for arr in (mat, last, powers):
        arr.flags.writeable = False
    return mat, last, powers


def linear_recurrence(u: np.ndarray, a: float, y0, block: int = 128) -> np.ndarray:
    """States ``y_k`` (k = 0…n−1) of ``y_{k+1} = a·y_k + u_k`` from ``y_0``, along the
    last axis, vectorised in blocks: ``y_{k0+i} = a^i·y_{k0} + Σ_{j<i} a^{i−1−j}·u_{k0+j}``.
    Used for the facility lag and the AR(1) noise over a whole horizon."""
    u = np.asarray(u, dtype=float)
    n = u.shape[-1]
    y = np.empty_like(u)
    state = np.broadcast_to(np.asarray(y0, dtype=float), u.shape[:-1]).copy()
    mat, last, powers = _recurrence_kernel(float(a), block)
    for k0 in range(0, n, block):  # n / block iterations, not one per step
        m = min(block, n - k0)
        ub = u[..., k0:k0 + m]
        y[..., k0:k0 + m] = state[..., None] * powers[:m] + ub @ mat[:m, :m].T
        state = state * a ** m + ub @ last[block - m:]
    return y


def ride_through_violated(cfg: CampusConfig, v_pu: float, duration_s: float) -> bool:
    """True when a voltage ``v_pu`` held for ``duration_s`` lies below the campus's
    ride-through curve (:func:`models.ride_through.ride_through_violated`)."""
    return _below_curve(cfg.ride_through, v_pu, duration_s)


@dataclass
class JobArrays:
    """Training jobs as arrays (IT MW, seconds); ``stop_s`` is the scheduled stop."""

    size_mw: np.ndarray
    start_s: np.ndarray
    stop_s: np.ndarray


@dataclass
class TripArrays:
    """Trips: offline from ``trip_s``, reconnection begins at ``reconnect_s`` and ramps to
    full over ``ramp_s`` (0 = at once)."""

    trip_s: np.ndarray
    reconnect_s: np.ndarray
    ramp_s: np.ndarray


def _windows(edges: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each interval ``[lo_j, hi_j)``, the steps ``[e_k, e_{k+1})`` of ``edges`` that
    overlap it: the first ``k0_j`` and how many, ``n_j`` (0 when none)."""
    n_steps = len(edges) - 1
    k0 = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, n_steps)
    k1 = np.clip(np.searchsorted(edges, hi, side="left"), 0, n_steps)
    return k0, np.maximum(k1 - k0, 0)


def _pairs(k0: np.ndarray, count: np.ndarray, budget: int = CHUNK_PAIRS):
    """``(j, k)`` index arrays of the (item, step) pairs of :func:`_windows`, item by item,
    about ``budget`` pairs at a time (an item's window is never split)."""
    ends = np.cumsum(count)
    start = 0
    while start < len(count):
        done = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, done + budget, side="right")), start + 1)
        c = count[start:stop]
        j = np.repeat(np.arange(start, stop), c)
        k = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c) + np.repeat(k0[start:stop], c)
        yield j, k
        start = stop


def training_step_means(edges: np.ndarray, jobs: JobArrays, cfg: CampusConfig) -> np.ndarray:
    """Step means of the training IT load (MW) on the step edges ``e_0 < … < e_N``.

    Job j draws ``P_j(t) = S_j·(R(t; t_start, r) − R(t; t_stop, r))·C_j(t)`` with ramp ``R``
    and checkpoint factor ``C_j`` (``1 − depth`` for ``checkpoint_s`` every interval, the
    first dip half an interval after the start). Its step mean is the exact ramp mean
    ``(∫R)/Δ`` times the exact checkpoint mean (their product is exact except in a step
    that holds both a ramp and a dip). Swings are mean-preserving, so they do not enter.

    Only the steps a job overlaps, ``[t_start, t_stop + r)``, are evaluated (it is exactly 0
    elsewhere), :data:`CHUNK_PAIRS` (job, step) pairs at a time: memory stays bounded and
    time grows with the jobs' total duration, not with jobs × steps.
    """
    n_steps = len(edges) - 1
    out = np.zeros(n_steps)
    if len(jobs.size_mw) == 0:
        return out
    r = cfg.job_ramp_s
    width = np.diff(edges)
    k0, count = _windows(edges, jobs.start_s, jobs.stop_s + r)
    for j, k in _pairs(k0, count):
        e0, e1, s0, s1 = edges[k], edges[k + 1], jobs.start_s[j], jobs.stop_s[j]
        on = (ramp_integral(e1, s0, r) - ramp_integral(e1, s1, r)) - (
            ramp_integral(e0, s0, r) - ramp_integral(e0, s1, r))
        mean = jobs.size_mw[j] * on / width[k]
        ck0 = _checkpoint_integral(e0, s0, cfg)
        if ck0 is not None:
            mean = mean * (_checkpoint_integral(e1, s0, cfg) - ck0) / width[k]
        out += np.bincount(k, weights=mean, minlength=n_steps)
    return out


def _checkpoint_integral(t: np.ndarray, start_s: np.ndarray, cfg: CampusConfig):
    """``∫ C_j`` up to ``t`` of jobs started at ``start_s`` (:func:`square_integral`);
    ``None`` when the campus has no checkpoint dips."""
    if cfg.checkpoint_interval_s <= 0 or cfg.checkpoint_s <= 0 or cfg.checkpoint_depth <= 0:
        return None
    period = cfg.checkpoint_interval_s
    return square_integral(t, period, cfg.checkpoint_s / period, 1.0 - cfg.checkpoint_depth,
                           1.0, start_s + 0.5 * period)


def _checkpoint_mean(edges: np.ndarray, start_s: np.ndarray, cfg: CampusConfig):
    s = _checkpoint_integral(edges[None, :], start_s[:, None], cfg)
    if s is None:
        return None
    return np.diff(s, axis=1) / np.diff(edges)[None, :]


def expected_events(cfg: CampusConfig, shocks: ShockConfig | None, hours: float,
                    shots_per_day: float = 0.0) -> float:
    """Expected number of events the campus's SimPy schedule draws over ``hours``: training-
    job arrivals, with ``shocks`` surges and oscillation episodes, and the shots of grid
    faults it judges (``shots_per_day``, :meth:`models.faults.FaultLaw.shots_per_day`).
    Memory and time of a schedule grow with it (docs/conventions.md, "Limits")."""
    n = cfg.job_rate_per_h * hours + hours / 24.0 * shots_per_day
    if shocks is not None:
        n += hours / 24.0 * (shocks.surge_rate_per_day + shocks.oscillation_rate_per_day)
    return n


def connection(t: np.ndarray, trips: TripArrays) -> np.ndarray:
    """Connection factor ``κ(t) ∈ [0, 1]``: 1 before a trip, 0 from the trip to the
    reconnection, then ``R(t; t_reconnect, r)``; several trips combine by their minimum."""
    t = np.asarray(t, dtype=float)
    if len(trips.trip_s) == 0:
        return np.ones_like(t)
    tt = t[None, ...]
    shape = (-1,) + (1,) * t.ndim
    a, b, r = (x.reshape(shape) for x in (trips.trip_s, trips.reconnect_s, trips.ramp_s))
    k = np.where(tt < a, 1.0, ramp(tt, b, r))
    return k.min(axis=0)


def connection_step_means(edges: np.ndarray, trips: TripArrays) -> np.ndarray:
    """Step means of ``κ`` in closed form per trip,
    ``κ̄_i = (Δ − ∫1[t ≥ a_i] + ∫R(t; b_i, r_i))/Δ``, combined by the minimum over trips
    (exact unless a trip falls inside another's reconnection ramp in the same step). A trip
    is evaluated only on the steps it overlaps, ``[a_i, b_i + r_i)`` (κ̄_i is 1 elsewhere),
    in chunks as in :func:`training_step_means`."""
    n_steps = len(edges) - 1
    kappa = np.ones(n_steps)
    if len(trips.trip_s) == 0:
        return kappa
    width = np.diff(edges)
    k0, count = _windows(edges, trips.trip_s, trips.reconnect_s + trips.ramp_s)
    for i, k in _pairs(k0, count):
        e0, e1, a, b, r = edges[k], edges[k + 1], trips.trip_s[i], trips.reconnect_s[i], trips.ramp_s[i]
        moved = (np.maximum(e1 - a, 0.0) - ramp_integral(e1, b, r)) - (
            np.maximum(e0 - a, 0.0) - ramp_integral(e0, b, r))
        np.minimum.at(kappa, k, 1.0 - moved / width[k])
    return np.clip(kappa, 0.0, 1.0)


def step_means(
    edges: np.ndarray,
    jobs: JobArrays,
    trips: TripArrays,
    cfg: CampusConfig,
    noise: np.ndarray | None = None,
    fac0_mw: float | None = None,
) -> dict[str, np.ndarray]:
    """Step means of the grid draw on ``edges`` (all in MW), in closed form per step.

    ``IT_k = idle + inference_peak·g(t_k)·(1 + n_k) + training_k``;
    facility ``F`` lags ``(PUE − 1)·IT`` (:func:`lag_coefficients`);
    ``P_k = (IT_k + F̄_k)·(ρ + (1 − ρ)·κ̄_k)`` with ρ = ``backup_residual_frac``.
    Used by the shock generator and by :meth:`Campus.forecast`.
    """
    step = float(edges[1] - edges[0])
    mid = 0.5 * (edges[:-1] + edges[1:])
    it_cap = cfg.it_capacity_mw
    inf = cfg.inference_frac * it_cap * diurnal(mid, cfg)
    if noise is not None:
        inf = inf * np.maximum(0.0, 1.0 + noise)
    train = training_step_means(edges, jobs, cfg)
    it = cfg.idle_frac * it_cap + inf + train
    a, c = lag_coefficients(step, cfg.cooling_tau_s)
    target = (cfg.pue - 1.0) * it
    f = linear_recurrence((1 - a) * target, a, target[0] if fac0_mw is None else fac0_mw)
    fac = target + (f - target) * c
    kappa = connection_step_means(edges, trips)
    rho = cfg.backup_residual_frac
    p = (it + fac) * (rho + (1 - rho) * kappa)
    return {"p_mw": p, "it_mw": it, "training_mw": train, "inference_mw": inf,
            "facility_mw": fac, "kappa": kappa}


# --------------------------------------------------------------------------------------
# Event layer (SimPy)
# --------------------------------------------------------------------------------------


@dataclass
class Schedule:
    """SimPy event layer of one campus: jobs, surges, oscillation episodes, the shots of
    grid faults, trips. Shared by :class:`Campus` and the shock generator
    (:mod:`models.shocks`).

    Two ride-through states (:mod:`models.ride_through`): :attr:`actual`, whose trips
    (:attr:`trips`) shape the campus's draw, judged on the retained voltage with the
    inverters' fault current, and :attr:`unsupported`, the counterfactual judged on the
    same shots without it."""

    cfg: CampusConfig
    rng: np.random.Generator
    start_s: float
    shocks: ShockConfig | None = None
    env: simpy.Environment = field(init=False)
    jobs: list[list[float]] = field(init=False, default_factory=list)   # [size, start, stop, surge]
    queue: list[list] = field(init=False, default_factory=list)  # [size, duration, event]
    episodes: list[tuple[float, float, float, float]] = field(init=False, default_factory=list)
    #: the shots judged: (time, v with support, duration, tripped the campus)
    disturbances: list[tuple[float, float, float, bool]] = field(init=False, default_factory=list)
    events: list[dict] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.cfg
        # one child stream per mechanism: changing one mechanism's settings, or a trip that
        # only happens in one of two runs, leaves every other mechanism's draws unchanged
        # (the fourth, once the campus's own disturbances, is no longer drawn from: grid
        # faults are the feeder's, models.faults)
        (self._r_jobs, self._r_surge, self._r_osc, _, self._r_trip,
         self.noise_rng) = self.rng.spawn(6)
        self.env = simpy.Environment(initial_time=self.start_s)
        self.actual = RideThrough(cfg)
        self.unsupported = RideThrough(cfg)
        self._ramps: dict[tuple, float] = {}  # reconnection ramp drawn per trip key
        self.tap = 1.0  # OLTC ratio τ of the campus transformer (UPS input / POI)
        pool = cfg.pool_mw
        self.free_mw = pool  # training pool not yet taken by running jobs (IT MW)
        self._prefill()
        if cfg.job_rate_per_h > 0 and pool > 0:
            self.env.process(self._arrivals())
        sh = self.shocks
        if sh is not None:
            if sh.surge_rate_per_day > 0 and pool > 0:
                self.env.process(self._surges())
            if sh.oscillation_rate_per_day > 0:
                self.env.process(self._oscillations())

    @property
    def trips(self) -> list[Trip]:
        """The trips that happened (the :attr:`actual` state's)."""
        return self.actual.trips

    # --- draws -------------------------------------------------------------------------
    def _job_size(self) -> float:
        lo, hi = self.cfg.job_size_frac
        return float(self._r_jobs.uniform(lo, hi)) * self.cfg.it_capacity_mw

    def _job_duration(self) -> float:
        lo, hi = self.cfg.job_hours  # log-uniform: many short jobs, a few long ones
        return 3600.0 * math.exp(self._r_jobs.uniform(math.log(lo), math.log(hi)))

    def _prefill(self) -> None:
        """Jobs already running at the start (no start ramp), filling ``initial_fill`` of
        the pool. A job of duration D started ``u·D`` ago (u ~ U(0, 1)) and has ``(1 − u)·D``
        left; its start ramp is over by the start, and its checkpoints keep their own phase."""
        target = self.cfg.initial_fill * self.cfg.pool_mw
        used = 0.0
        while used < target - _EPS:
            size = min(self._job_size(), target - used)
            if size <= _EPS:
                break
            u, duration = self._r_jobs.uniform(0.0, 1.0), self._job_duration()
            remaining = (1.0 - u) * duration
            self.free_mw -= size
            used += size
            t0 = self.start_s - max(u * duration, self.cfg.job_ramp_s)
            self.jobs.append([size, t0, self.start_s + remaining, 0.0])
            self.env.process(self._release(size, remaining))

    def _release(self, size: float, after_s: float):
        yield self.env.timeout(after_s)
        self.free_mw += size
        self._dispatch()

    def _dispatch(self) -> None:
        """Start queued jobs strictly FIFO while the head of the queue fits the free pool."""
        while self.queue and self.queue[0][0] <= self.free_mw + _EPS:
            size, _, go = self.queue.pop(0)
            self.free_mw -= size
            go.succeed()

    # --- processes ---------------------------------------------------------------------
    def _arrivals(self):
        rate_s = self.cfg.job_rate_per_h / 3600.0
        while True:
            yield self.env.timeout(self._r_jobs.exponential(1.0 / rate_s))
            self.env.process(self._job(self._job_size(), self._job_duration()))

    def submit(self, size_mw: float, duration_s: float) -> None:
        """Queue a training job of ``size_mw`` IT MW for ``duration_s`` now (operator action;
        also how tests drive a single job). A job larger than the pool is cut to the pool."""
        size = min(float(size_mw), self.cfg.pool_mw)
        if size < size_mw:
            log.warning("campus %s: job of %.4g MW cut to the training pool, %.4g MW",
                        self.cfg.name, size_mw, size)
        self.env.process(self._job(size, float(duration_s)))

    def _job(self, size: float, duration: float):
        go = self.env.event()
        self.queue.append([size, duration, go])
        self._dispatch()
        yield go
        now = self.env.now
        self.jobs.append([size, now, now + duration, 0.0])
        self.events.append({"time_s": now, "kind": "job_start", "size_mw": size})
        yield self.env.timeout(duration)
        self.events.append({"time_s": self.env.now, "kind": "job_stop", "size_mw": size})
        self.free_mw += size
        self._dispatch()

    def _surges(self):
        sh = self.shocks
        while True:
            yield self.env.timeout(self._r_surge.exponential(DAY_S / sh.surge_rate_per_day))
            lo, hi = sh.surge_size_frac
            want = float(self._r_surge.uniform(lo, hi)) * self.cfg.it_capacity_mw
            hours = float(self._r_surge.uniform(*sh.surge_hours))
            size = max(0.0, min(want, self.free_mw))
            now = self.env.now
            self.events.append({"time_s": now, "kind": "surge", "size_mw": size,
                                "requested_mw": want})
            if size > _EPS:  # a surge bypasses the queue and takes what the pool has free
                self.free_mw -= size
                self.jobs.append([size, now, now + 3600.0 * hours, 1.0])
                self.env.process(self._release(size, 3600.0 * hours))

    def _oscillations(self):
        sh = self.shocks
        while True:
            yield self.env.timeout(self._r_osc.exponential(DAY_S / sh.oscillation_rate_per_day))
            minutes = float(self._r_osc.uniform(*sh.oscillation_minutes))
            swing = float(self._r_osc.uniform(*sh.oscillation_swing_frac))
            hz = float(self._r_osc.uniform(*sh.oscillation_hz))
            now = self.env.now
            self.episodes.append((now, now + 60.0 * minutes, swing, hz))
            self.events.append({"time_s": now, "kind": "oscillation", "swing_frac": swing,
                                "hz": hz, "duration_s": 60.0 * minutes})

    def grid_shots(self, shots) -> None:
        """Judge the shots of grid faults at their times (campus clock), as SimPy events:
        records of :func:`models.faults.grid.GridFaults.sags` (``t_s``, ``duration_s``,
        ``v_pu`` and ``v_unsupported_pu`` at the POI, ``dead_s``, ``lockout``,
        ``restored_s``, ``fault_id``). Call before :meth:`run_until` passes their times."""
        for rec in shots:
            self.env.process(self._shot(dict(rec)))

    def _shot(self, rec: dict):
        yield self.env.timeout(max(float(rec["t_s"]) - self.env.now, 0.0))
        self.shot(rec)

    def shot(self, rec: dict) -> None:
        """One shot of a grid fault at the UPS input (behind the OLTC ratio :attr:`tap` in
        effect), judged by both states (module docstring of :mod:`models.ride_through`):
        the sag itself; then, on a bus the protective device isolates, the dead time as an
        interruption, or the lockout until ``restored_s``."""
        t, dur = float(rec["t_s"]), float(rec["duration_s"])
        fid = int(rec.get("fault_id", -1))
        v = {"actual": self.tap * float(rec["v_pu"]),
             "unsupported": self.tap * float(rec.get("v_unsupported_pu", rec["v_pu"]))}
        if not math.isfinite(v["unsupported"]):
            v["unsupported"] = v["actual"]
        tripped = False
        for name, state in (("actual", self.actual), ("unsupported", self.unsupported)):
            vs = v[name]
            if not math.isfinite(vs):  # no solve could give the voltage: nothing judged
                continue
            online = not state.offline_at(t)
            cause = state.judge_sag(t, vs, dur) if online else None
            t_trip, judged_v, judged_d = t, vs, dur
            dead = float(rec.get("dead_s", 0.0))
            if cause is None and online and dead > 0 and ride_through_violated(self.cfg, 0.0, dead):
                cause, t_trip, judged_v, judged_d = "interruption", t + dur, 0.0, dead
            if cause is None and online and rec.get("lockout"):
                cause, t_trip, judged_v, judged_d = "lockout", t + dur, 0.0, math.inf
            if cause is not None:
                tr = self._trip_state(state, t_trip, cause, judged_v, judged_d, v["unsupported"], fid)
                tripped |= name == "actual" and tr is not None
            if rec.get("lockout") and math.isfinite(float(rec.get("restored_s", math.nan))):
                state.hold_until(t + dur, float(rec["restored_s"]))
        self.disturbances.append((t, v["actual"], dur, tripped))
        self.events.append({"time_s": t, "kind": "sag", "fault_id": fid, "v_pu": v["actual"],
                            "v_unsupported_pu": v["unsupported"], "duration_s": dur,
                            "below_curve": ride_through_violated(self.cfg, v["actual"], dur),
                            "tripped": tripped})

    def trips_avoided(self) -> int:
        """``Σ_f (trips without support − trips with)`` over the grid faults."""
        ids = {tr.fault_id for tr in self.unsupported.trips + self.actual.trips if tr.fault_id >= 0}
        return sum(sum(tr.fault_id == f for tr in self.unsupported.trips)
                   - sum(tr.fault_id == f for tr in self.actual.trips) for f in ids)

    # --- trips -------------------------------------------------------------------------
    def offline_at(self, t_s: float) -> bool:
        """True while the campus is fully on backup (between a trip and its reconnection)."""
        return self.actual.offline_at(t_s)

    def _ramp(self, key: tuple) -> float:
        """The reconnection ramp of the trip ``key``: 0 (the operator closes the breaker on
        the whole load at once) with probability ``reconnect_at_once_prob``, else
        ``reconnect_ramp_s``; drawn once per key, so the actual state and the
        counterfactual reconnect alike after the same fault."""
        if key not in self._ramps:
            at_once = self.shocks is not None and self._r_trip.uniform() < self.shocks.reconnect_at_once_prob
            self._ramps[key] = 0.0 if at_once else self.cfg.reconnect_ramp_s
        return self._ramps[key]

    def _trip_state(self, state: RideThrough, t_s: float, cause: str, v_pu: float,
                    duration_s: float, v_unsupported_pu: float, fault_id: int = -1) -> Trip | None:
        if state.offline_at(t_s):
            return None
        key = ("fault", fault_id) if fault_id >= 0 else (cause, round(t_s, 6))
        tr = state.add(Trip(t_s, t_s + self.cfg.reconnect_delay_s, self._ramp(key), cause,
                            v_pu, duration_s, v_unsupported_pu, fault_id))
        if tr is not None and state is self.actual:
            self.events.append({"time_s": t_s, "kind": "trip", "cause": cause, "v_pu": v_pu,
                                "duration_s": duration_s, "reconnect_s": tr.reconnect_s,
                                "ramp_s": tr.ramp_s, "fault_id": fault_id})
            log.info("campus %s trips at t=%.0f s (%s, %.3f pu for %.3g s); reconnects at "
                     "%.0f s", self.cfg.name, t_s, cause, v_pu, duration_s, tr.reconnect_s)
        return tr

    def trip(self, t_s: float, cause: str, v_pu: float, duration_s: float,
             v_unsupported_pu: float | None = None) -> Trip | None:
        """Move to UPS/backup at ``t_s`` in both states (a cause the inverters' support
        does not touch: the steady POI voltage, an operator); ignored in a state already on
        backup. Returns the actual state's trip."""
        v_u = v_pu if v_unsupported_pu is None else v_unsupported_pu
        self._trip_state(self.unsupported, t_s, cause, v_u, duration_s, v_u)
        return self._trip_state(self.actual, t_s, cause, v_pu, duration_s, v_u)

    def run_until(self, t_s: float) -> None:
        if t_s > self.env.now:
            self.env.run(until=t_s)

    # --- arrays ------------------------------------------------------------------------
    def job_arrays(self) -> JobArrays:
        if not self.jobs:
            z = np.zeros(0)
            return JobArrays(z, z, z)
        a = np.asarray(self.jobs, dtype=float)
        return JobArrays(a[:, 0], a[:, 1], a[:, 2])

    def trip_arrays(self, state: RideThrough | None = None) -> TripArrays:
        """The trips of ``state`` (default: the actual ones) as arrays."""
        trips = (state or self.actual).trips
        return TripArrays(
            np.array([t.t_s for t in trips], dtype=float),
            np.array([t.reconnect_s for t in trips], dtype=float),
            np.array([t.ramp_s for t in trips], dtype=float),
        )

    def swing_at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Swing amplitude and frequency in effect at times ``t``: the latest oscillation
        episode covering t, else the campus baseline (``swing_frac``, ``swing_hz``)."""
        s = np.full(np.shape(t), self.cfg.swing_frac, dtype=float)
        hz = np.full(np.shape(t), self.cfg.swing_hz, dtype=float)
        for t0, t1, sw, f in self.episodes:
            m = (t >= t0) & (t < t1)
            s[m] = sw
            hz[m] = f
        return s, hz


# --------------------------------------------------------------------------------------
# The co-simulation model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampusOutput:
    """One step ``[t, t + Δ)`` of grid draw (consumption > 0): mean, min and max within the
    step, and whether the campus is grid-connected at the end of the step."""

    p_mw: float
    q_mvar: float
    p_min_mw: float
    p_max_mw: float
    online: bool
    it_mw: float = 0.0
    facility_mw: float = 0.0
    #: the mean draw without the inverters' fault-time support (the counterfactual state)
    p_unsupported_mw: float = math.nan


class Campus:
    """SimPy process model of one AI campus, stepped by the co-simulation.

    ``step(t_s, v_poi_pu)`` advances the SimPy environment to ``t_s + step_s`` and returns
    the grid draw over ``[t_s, t_s + step_s)``. ``v_poi_pu`` is the POI voltage of the
    previous step (a time-shifted connection), ``None`` when unknown (taken as nominal).

    Parameters
    ----------
    config: the campus section of the scenario.
    step_s: the co-simulation step Δ in seconds.
    rng: the campus's random generator (derive it from the scenario seed).
    start_s: campus clock time of the first step (time of day = t mod 86400).
    shocks: the scenario's ``[shocks]``; None = no exogenous surges, oscillation episodes
        or disturbances (jobs, swings, checkpoints and voltage trips still run).
    """

    def __init__(
        self,
        config: CampusConfig,
        step_s: float,
        rng: np.random.Generator,
        start_s: float = 0.0,
        shocks: ShockConfig | None = None,
    ) -> None:
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        self.config = config
        self.step_s = float(step_s)
        self.rng = rng
        self.schedule = Schedule(config, rng, float(start_s), shocks)
        self._t_next = float(start_s)
        self._noise_rng = self.schedule.noise_rng
        self._noise = float(self._noise_rng.normal(0.0, config.inference_noise)) if config.inference_noise else 0.0
        self._phi, self._noise_sd = ar1_coefficients(self.step_s, config.inference_noise_tau_s,
                                                      config.inference_noise)
        self._lag_a, self._lag_c = lag_coefficients(self.step_s, config.cooling_tau_s)
        self._fac = None  # facility load state F (MW); initialised at the first step
        self._tap: float | None = None  # OLTC ratio in effect during the last step (None: settled)
        self._first = True
        self.last: CampusOutput | None = None
        # caches of step(): sub-grid offsets per n, job arrays with the job count they
        # were built from, and how many leading trips are over for good
        self._offsets: dict[int, np.ndarray] = {}
        self._jobs_cache: tuple[int, JobArrays] | None = None
        self._trips_done = 0

    @property
    def events(self) -> list[dict]:
        """Event log: job starts/stops, surges, oscillation episodes, disturbances, trips."""
        return self.schedule.events

    @property
    def trips(self) -> list[Trip]:
        return self.schedule.trips

    @property
    def unsupported_trips(self) -> list[Trip]:
        """The counterfactual's trips, without the inverters' fault-time support."""
        return self.schedule.unsupported.trips

    def _voltage_check(self, t_s: float, v_poi_pu: float | None) -> None:
        """Ride-through against the POI voltage of the previous step ``[t − Δ, t)``.

        The campus transformer's OLTC held the ratio ``τ = clip(1/v_prev, 1 ± tap_range)``
        set from the reading before, so the UPS input saw ``v_dc = τ·v``. It then moves to
        ``τ' = clip(1/v, 1 ± tap_range)`` (:attr:`Schedule.tap`): the shots of grid faults in
        the coming step reach the UPS input as ``τ'`` times their retained POI voltage. The
        time below each curve point accumulates while ``v_dc < v_k``; when it exceeds
        ``d_k`` the campus trips at t (in both ride-through states, each while online).

        Start-up: a run starts from a steady state. The reading handed to the first step is
        not a measurement of this run (mosaik's initial value of the time-shifted
        connection) and is ignored; the OLTC is taken as settled on the first measured
        voltage (the campus drew that load before the run began). A missing or NaN reading
        (a diverged power flow) is no measurement: the counters and the tap hold.
        """
        cfg = self.config
        if self._first:
            self._first = False
            return
        if v_poi_pu is None or not np.isfinite(v_poi_pu) or v_poi_pu <= 0:
            return
        v = float(v_poi_pu)
        settled = float(np.clip(1.0 / v, 1 - cfg.tap_range_pu, 1 + cfg.tap_range_pu))
        v_dc = (settled if self._tap is None else self._tap) * v
        self._tap = settled
        sch = self.schedule
        sch.tap = settled
        for state in (sch.actual, sch.unsupported):
            if state.offline_at(t_s - 0.5 * self.step_s):
                state.below_s[:] = 0.0
                continue
            hit = state.judge_steady(v_dc, self.step_s)
            if hit is not None:
                sch._trip_state(state, t_s, "voltage", v_dc, hit[1], v_dc)

    def step(self, t_s: float, v_poi_pu: float | None, shots=()) -> CampusOutput:
        """Advance to ``t_s + step_s``; return mean, min and max grid draw over the step.
        ``shots``: the grid faults' shots of this step (:meth:`Schedule.grid_shots`, times
        on the campus clock), judged at their own times within it.

        The step ``[t, t + Δ)`` is cut into ``n`` sub-intervals of width ``h = Δ/n`` that
        resolve ramps to ≤ 1 s and swings to ≤ 1/8 period (midpoints ``m_i``). On it:

        * training ``T_i = Σ_j S_j·(R(m_i; start_j) − R(m_i; stop_j))·C̄_j,i`` (ramps ``R``,
          exact checkpoint means ``C̄``), over the jobs live in the step;
        * swing mean ``s̄_i = (S(e_{i+1}) − S(e_i))/h`` of the square wave between ``h_s`` and
          ``l_s`` (:func:`swing_levels`, :func:`square_integral`), and its extremes;
        * ``IT_i = idle + inference + T_i·s̄_i``; facility ``F̄`` from the lag on the step
          mean of IT; connection ``g_i = ρ + (1 − ρ)·κ(m_i)``;
        * ``P_i = (IT_i + F̄)·g_i``; the outputs are the mean of ``P_i`` and the extremes of
          the swing envelope.

        Work that cannot change a number is skipped (tests/test_campus_step_exact.py checks
        the result bit for bit against the full evaluation): job and trip arrays
        are rebuilt only when a job or trip was added; without an oscillation episode in the
        step the swing is one scalar wave; jobs whose ramps lie outside the step have
        envelope exactly 1; trips fully reconnected (or not yet begun) before the step have
        ``κ`` exactly 1 and drop out of the minimum.
        """
        cfg, dt = self.config, self.step_s
        if t_s < self._t_next - 1e-9:
            raise ValueError(f"time goes backwards: step at {t_s} s after {self._t_next} s")
        self._voltage_check(t_s, v_poi_pu)
        sch = self.schedule
        if shots:
            sch.grid_shots(shots)
        sch.run_until(t_s + dt)
        self._t_next = t_s + dt
        # sub-grid: resolve ramps to ≤ 1 s and swings to ≤ 1/8 period
        active_hz = [hz for t0, t1, _, hz in sch.episodes if t1 > t_s and t0 < t_s + dt]
        hz_max = max([cfg.swing_hz] + active_hz)
        n = int(min(MAX_SUBSTEPS, max(1, math.ceil(dt / min(1.0, 1.0 / (8 * hz_max))))))
        edges = t_s + self._grid_offsets(n)
        mid = 0.5 * (edges[:-1] + edges[1:])
        h_dt = dt / n
        train = self._training(edges, mid, t_s)
        if active_hz:  # an oscillation episode in the step: swing parameters per sub-interval
            s_frac, hz = sch.swing_at(mid)
            hi, lo = swing_levels(s_frac, cfg.swing_duty)
            period = 1.0 / hz
            s_bar = (square_integral(edges[1:], period, cfg.swing_duty, hi, lo)
                     - square_integral(edges[:-1], period, cfg.swing_duty, hi, lo)) / h_dt
        else:  # the campus baseline swing throughout: one wave, integrated once on the edges
            hi, lo = swing_levels(cfg.swing_frac, cfg.swing_duty)
            s_int = square_integral(edges, 1.0 / cfg.swing_hz, cfg.swing_duty, hi, lo)
            s_bar = (s_int[1:] - s_int[:-1]) / h_dt
        has_hi = s_bar > lo + 1e-9
        has_lo = s_bar < hi - 1e-9
        s_max = np.where(has_hi, hi, lo)
        s_min = np.where(has_lo, lo, hi)
        # inference: diurnal at the step midpoint with AR(1) noise held over the step
        it_cap = cfg.it_capacity_mw
        inf = cfg.inference_frac * it_cap * float(diurnal(t_s + 0.5 * dt, cfg)) * max(0.0, 1.0 + self._noise)
        if self._noise_sd > 0:
            self._noise = self._phi * self._noise + self._noise_sd * float(self._noise_rng.standard_normal())
        base = cfg.idle_frac * it_cap + inf
        it = base + train * s_bar
        it_mean = float(it.mean())
        target = (cfg.pue - 1.0) * it_mean
        if self._fac is None:
            self._fac = target
        fac = target + (self._fac - target) * self._lag_c
        self._fac = self._lag_a * self._fac + (1 - self._lag_a) * target
        rho = cfg.backup_residual_frac
        trips = self._trips_in(float(mid[0]), float(mid[-1]))
        g = rho + (1 - rho) * (connection(mid, trips) if trips is not None else 1.0)
        p = (it + fac) * g
        p_max = ((base + train * s_max + fac) * g).max()
        p_min = ((base + train * s_min + fac) * g).min()
        p_mean = float(p.mean())
        online = self._online_at(t_s + dt - ONLINE_EPS_S)
        self.last = CampusOutput(
            p_mw=p_mean, q_mvar=p_mean * cfg.tan_phi, p_min_mw=float(p_min),
            p_max_mw=float(p_max), online=online, it_mw=it_mean, facility_mw=float(fac),
            p_unsupported_mw=self._unsupported_mean(it, fac, mid, p_mean),
        )
        return self.last

    # --- step helpers (exact shortcuts of the vectorised evaluation) --------------------
    def _unsupported_mean(self, it: np.ndarray, fac: float, mid: np.ndarray, p_mean: float) -> float:
        """The step's mean draw had the inverters not supported the sags: the same load
        through the counterfactual's connection factor (the actual draw while the two
        states have the same trips)."""
        sch = self.schedule
        a, u = sch.actual.trips, sch.unsupported.trips
        if len(a) == len(u) and all((x.t_s, x.reconnect_s, x.ramp_s) == (y.t_s, y.reconnect_s, y.ramp_s)
                                    for x, y in zip(a, u)):
            return p_mean
        rho = self.config.backup_residual_frac
        g = rho + (1 - rho) * connection(mid, sch.trip_arrays(sch.unsupported))
        return float(((it + fac) * g).mean())

    def _grid_offsets(self, n: int) -> np.ndarray:
        """Sub-grid edge offsets ``Δ·k/n`` (k = 0…n) from the step start, cached per n."""
        off = self._offsets.get(n)
        if off is None:
            off = self._offsets[n] = self.step_s * np.arange(n + 1) / n
        return off

    def _job_arrays(self) -> JobArrays:
        """The schedule's jobs as arrays, rebuilt only when a job was added (jobs are only
        ever appended, never changed)."""
        jobs = self.schedule.jobs
        if self._jobs_cache is None or self._jobs_cache[0] != len(jobs):
            ja = self.schedule.job_arrays()
            self._jobs_cache = (len(jobs), JobArrays(*(np.ascontiguousarray(a) for a in
                                                       (ja.size_mw, ja.start_s, ja.stop_s))))
        return self._jobs_cache[1]

    def _training(self, edges: np.ndarray, mid: np.ndarray, t_s: float) -> np.ndarray:
        """Training IT load on the sub-grid, ``T_i = Σ_j S_j·env_j,i·C̄_j,i`` (MW), over the
        jobs live in the step; ``env = R(m; start) − R(m; stop)`` is evaluated only for jobs
        with a ramp inside the step (the others have env exactly 1: ``R`` is monotone, so
        ``R(m_0; start) = 1`` and ``R(m_{n−1}; stop) = 0`` hold for every midpoint)."""
        cfg, dt, r = self.config, self.step_s, self.config.job_ramp_s
        jobs = self._job_arrays()
        live = (jobs.stop_s + r >= t_s) & (jobs.start_s <= t_s + dt)
        size, start, stop = jobs.size_mw[live], jobs.start_s[live], jobs.stop_s[live]
        if not len(size):
            return np.zeros(len(mid))
        lo_t, hi_t = float(mid[0]), float(mid[-1])
        ramping = [j for j in range(len(size))
                   if _ramp_at(lo_t, float(start[j]), r) != 1.0 or _ramp_at(hi_t, float(stop[j]), r) != 0.0]
        env = np.ones((len(size), len(mid)))
        if ramping:
            k = np.asarray(ramping)
            env[k] = (ramp(mid[None, :], start[k, None], r) - ramp(mid[None, :], stop[k, None], r))
        ck = _checkpoint_mean(edges, start, cfg)
        if ck is not None:
            env = env * ck
        return (size[:, None] * env).sum(axis=0)

    def _trips_in(self, lo_t: float, hi_t: float) -> TripArrays | None:
        """The trips whose connection factor is not exactly 1 somewhere in ``[lo_t, hi_t]``
        (None when there are none): a trip that starts after ``hi_t`` gives 1 there, and
        so does one that began before ``lo_t`` and whose reconnection ramp already reads
        exactly 1 at ``lo_t`` (for good: ``R`` is monotone). Dropping those from the
        minimum in :func:`connection` leaves it unchanged, since κ ≤ 1."""
        keep = [tr for tr in self.schedule.trips[self._trips_done:]
                if not (tr.t_s > hi_t or (tr.t_s <= lo_t and _ramp_at(lo_t, tr.reconnect_s, tr.ramp_s) == 1.0))]
        # trips are appended in time order; the leading ones that are over stay over
        trips = self.schedule.trips
        while (self._trips_done < len(trips) and trips[self._trips_done].t_s <= lo_t
               and _ramp_at(lo_t, trips[self._trips_done].reconnect_s, trips[self._trips_done].ramp_s) == 1.0):
            self._trips_done += 1
        if not keep:
            return None
        return TripArrays(np.array([tr.t_s for tr in keep], dtype=float),
                          np.array([tr.reconnect_s for tr in keep], dtype=float),
                          np.array([tr.ramp_s for tr in keep], dtype=float))

    def _online_at(self, t: float) -> bool:
        """``κ(t) > 0``: every trip has not begun by t or has begun reconnecting."""
        return all(t < tr.t_s or _ramp_at(t, tr.reconnect_s, tr.ramp_s) > 0.0
                   for tr in self.schedule.trips[self._trips_done:])

    def forecast(self, horizon_s: float, step_s: float) -> np.ndarray:
        """Grid-draw forecast (MW, step means) from the end of the last step.

        What a campus operator can plausibly share: the jobs running now with their
        scheduled stops, the queued jobs started FIFO as soon as those stops free the pool,
        inference on its diurnal shape from the current level (the noise decays to zero),
        the facility lag, checkpoints, and, while on backup, the planned reconnection. It
        leaves out what nobody knows ahead: new job arrivals, surges, oscillation episodes,
        disturbances and trips. Swings are mean-preserving and do not show in step means.
        """
        if horizon_s <= 0 or step_s <= 0:
            raise ValueError("horizon_s and step_s must be > 0")
        cfg, sch = self.config, self.schedule
        t0 = self._t_next
        n = int(math.ceil(horizon_s / step_s - 1e-9))
        edges = t0 + step_s * np.arange(n + 1)
        jobs = [list(j[:3]) for j in sch.jobs if j[2] > t0 - cfg.job_ramp_s]
        free = cfg.pool_mw - sum(j[0] for j in sch.jobs if j[1] <= t0 < j[2])
        stops = sorted((j[2], j[0]) for j in jobs if j[2] > t0)
        t_free = t0
        for size, duration, _ in list(sch.queue):  # FIFO: start when the known stops free room
            while free < size - _EPS and stops:
                t_free, released = stops.pop(0)
                free += released
            if free < size - _EPS:
                break
            free -= size
            jobs.append([size, max(t_free, t0), max(t_free, t0) + duration])
            stops.append((max(t_free, t0) + duration, size))
            stops.sort()
        ja = JobArrays(*(np.asarray([j[i] for j in jobs], dtype=float) for i in range(3)))
        phi = math.exp(-step_s / cfg.inference_noise_tau_s)
        noise = self._noise * phi ** np.arange(n)
        out = step_means(edges, ja, sch.trip_arrays(), cfg, noise=noise, fac0_mw=self._fac)
        return out["p_mw"]
