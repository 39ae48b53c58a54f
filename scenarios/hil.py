"""The controller as a process of its own, that runs reach over TCP (docs/hil.md).

``python run_cosim.py controller SCENARIO --listen HOST:PORT [--siting FILE]
[--controller mpc|rule]`` calls :func:`serve_controller`: it checks the scenario and the
siting against the feeder (as ``run`` does), then listens. Each run that connects
(``run ... --controller-address HOST:PORT``) gets a fresh
:class:`sim.controller_sim.ControllerSim` holding this process's own set-up
(:class:`LocalSetup`): its ``[controller]`` section, its FCMs and its feeder. A run whose
FCMs or feeder differ is refused, with the reason, before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from models.fcm_catalog import Placement
from models.network import FeederData
from scenarios.config import Scenario


@dataclass(frozen=True)
class LocalSetup:
    """What a controller in its own process holds of its own: ``controller``, the
    ``[controller]`` section it runs (plain JSON, as the World sends its scenario);
    ``placements``, the FCMs it dispatches; ``fingerprint``, its feeder's
    (:meth:`models.network.FeederData.fingerprint`); ``source`` names the scenario and
    siting files they came from, for messages."""

    controller: dict[str, Any]
    placements: tuple[Placement, ...]
    fingerprint: str
    source: str

    def refusal(self, placements: list[Placement], feeder: FeederData | None) -> str | None:
        """Why a run with these FCMs on this feeder is not this controller's (None: it is)."""
        if feeder is not None and feeder.fingerprint() != self.fingerprint:
            return (f"the run's feeder (fingerprint {feeder.fingerprint()}) is not the "
                    f"controller's ({self.fingerprint}, from {self.source})")
        ours = {p.label: p for p in self.placements}
        theirs = {p.label: p for p in placements}
        if ours != theirs:
            diff = sorted(set(ours) ^ set(theirs)) or sorted(k for k in ours if ours[k] != theirs[k])
            return (f"the run's FCMs differ from the controller's ({self.source}): "
                    f"{', '.join(diff)}; give both the same siting")
        return None


def local_setup(scenario: Scenario, siting_file: str | Path | None = None) -> LocalSetup:
    """This process's controller set-up, checked against the feeder (ScenarioError)."""
    from scenarios.world import plan_world

    plan = plan_world(scenario, siting_file)  # the siting file checked as `run` checks it
    source = str(scenario.path or scenario.name) + (f" with {siting_file}" if siting_file else "")
    return LocalSetup(controller=scenario.controller.model_dump(mode="json"),
                      placements=tuple(plan.placements), fingerprint=plan.feeder.fingerprint(),
                      source=source)


def serve_controller(scenario: Scenario, address: str, siting_file: str | Path | None = None,
                     on_listening: Callable[[str], None] | None = None) -> None:
    """Serve runs at ``address`` (``HOST:PORT``) until Ctrl-C (module docstring)."""
    from scenarios.runner import check_listen_address
    from sim.controller_sim import ControllerSim, serve

    check_listen_address(address, "--listen")  # a taken port is bad input, said at once
    setup = local_setup(scenario, siting_file)
    serve(address, lambda: ControllerSim(local=setup), on_listening)
