"""``[faults]`` and ``[[events]]``: the law of a feeder's grid faults and scripted faults.

A grid fault is an event of the grid, not of a campus (DESIGN.md §2b): one fault sags every
bus of the feeder at the same instant, by its electrical distance. Two kinds:

* **transmission** (upstream) faults reach the feeder as a sag of its source: the source
  retains a fraction ``r`` of its voltage while the fault lasts;
* **feeder** faults sit on a line section of the feeder: a Fault element of OpenDSS at the
  section's downstream bus, of a type (three-phase, single line to ground, line to line,
  double line to ground) and a fault resistance.

Each fault is cleared by its protective device after a clearing time and reclosed after
each dead time of ``reclose_dead_s``: every reclosing onto a fault that is still there is
another shot (another sag). A temporary fault is gone after a number of shots; a permanent
one is there at every shot, and the device then locks out: the section behind it stays
de-energised until it is restored (``restore_s``). A transmission line that locks out does
not de-energise the feeder (the upstream network is meshed).

Defaults and the sources behind them: docs/faults.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, field_validator, model_validator

from models.schema import StrictModel

FaultType = Literal["3ph", "slg", "ll", "llg"]
FAULT_TYPES: tuple[str, ...] = ("3ph", "slg", "ll", "llg")
#: phase conductors each fault type needs at its bus
TYPE_PHASES = {"3ph": 3, "slg": 1, "ll": 2, "llg": 2}
#: The most shots of one fault (the first and its reclosing attempts): a recloser does at
#: most four operations to lockout (docs/faults.md), ten leaves room for scripted studies.
MAX_SHOTS = 10
TRANSMISSION = "transmission"


def _range(v: tuple[float, float], lo: float, hi: float, what: str) -> tuple[float, float]:
    a, b = v
    if not lo <= a <= b <= hi:
        raise ValueError(f"must be [low, high] {what} with {lo:g} <= low <= high <= {hi:g}, "
                         f"got [{a}, {b}]")
    return v


class FaultLaw(StrictModel):
    """``[faults]``: the feeder's fault law (docs/faults.md gives each default's source).

    Rates: ``transmission_per_day`` upstream faults a day; feeder faults at
    ``feeder_per_km_year`` per km of line and year, plus ``feeder_per_day`` a day (for
    stress tests; also on a feeder without line lengths, such as the built-in ones, whose
    sections are then weighted by their series impedance). ``[low, high]`` are uniform
    ranges.
    """

    transmission_per_day: float = Field(0.0, ge=0, le=1_000.0)
    #: retained fraction of the source voltage while an upstream fault lasts
    transmission_retained_pu: tuple[float, float] = (0.3, 0.9)
    transmission_clearing_s: tuple[float, float] = (0.05, 0.15)
    feeder_per_km_year: float = Field(0.0, ge=0, le=100.0)
    feeder_per_day: float = Field(0.0, ge=0, le=1_000.0)
    feeder_clearing_s: tuple[float, float] = (0.1, 0.5)
    #: probability of each fault type on a feeder section (normalised; a type the section
    #: has too few phases for falls back on the others)
    types: dict[FaultType, NonNegativeFloat] = Field(
        default_factory=lambda: {"slg": 0.70, "ll": 0.15, "llg": 0.10, "3ph": 0.05})
    r_ohm: tuple[float, float] = (0.0, 5.0)
    #: dead time before each reclosing attempt (s); a fault has at most len + 1 shots
    reclose_dead_s: list[PositiveFloat] = Field(default_factory=lambda: [5.0, 15.0])
    #: the shots of a temporary fault: uniform in [low, high], at most len(reclose_dead_s)+1
    temporary_shots: tuple[int, int] = (1, 3)
    permanent_prob: float = Field(0.2, ge=0, le=1)
    restore_s: PositiveFloat = Field(7_200.0, le=30 * 86_400.0)
    #: extra protective devices (OpenDSS elements such as "line.l35", or FeederData branch
    #: names) besides the model's Fuse, Recloser and Relay elements and the feeder head
    devices: list[str] = Field(default_factory=list)
    #: a fuse at the first section of every lateral (a tap onto fewer phases)
    fuse_laterals: bool = True

    @field_validator("transmission_retained_pu")
    @classmethod
    def _retained(cls, v):
        return _range(v, 0.0, 1.0, "pu")

    @field_validator("transmission_clearing_s", "feeder_clearing_s")
    @classmethod
    def _clearing(cls, v):
        return _range(v, 1e-3, 10.0, "s")

    @field_validator("r_ohm")
    @classmethod
    def _r(cls, v):
        return _range(v, 0.0, 1e4, "ohm")

    @field_validator("types")
    @classmethod
    def _types(cls, v):
        if not v or sum(v.values()) <= 0:
            raise ValueError(f"needs a positive probability for at least one of "
                             f"{', '.join(FAULT_TYPES)}")
        return v

    @model_validator(mode="after")
    def _shots(self) -> "FaultLaw":
        most = len(self.reclose_dead_s) + 1
        if most > MAX_SHOTS:
            raise ValueError(f"reclose_dead_s: {len(self.reclose_dead_s)} reclosing attempts "
                             f"give {most} shots; allowed: at most {MAX_SHOTS} shots")
        lo, hi = self.temporary_shots
        if not 1 <= lo <= hi <= most:
            raise ValueError(f"temporary_shots: must be [low, high] with 1 <= low <= high <= "
                             f"{most} (len(reclose_dead_s) + 1), got [{lo}, {hi}]")
        return self

    @property
    def shots_per_fault(self) -> float:
        """Mean shots of a fault: ``(1 − p)·(lo + hi)/2 + p·(len(reclose_dead_s) + 1)``."""
        lo, hi = self.temporary_shots
        p = self.permanent_prob
        return (1 - p) * 0.5 * (lo + hi) + p * (len(self.reclose_dead_s) + 1)

    def shots_per_day(self, line_km: float = 0.0) -> float:
        """Expected shots a day that sag every bus (upstream faults) or the feeder (feeder
        faults, their per-km rate over ``line_km`` of line)."""
        faults = (self.transmission_per_day + self.feeder_per_day
                  + self.feeder_per_km_year * line_km / 365.25)
        return faults * self.shots_per_fault

    @property
    def any(self) -> bool:
        """Whether this law draws any fault at all."""
        return self.transmission_per_day > 0 or self.feeder_per_km_year > 0 or self.feeder_per_day > 0


class FaultEvent(StrictModel):
    """One ``[[events]]`` entry: a scripted fault (docs/faults.md).

    ``location`` is ``"transmission"`` (upstream: a sag of the source to ``retained_pu``),
    a bus of the feeder, or a line (its OpenDSS name, e.g. ``"line.l17"``: the fault sits
    at the line's downstream bus). ``shots_s`` are the dips relative to ``time_s`` (the
    first is 0), each lasting ``clearing_s``; the dead time before shot k is
    ``shots_s[k] − shots_s[k−1] − clearing_s``. A ``permanent`` feeder fault locks out
    after its last shot, for ``restore_s`` (default: the law's).
    """

    kind: Literal["fault"] = "fault"
    time_s: NonNegativeFloat
    location: str
    type: FaultType = "3ph"
    retained_pu: float | None = Field(None, ge=0, le=1)
    r_ohm: float | None = Field(None, ge=0, le=1e4)
    #: faulted phases (1, 2, 3 = a, b, c) of an unbalanced fault; default: the first ones
    phases: list[int] | None = None
    shots_s: list[NonNegativeFloat] = Field(default_factory=lambda: [0.0])
    clearing_s: float = Field(0.1, gt=0, le=10.0)
    permanent: bool = False
    restore_s: float | None = Field(None, gt=0, le=30 * 86_400.0)

    @model_validator(mode="after")
    def _consistent(self) -> "FaultEvent":
        loc = self.location.strip()
        if not loc:
            raise ValueError("location: must be 'transmission', a bus or a line of the feeder")
        if not self.shots_s:
            raise ValueError("shots_s: needs at least one shot, [0.0]")
        if len(self.shots_s) > MAX_SHOTS:
            raise ValueError(f"shots_s: {len(self.shots_s)} shots; allowed: at most {MAX_SHOTS}")
        if self.shots_s[0] != 0.0:
            raise ValueError(f"shots_s: the first shot is the fault itself, at 0 s; got "
                             f"{self.shots_s[0]:g}")
        for k in range(1, len(self.shots_s)):
            dead = self.shots_s[k] - self.shots_s[k - 1] - self.clearing_s
            if not dead > 0:
                raise ValueError(
                    f"shots_s: the dead time before shot {k} is {dead:g} s "
                    f"(shots_s[{k}] - shots_s[{k - 1}] - clearing_s); allowed: > 0 s")
        transmission = loc.lower() == TRANSMISSION
        if transmission and self.retained_pu is None:
            raise ValueError("retained_pu: a transmission fault needs the retained fraction of "
                             "the source voltage, in [0, 1]")
        if not transmission and self.retained_pu is not None:
            raise ValueError("retained_pu: only for location = 'transmission'; a feeder fault "
                             "takes r_ohm (OpenDSS solves the sag)")
        if transmission and self.r_ohm is not None:
            raise ValueError("r_ohm: only for a feeder fault; a transmission fault takes "
                             "retained_pu")
        if self.phases is not None:
            need = TYPE_PHASES[self.type]
            if len(self.phases) != need or len(set(self.phases)) != need or not set(
                    self.phases) <= {1, 2, 3}:
                raise ValueError(f"phases: a {self.type} fault takes {need} distinct phase(s) "
                                 f"of 1, 2, 3; got {self.phases}")
        return self

    @property
    def transmission(self) -> bool:
        return self.location.strip().lower() == TRANSMISSION

    @property
    def end_s(self) -> float:
        """When the last shot is cleared."""
        return self.time_s + self.shots_s[-1] + self.clearing_s


__all__ = ["FaultLaw", "FaultEvent", "FaultType", "FAULT_TYPES", "TYPE_PHASES", "MAX_SHOTS",
           "TRANSMISSION"]
