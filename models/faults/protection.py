"""Where a feeder fault can be, and which protective device clears it (docs/faults.md §2).

The protective devices of a feeder are, on its radial graph (:class:`~models.network.FeederData`):

* the feeder head: the branches that leave the source bus (the substation breaker);
* the model's own OpenDSS ``Fuse``, ``Recloser`` and ``Relay`` elements, at the branch
  they monitor;
* the branches named in ``[faults] devices``;
* with ``[faults] fuse_laterals`` (default), a fuse at the first section of every lateral:
  a line that carries fewer phases than the branch that feeds it (a one- or two-phase tap).

A fault at bus ``b`` is cleared by the nearest device on the path from ``b`` to the source
(the branch feeding ``b`` included): every bus behind that device is de-energised while it
is open (a dead time, or a lockout until restoration). The rest of the feeder only sees the
sag while the fault is on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from models.errors import ScenarioError
from models.faults.draws import Section
from models.network import Branch, FeederData

#: OpenDSS ``LineUnits`` codes -> km (0: none, the length is in the impedance's own units)
_UNIT_KM = {1: 1.609344, 2: 0.3048, 3: 1.0, 4: 1e-3, 5: 0.3048e-3, 6: 0.0254e-3,
            7: 1e-5, 8: 1e-6}


def line_lengths_km(engine) -> dict[str, float]:
    """Each OpenDSS line's length in km (lower-case ``line.<name>``), NaN without units."""
    out: dict[str, float] = {}
    lines = engine.Lines
    i = lines.First()
    while i:
        factor = _UNIT_KM.get(int(lines.Units()), math.nan)
        out[f"line.{lines.Name().lower()}"] = float(lines.Length()) * factor
        i = lines.Next()
    return out


def fault_sections(data: FeederData, lengths_km: dict[str, float]) -> list[Section]:
    """The line sections of the radial graph a feeder fault can sit on (switches,
    transformers and regulators excluded), with their length and |Z|."""
    out = []
    for br in data.branches:
        if br.kind != "line":
            continue
        nodes = data.bus(br.to_bus).nodes or tuple(range(1, br.phases + 1))
        out.append(Section(br.name, br.to_bus, tuple(nodes),
                           lengths_km.get(br.element.lower(), math.nan),
                           math.hypot(br.r_ohm, br.x_ohm)))
    return out


def monitored_branches(engine, data: FeederData) -> list[str]:
    """The FeederData branches that the model's Fuse, Recloser and Relay elements monitor."""
    by_element = {br.element.lower(): br.name for br in data.branches}
    out = []
    for iface in (engine.Fuses, engine.Reclosers, engine.Relays):
        i = iface.First()
        while i:
            obj = str(iface.MonitoredObj()).lower()
            if obj in by_element:
                out.append(by_element[obj])
            i = iface.Next()
    return out


@dataclass(frozen=True)
class Protection:
    """The protective devices of a feeder (module docstring) and what each isolates."""

    data: FeederData
    devices: frozenset[str]

    @classmethod
    def of(cls, data: FeederData, extra: Iterable[str] = (), fuse_laterals: bool = True,
           source: str = "[faults]") -> Protection:
        """Devices: the feeder head, ``extra`` (branch names or OpenDSS element names; an
        unknown one is a ScenarioError of ``source``) and the lateral fuses."""
        names = {br.name for br in data.branches}
        by_element = {br.element.lower(): br.name for br in data.branches}
        devices = {br.name for br in data.children.get(data.source_bus, ())}
        for i, name in enumerate(extra):
            key = str(name).strip().lower()
            hit = key if key in names else by_element.get(key) or by_element.get(f"line.{key}")
            if hit is None:
                raise ScenarioError(source, f"faults.devices[{i}]",
                                    f"unknown branch {name!r}; allowed: a line, switch or "
                                    f"transformer of the feeder, e.g. "
                                    f"{', '.join(sorted(names)[:4])} ...")
            devices.add(hit)
        if fuse_laterals:
            parent = data.parent_branch
            for br in data.branches:
                up = parent.get(br.from_bus)
                if br.kind == "line" and up is not None and br.phases < up.phases:
                    devices.add(br.name)
        return cls(data, frozenset(devices))

    @cached_property
    def _parent(self) -> dict[str, Branch]:
        return self.data.parent_branch

    def device_of(self, bus: str) -> str:
        """The device that clears a fault at ``bus``: the nearest on the way to the source."""
        b = str(bus).lower()
        while b in self._parent:
            br = self._parent[b]
            if br.name in self.devices:
                return br.name
            b = br.from_bus
        return ""  # at the source bus: only the upstream breaker (no feeder bus de-energised)

    def behind(self, device: str) -> frozenset[str]:
        """The buses de-energised while ``device`` is open (its whole subtree)."""
        if not device:
            return frozenset()
        br = next(b for b in self.data.branches if b.name == device)
        out, todo = set(), [br.to_bus]
        children = self.data.children
        while todo:
            b = todo.pop()
            out.add(b)
            todo.extend(c.to_bus for c in children.get(b, ()))
        return frozenset(out)

    def isolated_by(self, bus: str) -> frozenset[str]:
        """The buses a fault at ``bus`` de-energises while its device is open."""
        return self.behind(self.device_of(bus))


def resolve_location(data: FeederData, location: str, source: str, field: str
                     ) -> tuple[str, str]:
    """``(bus, section)`` of an ``[[events]]`` location: a bus of the feeder (section: the
    branch that feeds it) or a line (``line.<name>`` or its branch name; the fault sits at
    its downstream bus). ScenarioError naming ``field`` otherwise."""
    key = str(location).strip().lower()
    if data.has_bus(key) and key != data.source_bus:
        br = data.parent_branch.get(key)
        return key, br.name if br is not None else ""
    names = key.removeprefix("line.")
    for br in data.branches:
        if br.name == names or br.element.lower() == key:
            return br.to_bus, br.name
    if key == data.source_bus:
        raise ScenarioError(source, field, f"{location!r} is the source bus; a fault there is "
                            "upstream: use location = 'transmission' with retained_pu")
    raise ScenarioError(source, field, f"unknown location {location!r}; allowed: "
                        f"'transmission', a bus (e.g. {', '.join(data.bus_names[1:4])}) or a "
                        f"line (e.g. line.{data.branches[0].name}) of feeder {data.name}")


def known_lengths(sections: Sequence[Section]) -> bool:
    return bool(sections) and all(math.isfinite(s.length_km) for s in sections)


__all__ = ["Protection", "fault_sections", "known_lengths", "line_lengths_km",
           "monitored_branches", "resolve_location"]
