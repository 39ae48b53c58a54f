"""The feeder's background daily load shape and the day-ahead substation import schedule.

Background load shape
---------------------
The feeder's own loads follow the IEEE Reliability Test System hourly profile (IEEE RTS
Task Force, "IEEE Reliability Test System", IEEE Trans. PAS-98(6), 1979, Table 4: winter
weekday, hourly load in % of the daily peak). The published value of hour ``h`` is placed
at the hour's midpoint ``h + 0.5`` and the shape is interpolated linearly (and periodically
over the day) in between, so the background load changes smoothly rather than in hourly
jumps::

    s(t) = λ · interp_periodic(t_h; points (h + 0.5, RTS_h / 100), h = 0..23)

where ``t_h`` is the hour of the day and λ is ``grid.background_load_scale``. The feeder's
nominal loads (the Baran & Wu case) are the daily peak: ``P_bg(t) = s(t) · P_nom``.

Day-ahead schedule
------------------
The substation import schedule ``P_sched`` is fixed before the day in blocks of
``grid.schedule_interval_s`` (hourly by default). Block ``b`` covering ``[t_b, t_b + T)``
holds the expected import::

    P_sched[b] = mean_{t∈b} P_bg(t) + Σ_c P̄_c + L_b

with ``P̄_c`` the expected (mean, no-shock) draw of campus ``c`` and ``L_b`` the feeder losses
of the base case at that operating point (from an AC power flow, computed by the caller).
FCMs are not scheduled: they are the flexibility that keeps the import on the schedule.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

#: IEEE RTS-79 Table 4, winter weekday, % of daily peak for hours 0-1, 1-2, ..., 23-24.
RTS_WINTER_WEEKDAY_PCT = (
    67, 63, 60, 59, 59, 60, 74, 86, 95, 96, 96, 95,
    95, 95, 93, 94, 99, 100, 100, 96, 91, 83, 73, 63,
)


def background_shape(t_s: float | np.ndarray, start_hour: float = 0.0, scale: float = 1.0) -> np.ndarray | float:
    """Background load multiplier ``s(t)`` at simulated time ``t_s`` (seconds from the start).

    ``start_hour`` is the hour of the day at ``t_s = 0``; ``scale`` is λ. Periodic in 24 h.
    """
    hours = (np.asarray(t_s, dtype=float) / 3600.0 + start_hour) % 24.0
    xp = np.arange(24) + 0.5
    fp = np.asarray(RTS_WINTER_WEEKDAY_PCT, dtype=float) / 100.0
    # periodic interpolation: extend one point on each side
    xp_ext = np.concatenate(([xp[-1] - 24.0], xp, [xp[0] + 24.0]))
    fp_ext = np.concatenate(([fp[-1]], fp, [fp[0]]))
    out = scale * np.interp(hours, xp_ext, fp_ext)
    return float(out) if np.ndim(out) == 0 else out


def block_mean_shape(n_blocks: int, interval_s: float, start_hour: float = 0.0, scale: float = 1.0,
                     samples: int = 60) -> np.ndarray:
    """Mean of ``s(t)`` over each schedule block (``samples`` points per block, midpoint rule)."""
    out = np.empty(n_blocks)
    for b in range(n_blocks):
        ts = b * interval_s + (np.arange(samples) + 0.5) * interval_s / samples
        out[b] = float(np.mean(background_shape(ts, start_hour, scale)))
    return out


def n_blocks(hours: float, interval_s: float) -> int:
    """Number of schedule blocks that cover a run of ``hours``."""
    return max(1, int(math.ceil(hours * 3600.0 / interval_s - 1e-9)))


def day_ahead_schedule(
    hours: float, interval_s: float, p_background_nominal_mw: float,
    campus_expected_mw: float | Sequence[float],
    losses_mw: Callable[[float, float], float], start_hour: float = 0.0, scale: float = 1.0,
) -> np.ndarray:
    """``P_sched[b]`` for every block of the run (MW), see the module docstring.

    ``campus_expected_mw`` is ``Σ_c P̄_c``, one number or one per block.
    ``losses_mw(load_scale, campus_mw)`` returns the base-case feeder losses (MW) with the
    background loads at ``load_scale`` and the campuses drawing ``campus_mw`` in total; the
    caller computes it with an AC power flow (OpenDSS).
    """
    n = n_blocks(hours, interval_s)
    shape = block_mean_shape(n, interval_s, start_hour, scale)
    campus = np.broadcast_to(np.asarray(campus_expected_mw, dtype=float), (n,))
    return np.array([
        s * p_background_nominal_mw + c + float(losses_mw(float(s), float(c)))
        for s, c in zip(shape, campus)
    ])


def schedule_value(schedule_mw: Sequence[float], interval_s: float, t_s: float) -> float:
    """The schedule block in force at simulated time ``t_s`` (held after the last block)."""
    k = min(int(t_s // interval_s), len(schedule_mw) - 1)
    return float(schedule_mw[max(k, 0)])
