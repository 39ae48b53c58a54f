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
    #: apparent-power rating S̄ of an inverter (kVA); ``None``: the catalog's ``s_over_p`` × P̄
    s_kva: float | None = Field(None, gt=0, le=100_000_000.0)

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


@dataclass(frozen=True)
class FaultSupport:
    """An inverter's reactive-current response to a sag (docs/fcm.md, "Fault-time support").

    During a sag its terminal voltage falls by ``Δv`` pu from the pre-fault value; beyond
    the dead band it injects extra reactive current (in MVA at 1 pu voltage)::

        ΔI_q = min(K S̄ Δv, I_room)      when Δv > deadband, else 0
        I_room = sqrt((i_lim S̄)² − P²) − Q                          (active current held)

    ``k_mva_per_pu`` = K·S̄, ``room_mva`` = I_room at the pre-fault ``(P, Q)``, both as
    currents at 1 pu voltage.
    """

    k_mva_per_pu: float
    room_mva: float
    deadband_pu: float

    def as_dict(self) -> dict[str, float]:
        return {"k_mva_per_pu": self.k_mva_per_pu, "room_mva": self.room_mva,
                "deadband_pu": self.deadband_pu}


#: sides of the polygon inscribed in ``P² + Q² ≤ S̄²`` (vertices on both axes: P̄ = S̄ at
#: Q = 0 stays reachable; the polygon gives up at most 1 − cos(π/n) of the circle, 3.4 %)
PQ_SIDES = 12


def add_pq_capability(b: pyo.Block, s_cap: Any, sides: int = PQ_SIDES) -> None:
    """The inverter capability of a block with ``p_mw[t]``: reactive power ``q_mvar[t]`` and
    the reactive room kept for a sag, ``q_room_mvar[t] ≥ 0``, in the polygon of ``sides``
    sides inscribed in ``P² + Q² ≤ S̄²`` (docs/optimization.md §2.4)::

        cos θ_i P_t + sin θ_i (Q_t + R_t) ≤ S̄ cos(π/n)     θ_i = (2i + 1) π/n, sin θ_i > 0
        cos θ_i P_t + sin θ_i Q_t        ≤ S̄ cos(π/n)     sin θ_i < 0

    so that ``(P_t, Q_t)`` and ``(P_t, Q_t + R_t)`` both lie in the polygon: ``R_t`` is the
    capacitive reactive power the unit could still add at ``P_t``. Adds ``q_abs[t] ≥ |Q_t|``
    for the reactive cost (:func:`add_reactive_power`)."""
    add_reactive_power(b)
    b.q_room = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    angles = [(2 * i + 1) * math.pi / sides for i in range(sides)]
    reach = math.cos(math.pi / sides)
    b.SIDES = pyo.Set(initialize=range(sides), ordered=True)

    def side(b, i, t):
        c, s = math.cos(angles[i]), math.sin(angles[i])
        q = b.q[t] + b.q_room[t] if s > 0 else b.q[t]
        return c * b.p_mw[t] + s * q <= reach * s_cap

    b.pq = pyo.Constraint(b.SIDES, b.T, rule=side)
    b.q_room_mvar = pyo.Expression(b.T, rule=lambda b, t: b.q_room[t])


def add_reactive_power(b: pyo.Block) -> None:
    """Reactive power ``q[t]`` (free; the caller bounds it), exposed as ``q_mvar[t]``, and
    ``q_abs[t] ≥ |q_t|`` for a cost ``c_q Σ q_abs Δt_h``."""
    b.q = pyo.Var(b.T, domain=pyo.Reals)
    b.q_abs = pyo.Var(b.T, domain=pyo.NonNegativeReals)
    b.q_abs_hi = pyo.Constraint(b.T, rule=lambda b, t: b.q_abs[t] >= b.q[t])
    b.q_abs_lo = pyo.Constraint(b.T, rule=lambda b, t: b.q_abs[t] >= -b.q[t])
    b.q_mvar = pyo.Expression(b.T, rule=lambda b, t: b.q[t])


def add_no_reactive(b: pyo.Block) -> None:
    """``q_mvar[t] = 0`` and ``q_room_mvar[t] = 0``: a unit without reactive power."""
    b.q_mvar = pyo.Expression(b.T, rule=lambda b, t: 0.0)
    b.q_room_mvar = pyo.Expression(b.T, rule=lambda b, t: 0.0)


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

    def fault_support(self) -> FaultSupport | None:
        """Its fault-time reactive-current response at the state of its last step (an
        inverter's, :class:`FaultSupport`), or ``None`` when it gives none."""
        return None

    def set_host_load(self, p_mw: float) -> None:
        """The load its bus carries now (MW); only a device that curtails it uses it."""


class Technology:
    """One FCM technology (module docstring). Subclasses set the class attributes and
    implement the methods; :func:`models.fcm.technology_of` finds the one of a catalog entry.

    ``add_block`` arguments: ``b`` an empty Pyomo block, ``time`` the horizon steps, ``dt_h``
    the step in hours, ``tech`` the catalog entry, ``p_cap``/``e_cap`` the sizes (numbers or
    Pyomo expressions), ``p_max`` an upper bound of ``p_cap`` (the big-M; defaults to
    ``p_cap`` when it is a number), ``plant_step_s`` the co-simulation step in which the
    plant reaches the first set-point (``None``: no first-step rows), ``s_cap`` the
    apparent-power rating S̄ (MVA; ``None``: the catalog's for ``p_cap``). Every block exposes
    ``p_mw[t]`` (net injection, MW), ``q_mvar[t]`` (Mvar, + = into the grid),
    ``q_room_mvar[t]`` (the reactive room an inverter keeps for a sag, 0 elsewhere),
    ``op_cost`` ($) and ``target_shortfall_mwh`` (MWh, 0
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
    #: it dispatches reactive power (its block's ``q_mvar`` is not 0)
    reactive: ClassVar[bool] = False
    #: an inverter-based technology: its S̄ is a placement's ``s_kva`` and it supports sags
    inverter: ClassVar[bool] = False

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
        if placement.s_kva is not None and not self.inverter:
            return (f"s_kva: a {self.name} has no inverter rating to set, got "
                    f"{placement.s_kva:g}; allowed: leave it out")
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

    def s_mva(self, placement: Placement, tech: Any) -> float:
        """Apparent-power rating S̄ (MVA) of a placement; 0 for a technology without reactive
        power (DR). Only an inverter's is sized apart from P̄ (``s_kva``)."""
        return 0.0

    def s_extra_max(self, tech: Any) -> float:
        """How much S̄ Stage I may add beyond the catalog's, per MW of P̄ (0: none)."""
        return 0.0

    def device(self, placement: Placement, tech: Any, host_p_mw: float | None = None) -> Device:
        raise NotImplementedError

    def add_block(self, b: pyo.Block, time: Sequence[int], dt_h: float, tech: Any, *,
                  p_cap: Any, e_cap: Any, p_max: float | None = None,
                  plant_step_s: float | None = None, s_cap: Any = None) -> pyo.Block:
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
