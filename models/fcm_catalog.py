"""Catalog of Flexible Capacity Module (FCM) types and the placements that instantiate them.

The catalog lives in the scenario file under ``[fcm.catalog.<kind>]``; ``<kind>`` is the name
placements and ``siting.json`` refer to (``"bess"``, ``"ldes"``, ``"gen"``, ``"dr"`` in the
shipped scenarios). Each entry has a ``technology`` that selects its physics and its
optimisation block:

* ``storage`` (BESS and LDES): energy balance with charge/discharge efficiencies.
* ``generator``: fast-ramping unit with commitment, min/max output, ramps, min up/down time
  and start-up cost.
* ``dr``: demand response, a curtailable load with a per-event energy budget and payback.

Sign convention, everywhere in this project: FCM ``p_mw`` > 0 is an injection into the grid
(discharge, generation, load reduction); < 0 is consumption (charging, DR payback).

Sizes are in modules: a placement of ``n`` modules has ``n * p_mw_per_module`` MW and
``n * e_mwh_per_module`` MWh. Stage I may also size continuously (``integer_modules=false``).
Costs are in currency units (``$``); capex is per module, operating costs per MWh.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveFloat, NonNegativeFloat

from models.schema import StrictModel



class StorageType(StrictModel):
    """Battery (BESS) or long-duration storage (LDES) module."""

    technology: Literal["storage"] = "storage"
    p_mw_per_module: PositiveFloat = 0.25
    e_mwh_per_module: PositiveFloat = 0.5
    eta_charge: float = Field(0.95, gt=0, le=1)
    eta_discharge: float = Field(0.95, gt=0, le=1)
    soc_min: float = Field(0.1, ge=0, le=1)
    soc_max: float = Field(0.9, ge=0, le=1)
    soc_init: float = Field(0.5, ge=0, le=1)
    ramp_mw_per_s: PositiveFloat | None = None
    capex_per_module: NonNegativeFloat = 150_000.0
    cost_per_mwh: NonNegativeFloat = 10.0
    max_modules: int = Field(8, ge=1)


class GeneratorType(StrictModel):
    """Fast-ramping generator module (e.g. reciprocating engine, aeroderivative turbine)."""

    technology: Literal["generator"] = "generator"
    p_mw_per_module: PositiveFloat = 0.5
    p_min_frac: float = Field(0.3, ge=0, le=1)
    ramp_mw_per_min: PositiveFloat = 0.25
    min_up_s: NonNegativeFloat = 600.0
    min_down_s: NonNegativeFloat = 600.0
    startup_cost: NonNegativeFloat = 50.0
    cost_per_mwh: NonNegativeFloat = 120.0
    capex_per_module: NonNegativeFloat = 400_000.0
    max_modules: int = Field(4, ge=1)

    @property
    def e_mwh_per_module(self) -> float:
        return 0.0

    def ramp_mw_per_min_for(self, p_mw: float) -> float:
        """Ramp limit of a placement of ``p_mw`` (MW/min). ``ramp_mw_per_min`` is one
        module's; the ``p_mw / p_mw_per_module`` modules of a placement ramp side by side::

            R(P̄) = ramp_mw_per_min · P̄ / p_mw_per_module

        the same fraction of the rating per minute that Stage I sizes with
        (``controllers.blocks.GeneratorSpec``)."""
        return self.ramp_mw_per_min * float(p_mw) / self.p_mw_per_module


class DRType(StrictModel):
    """Demand-response module: a curtailable block of load with an energy budget and payback."""

    technology: Literal["dr"] = "dr"
    p_mw_per_module: PositiveFloat = 0.1
    energy_budget_mwh_per_module: PositiveFloat = 0.2
    payback_frac: float = Field(1.0, ge=0, le=2)
    payback_window_s: PositiveFloat = 3600.0
    cost_per_mwh: NonNegativeFloat = 200.0
    capex_per_module: NonNegativeFloat = 20_000.0
    max_modules: int = Field(10, ge=1)

    @property
    def e_mwh_per_module(self) -> float:
        return self.energy_budget_mwh_per_module


FCMType = Annotated[Union[StorageType, GeneratorType, DRType], Field(discriminator="technology")]


def default_catalog() -> dict[str, FCMType]:
    """The catalog used when a scenario names none: BESS, LDES, fast generator and DR."""
    return {
        "bess": StorageType(),
        "ldes": StorageType(
            p_mw_per_module=0.1, e_mwh_per_module=1.0, eta_charge=0.85, eta_discharge=0.85,
            capex_per_module=250_000.0, cost_per_mwh=5.0,
        ),
        "gen": GeneratorType(),
        "dr": DRType(),
    }


class Placement(StrictModel):
    """One installed FCM: catalog kind, bus, rated power and energy (``siting.json`` rows)."""

    kind: str
    bus: str
    p_mw: PositiveFloat
    e_mwh: NonNegativeFloat = 0.0
    name: str | None = None

    @property
    def label(self) -> str:
        """Entity name used in time-series columns, e.g. ``bess_18``."""
        return self.name or f"{self.kind}_{self.bus}"
