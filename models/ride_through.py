"""A campus's voltage ride-through: what moves it to UPS/backup, and its counterfactual.

A :class:`RideThrough` is one connection state of a campus: its trips (the windows it is on
backup), its count of recent sags and the time its UPS input has spent below each point of
the ride-through curve. It judges (docs/campus.md §3):

* a **sag** of a grid fault's shot, ``(v, d)`` at the UPS input: below the curve
  (some point ``(v_k, d_k)`` with ``v < v_k`` and ``d > d_k``: cause ``"disturbance"``), or
  the ``sag_count_trip``-th sag below ``sag_count_v_pu`` within ``sag_count_window_s``
  (``"repeated_sags"``: the UPS's "three strikes", as on 10 July 2024);
* an **interruption**: the campus's bus de-energised while the protective device is open
  (a dead time: 0 V for ``dead_s``, judged as a sag; cause ``"interruption"``), or locked
  out (``"lockout"``: on backup at least until the section is restored);
* the **steady POI voltage** of each step, held below a curve point for longer than its
  duration (``"voltage"``).

A campus keeps two states (:class:`models.campus.Schedule`): the one that happened, judged
on the retained voltage *with* the inverters' fault current, and the counterfactual judged
on the same shots *without* it, with its own trips, counter and reconnections. Their
difference is what the support achieved: trips avoided per fault, and the energy the
campus drew from the grid for longer (:mod:`scenarios.kpis`).

Every voltage here is the lowest phase-to-neutral voltage at the UPS input (docs/campus.md
says why: servers and their power supplies sit phase to neutral, and a UPS monitors each
phase), in pu of its base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trip:
    """One move to UPS/backup at ``t_s`` (campus clock) until ``reconnect_s``, then a
    reconnection ramp of ``ramp_s`` (0 = the whole load at once). ``cause``: ``"voltage"``,
    ``"disturbance"``, ``"repeated_sags"``, ``"interruption"`` or ``"lockout"``;
    ``v_pu`` the voltage it was judged on and ``v_unsupported_pu`` the same shot's without
    the inverters' support; ``fault_id`` the grid fault behind it (−1: none)."""

    t_s: float
    reconnect_s: float
    ramp_s: float
    cause: str
    v_pu: float
    duration_s: float
    v_unsupported_pu: float = math.nan
    fault_id: int = -1


def ride_through_violated(curve, v_pu: float, duration_s: float) -> bool:
    """True when a voltage ``v_pu`` held for ``duration_s`` lies below the ride-through
    curve: some point ``(v_k, d_k)`` has ``v < v_k`` and ``duration > d_k``."""
    return any(v_pu < vk and duration_s > dk for vk, dk in curve)


@dataclass
class RideThrough:
    """One connection state of a campus (module docstring). ``cfg`` is its
    :class:`models.campus.CampusConfig`."""

    cfg: object
    trips: list[Trip] = field(default_factory=list)
    sag_times: list[float] = field(default_factory=list)
    below_s: np.ndarray = field(default=None)  # time below each curve point (s)

    def __post_init__(self) -> None:
        if self.below_s is None:
            self.below_s = np.zeros(len(self.cfg.ride_through))

    def offline_at(self, t_s: float) -> bool:
        """On backup at ``t_s``: between a trip and its reconnection."""
        return any(tr.t_s <= t_s < tr.reconnect_s for tr in self.trips)

    def judge_sag(self, t_s: float, v_pu: float, duration_s: float) -> str | None:
        """The cause a sag trips the campus for, or None (module docstring); the sag counter
        keeps the recent sags and is reset by a trip of its own."""
        cfg = self.cfg
        if ride_through_violated(cfg.ride_through, v_pu, duration_s):
            return "disturbance"
        if cfg.sag_count_trip > 0 and v_pu < cfg.sag_count_v_pu:
            self.sag_times.append(t_s)
            self.sag_times[:] = [t for t in self.sag_times if t > t_s - cfg.sag_count_window_s]
            if len(self.sag_times) >= cfg.sag_count_trip:
                self.sag_times.clear()
                return "repeated_sags"
        return None

    def judge_steady(self, v_dc_pu: float, step_s: float) -> tuple[int, float] | None:
        """One step of steady UPS-input voltage ``v_dc_pu``: the time below each curve point
        grows while below it; ``(point, time below)`` of the first point exceeded, else
        None. The timers start again after a trip."""
        v_k = np.array([p[0] for p in self.cfg.ride_through])
        d_k = np.array([p[1] for p in self.cfg.ride_through])
        self.below_s = np.where(v_dc_pu < v_k, self.below_s + step_s, 0.0)
        hit = self.below_s > d_k
        if not hit.any():
            return None
        k = int(np.argmax(hit))
        return k, float(self.below_s[k])

    def add(self, trip: Trip) -> Trip | None:
        """Record ``trip`` unless the campus is already on backup then."""
        if self.offline_at(trip.t_s):
            return None
        self.trips.append(trip)
        self.below_s[:] = 0.0
        return trip

    def hold_until(self, t_s: float, until_s: float) -> None:
        """The campus cannot reconnect before ``until_s`` (its bus is de-energised): the
        trip that covers ``t_s`` reconnects no earlier."""
        for tr in self.trips:
            if tr.t_s <= t_s < tr.reconnect_s or tr.t_s == t_s:
                tr.reconnect_s = max(tr.reconnect_s, until_s)


__all__ = ["RideThrough", "Trip", "ride_through_violated"]
