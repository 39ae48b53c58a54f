"""FCM technologies, one module each (docs/fcm.md): storage, generator, DR.

:data:`TECHNOLOGIES` maps a catalog entry's ``technology`` to its :class:`Technology`;
:func:`technology_of` finds the one of a catalog entry. Adding a technology means adding one
module that defines its catalog model and a ``TECHNOLOGY`` instance, and naming it: in
:data:`_MODULES` below, or, without touching the package, in the environment variable
``DCSHOCK_FCM_MODULES`` (comma-separated module names, imported after the built-in ones;
simulator processes started by mosaik inherit it). docs/fcm.md shows how, with the
example that ``tests/test_fcm_technologies.py`` runs.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from models.fcm.base import (
    NEVER_SWITCHED_S,
    Device,
    DeviceOutput,
    Placement,
    Technology,
)

#: the modules that define a technology, in catalog order
_MODULES = ("models.fcm.storage", "models.fcm.generator", "models.fcm.dr")

TECHNOLOGIES: dict[str, Technology] = {}


def register(technology: Technology) -> Technology:
    """Make ``technology`` known to the catalog, the blocks and the plant."""
    TECHNOLOGIES[technology.name] = technology
    return technology


#: environment variable naming extra technology modules
MODULES_ENV = "DCSHOCK_FCM_MODULES"

for _name in (*_MODULES, *filter(None, (m.strip() for m in os.environ.get(MODULES_ENV, "").split(",")))):
    register(import_module(_name).TECHNOLOGY)


def technology_of(tech: Any) -> Technology:
    """The :class:`Technology` of catalog entry ``tech`` (by its ``technology`` field)."""
    try:
        return TECHNOLOGIES[tech.technology]
    except (AttributeError, KeyError):
        raise TypeError(f"unknown FCM technology {type(tech).__name__}") from None


def placement_problem(placement: Placement, tech: Any) -> str | None:
    """What is wrong with ``placement`` of catalog entry ``tech`` (``"field: message"``), or
    ``None``; each technology says (:meth:`Technology.placement_problem`)."""
    return technology_of(tech).placement_problem(placement, tech)


def make_device(placement: Placement, tech: Any, host_p_mw: float | None = None) -> Device:
    """The plant device of a placement (``host_p_mw``: the load of its bus, for DR)."""
    return technology_of(tech).device(placement, tech, host_p_mw)


__all__ = ["MODULES_ENV", "NEVER_SWITCHED_S", "TECHNOLOGIES", "Device", "DeviceOutput", "Placement",
           "Technology", "make_device", "placement_problem", "register", "technology_of"]
