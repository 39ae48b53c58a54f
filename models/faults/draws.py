"""The faults of a run: drawn from the feeder's :class:`~models.faults.config.FaultLaw` and
scripted by ``[[events]]``, each with its shots (docs/faults.md §1).

A :class:`Fault` is plain numbers: when, where (``"transmission"`` or a bus of the feeder and
the line section it sits on), what (type, faulted phases, fault resistance or retained
source voltage), its shots and whether it is permanent. Times are run time: seconds since
the start of the run, as the time-series index.

Draws: the faults of a feeder come from one random stream of their own
(:func:`fault_rng`), separate from the campuses' streams, so adding a fault law changes no
campus draw. Upstream and feeder faults are two Poisson processes, each with a child
stream. A feeder fault's section is drawn with a probability proportional to its length
(its series impedance |Z| on a feeder without line lengths, such as the built-in ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.faults.config import FAULT_TYPES, TRANSMISSION, TYPE_PHASES, FaultEvent, FaultLaw

DAY_S = 86_400.0
YEAR_DAYS = 365.25
#: spawn key of the fault stream, beside the campuses' ``(index,)`` keys
FAULT_STREAM_KEY = 2**32


def fault_rng(seed: int) -> np.random.Generator:
    """The random stream of a run's faults: ``SeedSequence(seed, spawn_key=(2**32,))``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(FAULT_STREAM_KEY,)))


@dataclass(frozen=True)
class Section:
    """A line section a feeder fault can sit on: the fault is at its downstream bus
    ``to_bus``. ``length_km`` is NaN when the model gives no length unit; ``z_ohm`` is its
    series impedance magnitude (the location weight on such a feeder)."""

    name: str
    to_bus: str
    nodes: tuple[int, ...]
    length_km: float
    z_ohm: float


@dataclass(frozen=True)
class Shot:
    """One dip of a fault: it starts at ``t_s`` and is cleared ``duration_s`` later; the
    protective device then stays open ``dead_s`` until the next shot (0 after the last)."""

    t_s: float
    duration_s: float
    dead_s: float = 0.0

    @property
    def cleared_s(self) -> float:
        return self.t_s + self.duration_s


@dataclass(frozen=True)
class Fault:
    """One grid fault (module docstring). ``location`` is ``"transmission"`` or the bus the
    fault sits at; ``section`` the line (empty upstream or at a bus). A permanent feeder
    fault locks out at the end of its last shot, ``lockout_s``, until ``restored_s``."""

    fault_id: int
    location: str
    type: str = "3ph"
    phases: tuple[int, ...] = (1, 2, 3)
    r_ohm: float = 0.0
    retained_pu: float = math.nan
    shots: tuple[Shot, ...] = ()
    permanent: bool = False
    restore_s: float = 7_200.0
    section: str = ""
    scripted: bool = False

    @property
    def transmission(self) -> bool:
        return self.location == TRANSMISSION

    @property
    def t_s(self) -> float:
        return self.shots[0].t_s

    @property
    def locks_out(self) -> bool:
        """A permanent fault on the feeder: its device locks out after the last shot."""
        return self.permanent and not self.transmission

    @property
    def lockout_s(self) -> float:
        return self.shots[-1].cleared_s

    @property
    def restored_s(self) -> float:
        return self.lockout_s + self.restore_s

    def as_dict(self) -> dict:
        """A plain record (kpis.json's fault log)."""
        return {"fault_id": self.fault_id, "time_s": self.t_s, "location": self.location,
                "section": self.section, "type": self.type, "phases": list(self.phases),
                "r_ohm": self.r_ohm, "retained_pu": self.retained_pu,
                "shots": [s.t_s for s in self.shots], "clearing_s": self.shots[0].duration_s,
                "permanent": self.permanent, "scripted": self.scripted,
                "lockout_s": self.lockout_s if self.locks_out else None,
                "restored_s": self.restored_s if self.locks_out else None}


@dataclass
class FaultPlan:
    """The faults of one run, in time order, and where they can be (:func:`plan_faults`)."""

    faults: list[Fault] = field(default_factory=list)

    def shots_in(self, t0: float, t1: float) -> list[tuple[Fault, int]]:
        """``(fault, shot index)`` of every shot that starts in ``[t0, t1)``, in time order."""
        out = [(f, k) for f in self.faults for k, s in enumerate(f.shots) if t0 <= s.t_s < t1]
        return sorted(out, key=lambda fk: (fk[0].shots[fk[1]].t_s, fk[0].fault_id))

    def lockouts_in(self, t0: float, t1: float) -> list[Fault]:
        return [f for f in self.faults if f.locks_out and t0 <= f.lockout_s < t1]

    def restorations_in(self, t0: float, t1: float) -> list[Fault]:
        return [f for f in self.faults if f.locks_out and t0 <= f.restored_s < t1]


def _shots(t0: float, clearing_s: float, dead_s: Sequence[float], n: int) -> tuple[Shot, ...]:
    """``n`` shots from ``t0``: each lasts ``clearing_s``, then the dead time before the next."""
    out, t = [], t0
    for k in range(n):
        dead = float(dead_s[k]) if k < n - 1 else 0.0
        out.append(Shot(t, clearing_s, dead))
        t += clearing_s + dead
    return tuple(out)


def _poisson_times(rng: np.random.Generator, rate_per_s: float, t0: float, t1: float) -> list[float]:
    """Arrival times of a Poisson process of ``rate_per_s`` in ``[t0, t1)``."""
    if rate_per_s <= 0:
        return []
    out, t = [], t0
    while True:
        t += float(rng.exponential(1.0 / rate_per_s))
        if t >= t1:
            return out
        out.append(t)


def feeder_rate_per_day(law: FaultLaw, sections: Sequence[Section]) -> float:
    """Feeder faults a day: ``λ_km · L / 365.25 + λ_day`` (L the total line length)."""
    rate = law.feeder_per_day
    if law.feeder_per_km_year > 0:
        rate += law.feeder_per_km_year * sum(s.length_km for s in sections) / YEAR_DAYS
    return rate


def _section_weights(law: FaultLaw, sections: Sequence[Section]) -> np.ndarray:
    lengths = np.array([s.length_km for s in sections], dtype=float)
    w = lengths if np.all(np.isfinite(lengths)) and lengths.sum() > 0 else np.array(
        [s.z_ohm for s in sections], dtype=float)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    if w.sum() <= 0:
        w = np.ones(len(sections))
    return w / w.sum()


def _draw_type(law: FaultLaw, rng: np.random.Generator, n_phases: int) -> str:
    """A fault type by the law's probabilities among those the section's phases allow."""
    names = [t for t in FAULT_TYPES if TYPE_PHASES[t] <= n_phases and law.types.get(t, 0.0) > 0]
    if not names:
        return "slg"
    p = np.array([law.types[t] for t in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def draw_faults(law: FaultLaw, sections: Sequence[Section], t0_s: float, t1_s: float,
                rng: np.random.Generator, first_id: int = 0) -> list[Fault]:
    """The faults the law draws in ``[t0_s, t1_s)`` (module docstring), in time order."""
    r_up, r_feeder = rng.spawn(2)
    faults: list[Fault] = []
    dead = law.reclose_dead_s
    most = len(dead) + 1

    def n_shots(g: np.random.Generator, permanent: bool) -> int:
        lo, hi = law.temporary_shots
        return most if permanent else int(g.integers(lo, hi + 1))

    for t in _poisson_times(r_up, law.transmission_per_day / DAY_S, t0_s, t1_s):
        r = float(r_up.uniform(*law.transmission_retained_pu))
        clearing = float(r_up.uniform(*law.transmission_clearing_s))
        permanent = bool(r_up.uniform() < law.permanent_prob)
        faults.append(Fault(0, TRANSMISSION, "3ph", (1, 2, 3), 0.0, r,
                            _shots(t, clearing, dead, n_shots(r_up, permanent)), permanent,
                            law.restore_s))
    if sections:
        weights = _section_weights(law, sections)
        rate = feeder_rate_per_day(law, sections) / DAY_S
        for t in _poisson_times(r_feeder, rate, t0_s, t1_s):
            sec = sections[int(r_feeder.choice(len(sections), p=weights))]
            kind = _draw_type(law, r_feeder, len(sec.nodes))
            phases = tuple(sorted(int(x) for x in r_feeder.choice(
                np.asarray(sec.nodes), size=TYPE_PHASES[kind], replace=False)))
            r_ohm = float(r_feeder.uniform(*law.r_ohm))
            clearing = float(r_feeder.uniform(*law.feeder_clearing_s))
            permanent = bool(r_feeder.uniform() < law.permanent_prob)
            faults.append(Fault(0, sec.to_bus, kind, phases, r_ohm, math.nan,
                                _shots(t, clearing, dead, n_shots(r_feeder, permanent)),
                                permanent, law.restore_s, sec.name))
    faults.sort(key=lambda f: f.t_s)
    return [_with_id(f, first_id + i) for i, f in enumerate(faults)]


def _with_id(f: Fault, fault_id: int) -> Fault:
    from dataclasses import replace

    return replace(f, fault_id=fault_id)


def scripted_fault(ev: FaultEvent, fault_id: int, bus: str, section: str, nodes: Sequence[int],
                   law: FaultLaw) -> Fault:
    """An ``[[events]]`` fault at ``bus`` (already resolved against the feeder; ``nodes``
    its phase nodes) as a :class:`Fault`."""
    t = ev.time_s
    times = [t + s for s in ev.shots_s]
    shots = tuple(Shot(times[k], ev.clearing_s,
                       times[k + 1] - times[k] - ev.clearing_s if k + 1 < len(times) else 0.0)
                  for k in range(len(times)))
    restore = ev.restore_s if ev.restore_s is not None else law.restore_s
    if ev.transmission:
        return Fault(fault_id, TRANSMISSION, ev.type, (1, 2, 3), 0.0, float(ev.retained_pu),
                     shots, ev.permanent, restore, "", True)
    need = TYPE_PHASES[ev.type]
    phases = tuple(ev.phases) if ev.phases is not None else tuple(sorted(nodes))[:need]
    return Fault(fault_id, bus, ev.type, phases, float(ev.r_ohm or 0.0), math.nan, shots,
                 ev.permanent, restore, section, True)


def upstream_shot_records(faults: Sequence[Fault], offset_s: float = 0.0) -> list[dict]:
    """The shots of upstream faults as a campus would get them without a feeder to solve
    them (the shock generator's fast estimate, docs/faults.md §5): every bus retains the
    source's fraction ``r`` of a UPS input at 1 pu, with and without support alike.
    Times are moved by ``offset_s`` (run time to the campus clock)."""
    out = []
    for f in faults:
        if not f.transmission:
            continue
        for s in f.shots:
            out.append({"fault_id": f.fault_id, "t_s": s.t_s + offset_s,
                        "duration_s": s.duration_s, "v_pu": float(f.retained_pu),
                        "v_unsupported_pu": float(f.retained_pu), "dead_s": 0.0,
                        "lockout": False, "restored_s": math.nan, "fallback": False})
    return out


__all__ = ["Fault", "FaultPlan", "Section", "Shot", "draw_faults", "fault_rng",
           "feeder_rate_per_day", "scripted_fault", "upstream_shot_records"]
