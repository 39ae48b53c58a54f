"""What the day-ahead schedule is made of (docs/cosim.md §4): the campuses' expected draw
and the feeder's base-case losses, without mosaik.

Expected campus draw
--------------------
The campus operator's estimate of campus ``c`` in schedule block ``b``: the mean over ``S``
no-shock days of the campus model (jobs, inference, facility; no surges, oscillation
episodes, disturbances or trips), each day ``s`` with its own random stream derived from the
scenario seed (never the stream the run itself uses), in closed form per sub-step of
``δ = 300 s`` (:func:`models.campus.step_means`)::

    P̄_{c,b} = (1/S) Σ_s (1/M) Σ_{m=0}^{M−1} p_{c,s}(t_b + m δ, t_b + (m + 1) δ),   M = T/δ

(``δ = T`` when the block length ``T`` is not a multiple of 300 s).

Base case
---------
:class:`BaseCase` solves OpenDSS snapshots of the feeder with the background loads at a
multiplier ``s`` and the campuses drawing ``P_total`` between them in proportion to their
expected mean draw, at their power factor (``Q = P tan φ``), FCMs idle; its losses are the
``L_b`` of :func:`models.schedule.day_ahead_schedule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.campus import CampusConfig, Schedule, step_means
from models.errors import ScenarioError
from models.feeder import INJECTION_VMIN_PU

#: Entropy word of the random stream of the day-ahead campus estimate.
SCHEDULE_STREAM = 0x5C4ED
#: Sub-step of the closed-form estimate (s).
SUBSTEP_S = 300.0


def expected_campus_mw(campus: CampusConfig, seed: int, start_s: float, interval_s: float,
                       blocks: int, samples: int = 8) -> np.ndarray:
    """``P̄_{c,b}`` (MW) for the ``blocks`` schedule blocks of ``interval_s`` seconds from the
    campus clock's ``start_s``, over ``samples`` no-shock days (see the module docstring)."""
    sub = SUBSTEP_S if interval_s % SUBSTEP_S == 0 else float(interval_s)
    per_block = int(round(interval_s / sub))
    edges = start_s + sub * np.arange(blocks * per_block + 1)
    seeds = np.random.SeedSequence([seed, SCHEDULE_STREAM]).spawn(samples)
    acc = np.zeros(blocks * per_block)
    for ss in seeds:
        sch = Schedule(campus, np.random.default_rng(ss), start_s, None)
        sch.run_until(float(edges[-1]))
        acc += step_means(edges, sch.job_arrays(), sch.trip_arrays(), campus)["p_mw"]
    return (acc / samples).reshape(blocks, per_block).mean(axis=1)


def campus_shares(campuses: Sequence[CampusConfig], campus_mw: Mapping[str, np.ndarray]
                  ) -> dict[str, tuple[float, float]]:
    """Per campus bus ``(α_bus, β_bus)``: its share of the total campus draw,
    ``α = Σ_{c at bus} P̄_c / Σ_c P̄_c`` (``P̄_c`` the mean of campus ``c``'s estimate), and
    ``β = Σ_{c at bus} (P̄_c / Σ P̄) tan φ_c``, so that a total draw ``P`` puts ``α P`` MW and
    ``β P`` Mvar at the bus. Buses in the order of their first campus."""
    means = {c.name: float(np.mean(campus_mw[c.name])) for c in campuses}
    total = sum(means.values()) or 1.0
    shares: dict[str, tuple[float, float]] = {}
    for c in campuses:
        share = means[c.name] / total
        old = shares.get(c.bus, (0.0, 0.0))
        shares[c.bus] = (old[0] + share, old[1] + share * c.tan_phi)
    return shares


class BaseCase:
    """OpenDSS snapshots of ``feeder`` (a :class:`models.feeder.DSSFeeder`) at a background
    multiplier and a total campus draw (see the module docstring).

    Adds one injection ``sched<i>`` per campus bus to ``feeder``. A base case that does not
    converge (after :meth:`~models.feeder.DSSFeeder.solve`'s recovery) is bad input:
    :class:`~models.errors.ScenarioError` against ``source``, with OpenDSS's reason.
    """

    def __init__(self, feeder: Any, campuses: Sequence[CampusConfig],
                 campus_mw: Mapping[str, np.ndarray], source: str = "<scenario>") -> None:
        self.feeder = feeder
        self.source = source
        self.shares = campus_shares(campuses, campus_mw)
        self.largest = max(range(len(campuses)), key=lambda i: campuses[i].capacity_mw, default=0)
        self.names = {bus: f"sched{i}" for i, bus in enumerate(self.shares)}
        for bus, name in self.names.items():
            feeder.add_injection(name, bus, 0.0, 0.0)
        self._losses: dict[tuple[float, float], float] = {}

    def solve(self, load_scale: float, campus_total_mw: float) -> Any:
        """The :class:`~models.feeder.PowerFlowResult` at ``load_scale`` with the campuses
        drawing ``campus_total_mw`` between them."""
        self.feeder.set_load_scale(load_scale)
        for bus, (sp, sq) in self.shares.items():
            self.feeder.set_injection(self.names[bus], sp * campus_total_mw, sq * campus_total_mw)
        res = self.feeder.solve()
        if not res.converged:
            field = (self._load_field(load_scale, campus_total_mw) if res.status == "diverged"
                     else "feeder.source")
            raise ScenarioError(self.source, field,
                                f"the base case at load scale {load_scale:.3f} with "
                                f"{campus_total_mw:.4g} MW of campus load fails in OpenDSS "
                                f"({res.status}: {res.cause}); {_failed_hint(res)}")
        if res.v_min_pu < INJECTION_VMIN_PU:  # "converged" onto a collapsed voltage
            raise ScenarioError(self.source, self._load_field(load_scale, campus_total_mw),
                                f"the base case at load scale {load_scale:.3f} with "
                                f"{campus_total_mw:.4g} MW of campus load collapses the voltage "
                                f"to {res.v_min_pu:.3g} pu at bus {res.v_min_bus} (below "
                                f"{INJECTION_VMIN_PU} pu loads no longer draw what they are set "
                                "to): the feeder cannot carry it; allowed: less campus capacity "
                                "or background load, or a larger feeder.scale")
        return res

    def _load_field(self, load_scale: float, campus_total_mw: float) -> str:
        """The field behind a load the feeder cannot carry: the largest campus's capacity when
        the campuses draw more than the background, else the background's scale."""
        if campus_total_mw > load_scale * self.feeder.data.total_load_mw:
            return f"campus[{self.largest}].capacity_mw"
        return "grid.background_load_scale"

    def losses_mw(self, load_scale: float, campus_total_mw: float) -> float:
        """The base case's feeder losses (MW), solved once per operating point (to 1e-9)."""
        key = (round(load_scale, 9), round(campus_total_mw, 9))
        if key not in self._losses:
            self._losses[key] = float(self.solve(load_scale, campus_total_mw).losses_mw)
        return self._losses[key]


def _failed_hint(res: Any) -> str:
    if res.status == "diverged":
        return ("lower the background load or the campus size, or allow more iterations "
                "('set maxiterations=N' in feeder.extra_commands)")
    if res.status == "aborted":
        return ("check the model's regulator and capacitor controls, or allow more control "
                "iterations ('set maxcontroliter=N' in feeder.extra_commands)")
    return "the model and the injections disagree; see docs/feeders.md, 'When a solve fails'"
