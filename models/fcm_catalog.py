"""Catalog of Flexible Capacity Module (FCM) types and the placements that instantiate them.

The catalog lives in the scenario file under ``[fcm.catalog.<kind>]``; ``<kind>`` is the name
placements and ``siting.json`` refer to (``"bess"``, ``"ldes"``, ``"gen"``, ``"dr"`` in the
shipped scenarios). Each entry has a ``technology`` that selects its physics and its
optimisation block:

* ``storage`` (BESS and LDES): energy balance with charge/discharge efficiencies.
* ``generator``: fast-ramping unit with commitment, min/max output, ramps, min up/down time
  and start-up cost.
* ``dr``: demand response, a curtailable load with a per-event energy budget and payback.

Each technology is one module of :mod:`models.fcm` (its catalog model, physics and block);
this module assembles the catalog from them.

Sign convention, everywhere in this project: FCM ``p_mw`` > 0 is an injection into the grid
(discharge, generation, load reduction); < 0 is consumption (charging, DR payback).

Sizes are in modules: a placement of ``n`` modules has ``n * p_mw_per_module`` MW and
``n * e_mwh_per_module`` MWh. Stage I may also size continuously (``integer_modules=false``).
Costs are in currency units (``$``); capex is per module, operating costs per MWh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Field

from models.fcm import TECHNOLOGIES
from models.fcm.base import Placement
from models.fcm.dr import DRType
from models.fcm.generator import GeneratorType
from models.fcm.storage import StorageType

#: a catalog entry: one of the registered technologies' catalog models, chosen by its
#: ``technology`` field
FCMType = Annotated[Union[tuple(t.catalog_type for t in TECHNOLOGIES.values())],
                    Field(discriminator="technology")]


def unknown_kind(kind: str, catalog: Mapping[str, Any]) -> str | None:
    """The message for a kind the catalog does not have; ``None`` when it has it."""
    if kind in catalog:
        return None
    return f"kind {kind!r} is not in the FCM catalog; allowed: {', '.join(sorted(catalog))}"


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
