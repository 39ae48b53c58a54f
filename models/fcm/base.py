"""What every FCM technology provides, and the pieces they share (docs/fcm.md).

A *technology* (storage, generator, DR) is one module of :mod:`models.fcm` holding, for that
kind of Flexible Capacity Module, everything the testbed needs to know about it:

* its **catalog entry**, a pydantic model (``[fcm.catalog.<kind>]`` in a scenario file) whose
  ``technology`` field is the technology's name;
* its **sizing**: the rated power and energy ``(P̄, Ē)`` of a placement;
* its **device physics**, the plant that FCMSim steps (a :class:`Device`);
* its **Pyomo block**, shared by Stage I (sizes are expressions of the module counts) and
  Stage II (sizes are numbers), with the initial state as mutable parameters;
* its **measurement mapping**: how a measured :class:`DeviceOutput` (as the controller sees
  it) sets the block's initial state.

The module registers one :class:`Technology` instance in :data:`models.fcm.TECHNOLOGIES`;
nothing else in the code base dispatches on the technology.

Sign convention, everywhere in this project: FCM ``p_mw`` > 0 is an injection into the grid
(discharge, generation, load reduction); < 0 is consumption (charging, DR payback).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyomo.environ as pyo
from pydantic import Field

from models.schema import Name, StrictModel

#: Time in state (s) of a unit that has never switched: finite, so that it travels through
#: JSON (mosaik's remote protocol) unchanged, and longer than any minimum up or down time.
NEVER_SWITCHED_S = 1e12

_EPS = 1e-12


class Placement(StrictModel):
    """One installed FCM: catalog kind, bus, rated power and energy (``siting.json`` rows)."""

    kind: Name
    bus: str
    p_mw: float = Field(gt=0, le=100_000.0)
    e_mwh: float = Field(0.0, ge=0, le=10_000_000.0)
    name: Name | None = None

    @property
    def label(self) -> str:
        """Entity name used in time-series columns, e.g. ``bess_18``."""
        return self.name or f"{self.kind}_{self.bus}"


@dataclass(frozen=True)
class DeviceOutput:
    """What a device delivered over one step and its state at the end of the step.

    ``soc`` is NaN for non-storage devices; ``soc_mwh`` is the stored energy (storage) or the
    energy curtailed in the current event (DR); ``committed`` is the generator's on/off state
    (False for other kinds); ``cost`` is the operating cost of this step in $;
    ``time_in_state_s`` is the generator's time since its last start or stop
    (:data:`NEVER_SWITCHED_S` before the first); ``debt_mwh`` is the DR energy still to be
    paid back. The controller's :class:`controllers.interface.FCMState` has the same fields.
    """

    p_mw: float
    q_mvar: float
    soc: float
    soc_mwh: float
    committed: bool
    cost: float
    time_in_state_s: float = 0.0
    debt_mwh: float = 0.0


class Device:
    """The plant of one FCM: ``step(p_set_mw, dt_s, q_set_mvar) -> DeviceOutput`` clips a
    set-point to what the device can do over ``dt_s`` seconds and advances its state;
    :meth:`reading` is its state now, as a measurement reports it (no step);
    :meth:`set_host_load` tells it the load of its bus."""

    label: str

    def step(self, p_set_mw: float, dt_s: float, q_set_mvar: float = 0.0) -> DeviceOutput:
        raise NotImplementedError

    def reading(self) -> DeviceOutput:
        raise NotImplementedError

    def set_host_load(self, p_mw: float) -> None:
        """The load its bus carries now (MW); only a device that curtails it uses it."""


class Technology:
    """One FCM technology (module docstring). Subclasses set the class attributes and
    implement the methods; :func:`models.fcm.technology_of` finds the one of a catalog entry.

    ``add_block`` arguments: ``b`` an empty Pyomo block, ``time`` the horizon steps, ``dt_h``
    the step in hours, ``tech`` the catalog entry, ``p_cap``/``e_cap`` the sizes (numbers or
    Pyomo expressions), ``p_max`` an upper bound of ``p_cap`` (the big-M; defaults to
    ``p_cap`` when it is a number), ``plant_step_s`` the co-simulation step in which the
    plant reaches the first set-point (``None``: no first-step rows). Every block exposes
    ``p_mw[t]`` (net injection, MW), ``op_cost`` ($) and ``target_shortfall_mwh`` (MWh, 0
    where there is no end target), optionally ``host_draw_mw[t]`` (MW it takes off its host
    bus's load, which the horizon problem bounds by that load), and its initial state as mutable parameters at their nominal values (what
    Stage I plans from); :meth:`set_state` writes a measured state into them (Stage II).
    """

    #: the catalog's ``technology`` value
    name: ClassVar[str]
    #: the pydantic model of a catalog entry
    catalog_type: ClassVar[type[StrictModel]]
    #: what a placement's ``e_mwh`` is to a technology that holds energy
    energy_name: ClassVar[str] = "energy"

    def sizes(self, placement: Placement, tech: Any) -> tuple[float, float]:
        """``(P̄, Ē)`` of a placement: its ``p_mw`` and its ``e_mwh``, or, when ``e_mwh`` is
        0, modules × the catalog's energy per module."""
        p_cap = float(placement.p_mw)
        if placement.e_mwh > 0:
            return p_cap, float(placement.e_mwh)
        return p_cap, p_cap / tech.p_mw_per_module * self.e_mwh_per_module(tech)

    def placement_problem(self, placement: Placement, tech: Any) -> str | None:
        """What is wrong with a placement of catalog entry ``tech``, ``"field: message"``, or
        ``None``. A technology with energy per module (storage, DR) needs ``e_mwh > 0``;
        one without (a generator) holds none, so ``e_mwh`` must be 0 or left out."""
        per_module = self.e_mwh_per_module(tech)
        if per_module > 0 and placement.e_mwh <= 0:
            like = placement.p_mw / tech.p_mw_per_module * per_module
            return (f"e_mwh: a {self.name} placement needs its {self.energy_name} in MWh, "
                    f"got {placement.e_mwh:g}; allowed: e_mwh > 0, e.g. {like:.6g} (p_mw / "
                    f"p_mw_per_module × {per_module:g} MWh per module of {placement.kind!r})")
        if per_module == 0 and placement.e_mwh != 0:
            return (f"e_mwh: a {self.name} holds no energy, got {placement.e_mwh:g}; allowed: "
                    "0 or leave it out")
        return None

    def e_mwh_per_module(self, tech: Any) -> float:
        """Energy per module (MWh): storage capacity, DR event budget, 0 for a generator."""
        return 0.0

    def device(self, placement: Placement, tech: Any, host_p_mw: float | None = None) -> Device:
        raise NotImplementedError

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: Any, *,
                  p_cap: Any, e_cap: Any, p_max: float | None = None,
                  plant_step_s: float | None = None) -> pyo.Block:
        raise NotImplementedError

    def set_state(self, b: pyo.Block, tech: Any, state: Any, dt_s: float) -> None:
        """Write a measured state (an object with :class:`DeviceOutput`'s fields) into the
        block's initial-state parameters."""
        raise NotImplementedError

    def ramp_mw_per_min(self, tech: Any, p_mw: float) -> float | None:
        """Ramp limit of a placement of ``p_mw`` (MW/min), ``None`` when unlimited."""
        return None


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def big_m(p_cap: Any, p_max: float | None, what: str) -> float:
    """The big-M of a variable size: ``p_max``, or ``p_cap`` itself when it is a number."""
    if p_max is not None:
        return float(p_max)
    if is_number(p_cap):
        return float(p_cap)
    raise ValueError(f"{what}: p_max (an upper bound of the variable size p_cap) is required")


def finite(x: float | None) -> float:
    """A NaN or missing setpoint means 'no request' (0 MW)."""
    x = float(x) if x is not None else 0.0
    return x if math.isfinite(x) else 0.0
