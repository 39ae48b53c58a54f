"""The faults of one feeder during a run (docs/faults.md): drawn once, solved shot by shot in
OpenDSS, and locked out and restored on the feeder.

:class:`GridFaults` is what the plant (``sim/feeder_sim.py``) calls around its snapshot
power flow of each step ``[t, t + Δ)``:

1. :meth:`GridFaults.switch` before the solve: a device whose fault locked out by ``t``
   opens, one whose restoration came by ``t`` closes; the buses behind an open device are
   de-energised (the power flow, the voltage figures and the controller see it);
2. :meth:`GridFaults.sags` after the solve: the shots that start in the *coming* step
   ``[t + Δ, t + 2Δ)``, solved from this step's operating point (the pre-fault state; one
   step old when the shot comes, as a campus's reading of its POI is), as one record per
   shot for every campus bus. The campuses read them with the POI voltage, one step late,
   and judge them at their times within their coming step.

Every campus and every inverter sees the same shot at the same instant (DESIGN.md §2b).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.errors import ScenarioError
from models.faults.config import FaultEvent, FaultLaw
from models.faults.draws import Fault, FaultPlan, draw_faults, fault_rng, scripted_fault
from models.faults.protection import (
    Protection, fault_sections, known_lengths, line_lengths_km, monitored_branches,
    resolve_location,
)
from models.faults.solve import Component, FaultSolver

log = logging.getLogger(__name__)


@dataclass
class FaultCounts:
    """What the faults of a run did: faults with a shot in the run, shots solved, shots
    whose solve needed the fallback (loads as impedances), shots no solve could give
    (judged at the linear estimate), lockouts and restorations."""

    faults: int = 0
    shots: int = 0
    fallbacks: int = 0
    failed: int = 0
    lockouts: int = 0
    restorations: int = 0


def plan_faults(feeder, law: FaultLaw, events: Sequence[FaultEvent], seed: int, t0_s: float,
                t1_s: float, source: str = "<scenario>") -> tuple[FaultPlan, Protection]:
    """The faults of a run in ``[t0_s, t1_s)`` (drawn, and scripted by ``events``) and the
    feeder's protection; bad input (an unknown location or device, a per-km rate on a
    feeder without line lengths, an event outside the run) raises ScenarioError."""
    data = feeder.data
    protection = Protection.of(data, [*monitored_branches(feeder.engine, data), *law.devices],
                               law.fuse_laterals, source)
    sections = fault_sections(data, line_lengths_km(feeder.engine))
    if law.feeder_per_km_year > 0 and not known_lengths(sections):
        raise ScenarioError(source, "faults.feeder_per_km_year",
                            f"feeder {data.name} gives its lines no length unit, so a rate per "
                            "km cannot apply; allowed: faults.feeder_per_day (sections then "
                            "weighted by their impedance)")
    faults = draw_faults(law, sections, t0_s, t1_s, fault_rng(seed))
    for i, ev in enumerate(events):
        where = f"events[{i}]"
        if not t0_s <= ev.time_s < t1_s or ev.end_s > t1_s:
            raise ScenarioError(source, f"{where}.time_s",
                                f"the fault from {ev.time_s:g} s to {ev.end_s:g} s is outside "
                                f"the run; allowed: within [{t0_s:g}, {t1_s:g}) s (the first "
                                "step is the pre-fault start-up)")
        bus, section, nodes = "", "", (1, 2, 3)
        if not ev.transmission:
            bus, section = resolve_location(data, ev.location, source, f"{where}.location")
            nodes = data.bus(bus).nodes or (1, 2, 3)
            from models.faults.config import TYPE_PHASES

            if TYPE_PHASES[ev.type] > len(nodes):
                raise ScenarioError(source, f"{where}.type",
                                    f"a {ev.type} fault needs {TYPE_PHASES[ev.type]} phases; bus "
                                    f"{bus!r} has phase(s) {list(nodes)}; allowed: slg there")
            if ev.phases is not None and not set(ev.phases) <= set(nodes):
                raise ScenarioError(source, f"{where}.phases",
                                    f"bus {bus!r} has phase(s) {list(nodes)}, not {ev.phases}")
        faults.append(scripted_fault(ev, len(faults), bus, section, nodes, law))
    faults.sort(key=lambda f: (f.t_s, f.fault_id))
    return FaultPlan(faults), protection


def _record(fault: Fault, k: int, v: float, v_unsupported: float, isolated: bool,
            fallback: bool) -> dict[str, Any]:
    """One shot as a campus bus sees it (:mod:`models.ride_through` judges it)."""
    shot = fault.shots[k]
    last = k == len(fault.shots) - 1
    return {"fault_id": fault.fault_id, "t_s": shot.t_s, "duration_s": shot.duration_s,
            "v_pu": v, "v_unsupported_pu": v_unsupported,
            "dead_s": shot.dead_s if isolated and not last else 0.0,
            "lockout": bool(isolated and last and fault.locks_out),
            "restored_s": fault.restored_s if fault.locks_out else math.nan,
            "fallback": bool(fallback)}


@dataclass
class GridFaults:
    """The faults of a feeder during a run (module docstring)."""

    feeder: Any
    plan: FaultPlan
    protection: Protection
    step_s: float
    counts: FaultCounts = field(default_factory=FaultCounts)
    open_devices: dict[str, int] = field(default_factory=dict)  # device -> its fault's id
    log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.solver = FaultSolver(self.feeder)
        self._seen: set[int] = set()

    @classmethod
    def open(cls, feeder, law: FaultLaw, events: Sequence[FaultEvent], seed: int,
             step_s: float, until_s: float, source: str = "<scenario>") -> GridFaults:
        """The faults of a run of ``until_s`` seconds at steps of ``step_s``: the first step
        is the start-up, so faults come from ``step_s`` on."""
        plan, protection = plan_faults(feeder, law, events, seed, float(step_s),
                                       float(until_s), source)
        return cls(feeder, plan, protection, float(step_s))

    # -- topology -----------------------------------------------------------------------
    @property
    def deenergized(self) -> frozenset[str]:
        """The buses behind an open device now."""
        out: set[str] = set()
        for dev in self.open_devices:
            out |= self.protection.behind(dev)
        return frozenset(out)

    def open_at(self, t_s: float) -> dict[str, int]:
        """The devices open at ``t_s`` (device -> the fault that holds it open): those
        whose fault locked out by then and is not yet restored (the earliest such fault
        per device)."""
        out: dict[str, int] = {}
        for f in self.plan.faults:
            if f.locks_out and f.lockout_s <= t_s < f.restored_s:
                dev = self.protection.device_of(f.location)
                if dev:
                    out.setdefault(dev, f.fault_id)
        return out

    def deenergized_at(self, t_s: float) -> frozenset[str]:
        """The buses behind the devices open at ``t_s``."""
        out: set[str] = set()
        for dev in self.open_at(t_s):
            out |= self.protection.behind(dev)
        return frozenset(out)

    def switch(self, t_s: float) -> bool:
        """Open the devices whose fault locked out by ``t_s`` and close those restored by
        then (:meth:`open_at`); True when the topology changed."""
        want = self.open_at(t_s)
        changed = False
        for dev in [d for d in self.open_devices if d not in want]:
            self.feeder.set_branch_open(dev, False)
            del self.open_devices[dev]
            self.counts.restorations += 1
            changed = True
        for dev, fid in want.items():
            if dev not in self.open_devices:
                self.feeder.set_branch_open(dev, True)
                self.open_devices[dev] = fid
                self.counts.lockouts += 1
                changed = True
                log.info("fault %d locks out: %s opens (%d buses de-energised)", fid, dev,
                         len(self.protection.behind(dev)))
        if changed:
            self.feeder.set_energized(frozenset(self.feeder.data.bus_names) - self.deenergized)
        return changed

    def shed_mw(self, load_scale: float) -> float:
        """The feeder's own load behind the open devices (MW at nominal voltage × the
        background multiplier): unserved while they are open."""
        dead = self.deenergized
        if not dead:
            return 0.0
        return load_scale * sum(ld.p_mw for ld in self.feeder.data.loads if ld.bus in dead)

    # -- shots --------------------------------------------------------------------------
    def sags(self, t0_s: float, t1_s: float, pre, components: Mapping[str, Sequence[Component]],
             campus_injections: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The shots that start in ``[t0_s, t1_s)``, solved from the converged snapshot
        ``pre``, as records per campus injection (module docstring); none without a
        converged pre-fault state (the step's power flow failed: counted, the shots are
        judged at the retained voltage of the source alone)."""
        shots = self.plan.shots_in(t0_s, t1_s)
        out: dict[str, list[dict[str, Any]]] = {n: [] for n in campus_injections}
        if not shots:
            return out
        buses = self.feeder.injection_buses
        has_support = any(c.kind == "inverter" for comps in components.values() for c in comps)
        if pre is None or not pre.converged:
            for fault, k in shots:
                self._count(fault)
                self.counts.shots += 1
                self.counts.failed += 1
                v = float(fault.retained_pu) if fault.transmission else math.nan
                for n in campus_injections:
                    out[n].append(_record(fault, k, v, v, False, True))
            return out
        self.solver.begin(pre)
        try:
            for fault, k in shots:
                self._count(fault)
                self.counts.shots += 1
                with_support = self.solver.solve(fault, components, support=True)
                without = (self.solver.solve(fault, components, support=False)
                           if has_support else with_support)
                fallback = with_support.fallback or without.fallback
                self.counts.fallbacks += int(fallback)
                self.counts.failed += int(not with_support.converged)
                isolated = set() if fault.transmission else self.protection.isolated_by(fault.location)
                entry = {"fault_id": fault.fault_id, "shot": k, "t_s": fault.shots[k].t_s,
                         "fallback": fallback, "iterations": with_support.iterations,
                         "v_pu": {}, "v_unsupported_pu": {}}
                for n in campus_injections:
                    rec = _record(fault, k, with_support.v_low_pu.get(n, math.nan),
                                  without.v_low_pu.get(n, math.nan), buses.get(n) in isolated,
                                  fallback)
                    out[n].append(rec)
                    entry["v_pu"][n], entry["v_unsupported_pu"][n] = rec["v_pu"], rec["v_unsupported_pu"]
                self.log.append(entry)
        finally:
            self.solver.restore()
        return out

    def _count(self, fault: Fault) -> None:
        if fault.fault_id not in self._seen:
            self._seen.add(fault.fault_id)
            self.counts.faults += 1


__all__ = ["FaultCounts", "GridFaults", "plan_faults"]
