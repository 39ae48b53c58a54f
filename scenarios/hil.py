"""The controller as a process of its own, that runs reach over TCP (docs/hil.md).

``python run_cosim.py controller SCENARIO --listen HOST:PORT [--siting FILE]
[--controller mpc|rule]`` calls :func:`serve_controller`: it checks the scenario and the
siting against the feeder (as ``run`` does), then listens. Each run that connects
(``run ... --controller-address HOST:PORT``) gets a fresh
:class:`sim.controller_sim.ControllerSim` holding this process's own set-up
(:class:`sim.controller_sim.LocalSetup`): its ``[controller]`` section, its FCMs and its
feeder. A run whose FCMs or feeder differ is refused, with the reason, before it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from models.errors import ScenarioError
from scenarios.config import Scenario


def local_setup(scenario: Scenario, siting_file: str | Path | None = None):
    """This process's controller set-up, checked against the feeder (ScenarioError)."""
    from sim.controller_sim import LocalSetup
    from scenarios.world import plan_world

    plan = plan_world(scenario, siting_file)  # the siting file checked as `run` checks it
    source = str(scenario.path or scenario.name) + (f" with {siting_file}" if siting_file else "")
    return LocalSetup(controller=scenario.controller.model_dump(mode="json"),
                      placements=[p.model_dump(mode="json") for p in plan.placements],
                      fingerprint=plan.feeder.fingerprint(), source=source)


def serve_controller(scenario: Scenario, address: str, siting_file: str | Path | None = None,
                     on_listening: Callable[[str], None] | None = None) -> None:
    """Serve runs at ``address`` (``HOST:PORT``) until Ctrl-C (module docstring)."""
    from sim.controller_sim import ControllerSim, serve

    setup = local_setup(scenario, siting_file)
    host, _, port = address.rpartition(":")
    try:
        serve(host, int(port), lambda: ControllerSim(local=setup), on_listening)
    except OSError as exc:  # the address is taken or not this machine's
        raise ScenarioError("command line", "--listen", f"cannot listen on {address} "
                            f"({exc.strerror or exc}); allowed: a free port of this machine") from None
