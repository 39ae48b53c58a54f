"""Fault-time voltage support: how much the inverters' reactive current lifts a campus's POI
during a sag (docs/fcm.md, "Fault-time support").

A grid fault upstream of the feeder (a transmission fault and its reclosing attempts, the
campus model's disturbances) retains the fraction ``r`` of every bus's pre-fault voltage.
Each inverter FCM ``k`` sees its terminal voltage fall by ``Δv_k = (1 − r) v_k`` and answers
with extra reactive current (:class:`models.fcm.base.FaultSupport`), a K-factor response with
a dead band and a limit, in MVA at 1 pu voltage::

    ΔI_k = min(K_k S̄_k (Δv_k − x_kk ΔI_k), I_room,k)     when Δv_k > deadband_k, else 0

``x_kk`` is the Thevenin reactance at its own bus (pu per MVA): the current it injects lifts
its own terminal, which lowers ``Δv_k`` (solved in closed form below the limit,
``ΔI = K S̄ Δv / (1 + K S̄ x_kk)``). The campus's POI ``c`` rises by::

    ΔV_c = Σ_k x_ck ΔI_k

with ``x_ck`` the transfer reactance from ``k`` to ``c``
(:meth:`models.feeder.DSSFeeder.lift_sensitivity`). The UPS input behind the campus's tap
changer (ratio ``τ``) sees ``τ ΔV_c``. Units are taken one by one: the lift one inverter
gives another's terminal is left out (second order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SupportSource:
    """One inverter as a campus sees it: its transfer reactance to the campus's POI and its
    own Thevenin reactance (pu per MVA), its response (:class:`models.fcm.base.FaultSupport`)
    and its pre-fault terminal voltage (pu)."""

    label: str
    x_poi_pu_per_mva: float
    x_self_pu_per_mva: float
    k_mva_per_pu: float
    room_mva: float
    deadband_pu: float
    v_pre_pu: float = 1.0

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> SupportSource:
        """From the plain dict FeederSim publishes (:meth:`as_dict`)."""
        return cls(str(d.get("label", "")), float(d["x_poi_pu_per_mva"]),
                   float(d["x_self_pu_per_mva"]), float(d["k_mva_per_pu"]),
                   float(d["room_mva"]), float(d["deadband_pu"]), float(d.get("v_pre_pu", 1.0)))

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x_poi_pu_per_mva": self.x_poi_pu_per_mva,
                "x_self_pu_per_mva": self.x_self_pu_per_mva, "k_mva_per_pu": self.k_mva_per_pu,
                "room_mva": self.room_mva, "deadband_pu": self.deadband_pu,
                "v_pre_pu": self.v_pre_pu}

    def current_mva(self, retained_frac: float) -> float:
        """``ΔI_k`` (MVA at 1 pu) in a sag that retains ``retained_frac`` of the voltage."""
        v_pre = self.v_pre_pu if math.isfinite(self.v_pre_pu) and self.v_pre_pu > 0 else 1.0
        dv = (1.0 - float(retained_frac)) * v_pre
        if not dv > self.deadband_pu or self.k_mva_per_pu <= 0 or self.room_mva <= 0:
            return 0.0
        x = max(self.x_self_pu_per_mva, 0.0)
        return min(self.k_mva_per_pu * dv / (1.0 + self.k_mva_per_pu * x), self.room_mva)


def support_lift(sources: Iterable[SupportSource], retained_frac: float) -> float:
    """``ΔV_c`` (pu at the POI) of a sag that retains ``retained_frac`` (module docstring)."""
    return sum(max(s.x_poi_pu_per_mva, 0.0) * s.current_mva(retained_frac) for s in sources)


def support_sources(feeder: Any, poi_bus: str, responses: Sequence[tuple[str, Mapping[str, Any]]],
                    v_pre_pu: Callable[[str], float]) -> list[SupportSource]:
    """The inverters of ``responses`` (``(bus, FaultSupport.as_dict() with its label)``) as
    a campus at ``poi_bus`` sees them: the transfer and own Thevenin reactances from
    ``feeder`` (a :class:`models.feeder.DSSFeeder`, :meth:`lift_sensitivity`, cached per
    topology) and the pre-fault voltage of each inverter's bus."""
    if not responses:
        return []
    buses = list(dict.fromkeys(bus for bus, _ in responses))
    x_poi = feeder.lift_sensitivity([poi_bus], buses)[0]
    x_self = np.diag(feeder.lift_sensitivity(buses, buses))
    col = {b: i for i, b in enumerate(buses)}
    return [SupportSource(str(d.get("label", bus)), float(x_poi[col[bus]]),
                          float(x_self[col[bus]]), float(d["k_mva_per_pu"]),
                          float(d["room_mva"]), float(d["deadband_pu"]), float(v_pre_pu(bus)))
            for bus, d in responses]


__all__ = ["SupportSource", "support_lift", "support_sources"]
