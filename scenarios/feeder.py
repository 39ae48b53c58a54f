"""The scenario's one feeder (DESIGN.md §2a): compiled once from ``[feeder]`` and
``grid.v_source_pu``, handed to everything that needs the network.

The plant (FeederSim, which may run in a process of its own) compiles the same definition
(:func:`feeder_spec`) and checks that its data has the plan's
:meth:`~models.network.FeederData.fingerprint`; Stage I, Stage II and the AC validation get the
plan's :class:`~models.network.FeederData` itself and compile nothing.
"""

from __future__ import annotations

from typing import Any

from models.errors import ScenarioError


def feeder_spec(scenario: Any) -> dict[str, Any]:
    """Keyword arguments of :meth:`models.feeder.DSSFeeder.open` for ``scenario``: source
    (resolved against the scenario's folder), scale, ``extra_commands`` and the source
    voltage (``grid.v_source_pu``; 1.0 keeps the model's own, docs/conventions.md)."""
    v = float(scenario.grid.v_source_pu)
    return {
        "source": scenario.feeder_source(),
        "scale": float(scenario.feeder.scale),
        "extra_commands": [str(c) for c in scenario.feeder.extra_commands],
        "v_source_pu": None if v == 1.0 else v,
    }


def open_scenario_feeder(scenario: Any) -> Any:
    """Compile the scenario's feeder (:class:`models.feeder.DSSFeeder`).

    A problem with the feeder is reported against the scenario file and its field
    (``feeder.source``, ``feeder.extra_commands[i]``, ``feeder.scale``), with the model
    file's own message."""
    from models.feeder import DSSFeeder

    where = scenario.path or "<scenario>"
    try:
        return DSSFeeder.open(**feeder_spec(scenario))
    except ScenarioError as exc:
        field = exc.field if exc.field.startswith(("extra_commands", "scale")) else "source"
        detail = exc.message if exc.source in ("", where) else f"{exc.source}: {exc.message}"
        raise ScenarioError(where, f"feeder.{field}", detail) from None
