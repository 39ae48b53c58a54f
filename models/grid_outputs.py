"""What a solved feeder reports, by name (docs/feeders.md §2), without mosaik.

:func:`grid_value` reads one named output of a :class:`models.feeder.PowerFlowResult`: the
scalars of :data:`GRID_SCALARS` and the dicts of :data:`GRID_DICTS` (OpenDSS line or
``FeederData`` branch or bus name → value). A step that did not converge has NaN in every
number, so every output of it is NaN (DESIGN.md §2a).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.feeder import PowerFlowResult

GRID_SCALARS = (
    "converged", "sub_p_mw", "sub_q_mvar", "losses_mw", "losses_mvar", "total_load_mw",
    "v_min_pu", "v_min_bus", "v_max_pu", "pf_status", "pf_recovery",
)
GRID_DICTS = ("bus_v_pu", "line_loading_pct", "line_p_mw", "line_q_mvar",
              "branch_p_mw", "branch_q_mvar", "branch_loading_pct")
_TEXT = {"v_min_bus": "v_min_bus", "pf_status": "status", "pf_recovery": "recovery"}


def grid_value(res: PowerFlowResult, attr: str) -> Any:
    """Output ``attr`` of ``res`` (a float, a bool, a text or a dict of floats)."""
    if attr == "converged":
        return bool(res.converged)
    if attr in _TEXT:
        return getattr(res, _TEXT[attr])
    if attr in GRID_SCALARS:
        return float(getattr(res, attr))
    if attr == "bus_v_pu":
        return dict(zip(res.bus_names, res.bus_v_pu.tolist()))
    if attr in ("line_loading_pct", "line_p_mw", "line_q_mvar"):
        return dict(zip(res.line_names, getattr(res, attr).tolist()))
    if attr in ("branch_p_mw", "branch_q_mvar", "branch_loading_pct"):
        return dict(zip(res.branch_names, getattr(res, attr).tolist()))
    raise ValueError(f"Grid has no output {attr!r}")


def injection_name(bus: str, taken: Iterable[str]) -> str:
    """A name for one more injection at ``bus``: ``inj_<bus>``, else ``inj_<bus>_<k>`` with
    the smallest ``k ≥ 1`` not ``taken``."""
    taken = set(taken)
    name, k = f"inj_{bus}", 1
    while name in taken:
        name, k = f"inj_{bus}_{k}", k + 1
    return name
