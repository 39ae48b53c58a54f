"""Grid faults as events of the grid (DESIGN.md §2b, docs/faults.md).

* :mod:`models.faults.config`: the ``[faults]`` law and the ``[[events]]`` scripted faults;
* :mod:`models.faults.draws`: the faults of a run and their shots;
* :mod:`models.faults.protection`: where a fault can be and which device clears it;
* :mod:`models.faults.solve`: one shot solved by OpenDSS, the inverters' fault current in it;
* :mod:`models.faults.grid`: the faults of a feeder during a run (what the plant calls).
"""

from models.faults.config import FaultEvent, FaultLaw
from models.faults.draws import Fault, FaultPlan, Shot, fault_rng
from models.faults.grid import GridFaults, plan_faults
from models.faults.solve import Component, FaultSolver, components_of

__all__ = ["Component", "Fault", "FaultEvent", "FaultLaw", "FaultPlan", "FaultSolver",
           "GridFaults", "Shot", "components_of", "fault_rng", "plan_faults"]
