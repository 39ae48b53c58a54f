"""Feeder description shared by the power-flow adapter and the optimisation models.

A :class:`FeederData` is plain numbers only: no OpenDSS handle, no mosaik object. The
loader in :mod:`models.feeder` extracts it from a compiled OpenDSS circuit; the
LinDistFlow network block in :mod:`controllers` consumes it.

Conventions
-----------
* Bus names are strings exactly as the OpenDSS model spells them (lower case, as OpenDSS
  reports them; the built-in IEEE feeders use the Baran & Wu numbers ``"1"`` .. ``"33"``).
* ``branches`` are ordered from the substation outward (breadth first), so every branch's
  ``from_bus`` is the source bus or the ``to_bus`` of an earlier branch. The graph is a tree
  rooted at ``source_bus``.
* Impedances are per-phase-averaged positive-sequence equivalents (docs/optimization.md
  §1.6). ``r_ohm``/``x_ohm`` are the phase-equivalent impedance of the branch's own phases,
  referred to the voltage base of ``to_bus``; ``r_pu``/``x_pu`` are on ``s_base_mva`` and that
  bus's three-phase base, scaled by ``3 / phases`` so that a branch carrying a power P on n of
  three phases drops the voltage of those phases as OpenDSS does.
* Loads are the feeder's own (background) loads at nominal voltage, positive = consumption.
* ``v_source_pu`` is the source voltage the scenario holds (``grid.v_source_pu``); ``source``,
  ``extra_commands`` and ``scale`` say how the feeder was compiled, so every part of a run
  (plant, Stage I, Stage II, AC validation) can check that it holds the same feeder.
* ``base_*`` is the AC base case at that source voltage and the nominal loads (bus |V| in
  pu, mean of phases, in ``buses`` order; branch sending-end flows in ``branches`` order;
  empty when it did not converge): the operating point the linear network model is
  calibrated at before any measurement exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

#: The per-unit-preserving scale factors K a feeder accepts (docs/conventions.md, "Limits").
#: The base voltage goes as √K: 10⁴ takes IEEE 33's 12.66 kV to 1,266 kV, beyond the
#: highest AC voltage in service (1,100 kV), and its 3.7 MW to 37 GW; 10⁻³ takes it to
#: 400 V and 3.7 kW. Beyond them no real network is modelled, and squares of the bases
#: overflow at K ≈ 1e300.
SCALE_RANGE = (1e-3, 1e4)


@dataclass(frozen=True)
class Bus:
    """A bus of the feeder. ``base_kv_ll`` is the line-to-line base voltage in kV (√3 × the
    bus's line-to-neutral base, also on one- and two-phase buses); ``nodes`` are its phase
    nodes (1, 2, 3 = a, b, c; empty when unknown)."""

    name: str
    base_kv_ll: float
    phases: int = 3
    nodes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Branch:
    """A series element of the radial graph: line, transformer, regulator or closed switch.

    ``rating_mva`` is the three-phase normal thermal rating (``None`` when the model has
    none). ``kind`` is ``"line"``, ``"transformer"``, ``"regulator"`` or ``"switch"``.
    ``element`` is the OpenDSS full name (``"Line.l3"``) for look-ups in power-flow results.
    ``phases`` is the number of phase conductors it carries (1, 2 or 3). ``tap`` is a
    transformer's off-nominal ratio τ = |V_to|/|V_from| at no load in pu of the two buses'
    bases, at the taps of the base case (1 for lines; a regulator at +5 % has 1.05).
    """

    name: str
    from_bus: str
    to_bus: str
    r_ohm: float
    x_ohm: float
    r_pu: float
    x_pu: float
    rating_mva: float | None = None
    kind: str = "line"
    element: str = ""
    phases: int = 3
    tap: float = 1.0


@dataclass(frozen=True)
class BusLoad:
    """Aggregated background load at a bus at nominal voltage (MW, Mvar; + = consumption)."""

    bus: str
    p_mw: float
    q_mvar: float


@dataclass(frozen=True)
class FeederData:
    """Radial feeder description for optimisation (see module docstring for conventions)."""

    name: str
    source_bus: str
    base_kv_ll: float
    s_base_mva: float
    buses: tuple[Bus, ...]
    branches: tuple[Branch, ...]
    loads: tuple[BusLoad, ...] = ()
    scale: float = 1.0
    notes: tuple[str, ...] = field(default=())
    v_source_pu: float = 1.0
    source: str = ""
    extra_commands: tuple[str, ...] = ()
    base_bus_v_pu: tuple[float, ...] = ()
    base_branch_p_mw: tuple[float, ...] = ()
    base_branch_q_mvar: tuple[float, ...] = ()

    @cached_property
    def bus_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.buses)

    @cached_property
    def bus_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.bus_names)}

    @cached_property
    def parent_branch(self) -> dict[str, Branch]:
        """The branch feeding each non-source bus."""
        return {br.to_bus: br for br in self.branches}

    @cached_property
    def children(self) -> dict[str, tuple[Branch, ...]]:
        """Branches leaving each bus, in feeder order."""
        out: dict[str, list[Branch]] = {name: [] for name in self.bus_names}
        for br in self.branches:
            out[br.from_bus].append(br)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def load_by_bus(self) -> dict[str, BusLoad]:
        return {ld.bus: ld for ld in self.loads}

    @property
    def total_load_mw(self) -> float:
        return sum(ld.p_mw for ld in self.loads)

    @property
    def total_load_mvar(self) -> float:
        return sum(ld.q_mvar for ld in self.loads)

    def has_bus(self, name: str) -> bool:
        return str(name).lower() in self.bus_index

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (lists and dicts of numbers and strings), e.g. to hand the
        feeder to a controller in another process; :meth:`from_dict` inverts it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeederData":
        """The :class:`FeederData` of :meth:`to_dict`'s output."""
        d = dict(data)
        d["buses"] = tuple(Bus(**{**b, "nodes": tuple(b.get("nodes", ()))}) for b in d.get("buses", ()))
        d["branches"] = tuple(Branch(**br) for br in d.get("branches", ()))
        d["loads"] = tuple(BusLoad(**ld) for ld in d.get("loads", ()))
        d["notes"] = tuple(d.get("notes", ()))
        for key in ("extra_commands", "base_bus_v_pu", "base_branch_p_mw", "base_branch_q_mvar"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)

    def fingerprint(self) -> str:
        """A short hash of what the network models use (buses, bases, branches, impedances,
        loads, source voltage): equal fingerprints mean the same compiled feeder."""
        import hashlib

        parts = [self.source_bus, f"{self.s_base_mva:.9g}", f"{self.v_source_pu:.9g}"]
        parts += [f"{b.name}:{b.base_kv_ll:.6g}:{b.phases}" for b in self.buses]
        parts += [f"{br.name}:{br.from_bus}:{br.to_bus}:{br.r_pu:.6g}:{br.x_pu:.6g}"
                  for br in self.branches]
        parts += [f"{ld.bus}:{ld.p_mw:.6g}:{ld.q_mvar:.6g}" for ld in self.loads]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def bus(self, name: str) -> Bus:
        """The :class:`Bus` called ``name`` (KeyError when the feeder has none)."""
        return self.buses[self.bus_index[str(name).lower()]]
