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
* Impedances are positive sequence. ``r_ohm``/``x_ohm`` are referred to the voltage base of
  ``to_bus``; ``r_pu``/``x_pu`` are on ``s_base_mva`` and that bus's base voltage.
* Loads are the feeder's own (background) loads at nominal voltage, positive = consumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class Bus:
    """A bus of the feeder. ``base_kv_ll`` is the line-to-line base voltage in kV."""

    name: str
    base_kv_ll: float
    phases: int = 3


@dataclass(frozen=True)
class Branch:
    """A series element of the radial graph: line, transformer, regulator or closed switch.

    ``rating_mva`` is the three-phase normal thermal rating (``None`` when the model has
    none). ``kind`` is ``"line"``, ``"transformer"``, ``"regulator"`` or ``"switch"``.
    ``element`` is the OpenDSS full name (``"Line.l3"``) for look-ups in power-flow results.
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
