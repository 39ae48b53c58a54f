"""Built-in feeders written from the Baran & Wu tables in ``models/data``.

Networks are data: each function returns the OpenDSS commands of one feeder, and
:class:`models.feeder.DSSFeeder` compiles them in its own engine. The figures (branch R/X in
ohm, spot loads in kW/kvar) come from

* IEEE 33-bus: M. E. Baran, F. F. Wu, "Network reconfiguration in distribution systems for
  loss reduction and load balancing", IEEE Trans. Power Delivery 4(2):1401-1407, 1989;
* IEEE 69-bus: M. E. Baran, F. F. Wu, "Optimal capacitor placement on radial distribution
  systems", IEEE Trans. Power Delivery 4(1):725-734, 1989.

Modelling choices (docs/feeders.md explains each one):

* 12.66 kV, a stiff three-phase source at bus ``"1"`` at 1.0 pu (R = 0, X = 1e-6 Ω);
* every section a balanced three-phase line with R1 = R0 and X1 = X0 from the table and no
  shunt capacitance, so the phases decouple and the positive-sequence result is Baran & Wu's;
* constant-PQ wye loads (``model=1``) that stay constant PQ down to 0.5 pu (``vminpu``);
* normally open tie switches present as lines whose terminal 1 is open;
* a normal thermal rating per line (``normamps``): twice the base-case current, at least
  150 A, rounded up to 10 A (the ``normamps`` column of the branch table).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

BASE_KV_LL = 12.66
"""Nominal line-to-line voltage of both Baran & Wu feeders (kV)."""

SOURCE_X_OHM = 1e-6
"""Source reactance (Ω): an almost ideal slack, so bus 1 sits at 1.0 pu as in the paper."""

LOAD_VMIN_PU = 0.5
"""OpenDSS Load ``vminpu``: loads stay constant PQ down to this voltage (default is 0.95)."""


@dataclass(frozen=True)
class BranchRow:
    """One row of a Baran & Wu branch table (ohm for the whole section)."""

    branch: int
    from_bus: str
    to_bus: str
    r_ohm: float
    x_ohm: float
    tie: bool
    normamps: float


@dataclass(frozen=True)
class LoadRow:
    """One spot load of a Baran & Wu table at nominal voltage (kW, kvar)."""

    bus: str
    p_kw: float
    q_kvar: float


BUILTIN_FEEDERS = ("ieee33", "ieee69")


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("models").joinpath("data", filename).read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines))


@cache
def branch_table(name: str) -> tuple[BranchRow, ...]:
    """The branch table of built-in feeder ``name`` (``"ieee33"`` or ``"ieee69"``)."""
    return tuple(
        BranchRow(
            branch=int(r["branch"]), from_bus=r["from_bus"], to_bus=r["to_bus"],
            r_ohm=float(r["r_ohm"]), x_ohm=float(r["x_ohm"]), tie=r["tie"] == "1",
            normamps=float(r["normamps"]) if r.get("normamps") else 0.0,
        )
        for r in _rows(f"{name}_branches.csv")
    )


@cache
def load_table(name: str) -> tuple[LoadRow, ...]:
    """The spot-load table of built-in feeder ``name``."""
    return tuple(
        LoadRow(bus=r["bus"], p_kw=float(r["p_kw"]), q_kvar=float(r["q_kvar"]))
        for r in _rows(f"{name}_loads.csv")
    )


def baran_wu_commands(name: str) -> list[str]:
    """OpenDSS commands of built-in feeder ``name``; lines are named ``l<branch>``.

    Each section i→j is ``Line.l<k>`` with total series impedance z = r + jx ohm in every
    phase (R1 = R0 = r, X1 = X0 = x, so the mutual impedance (Z0 − Z1)/3 is zero) and
    C1 = C0 = 0. Each load is a wye ``Load.d<bus>`` with P, Q at 12.66 kV, ``model=1``
    (constant P and Q).
    """
    if name not in BUILTIN_FEEDERS:
        raise KeyError(name)
    cmds = [
        "clear",
        f"new circuit.{name} basekv={BASE_KV_LL} bus1=1 pu=1.0 angle=0 phases=3 "
        f"r1=0 x1={SOURCE_X_OHM} r0=0 x0={SOURCE_X_OHM}",
    ]
    for br in branch_table(name):
        rating = f" normamps={br.normamps:g} emergamps={1.5 * br.normamps:g}" if br.normamps else ""
        cmds.append(
            f"new line.l{br.branch} phases=3 bus1={br.from_bus} bus2={br.to_bus} "
            f"r1={br.r_ohm:g} x1={br.x_ohm:g} r0={br.r_ohm:g} x0={br.x_ohm:g} c1=0 c0=0 "
            f"length=1{rating}"
        )
    for ld in load_table(name):
        cmds.append(
            f"new load.d{ld.bus} bus1={ld.bus} phases=3 conn=wye kv={BASE_KV_LL} "
            f"kw={ld.p_kw:g} kvar={ld.q_kvar:g} model=1 vminpu={LOAD_VMIN_PU} vmaxpu=2.0"
        )
    cmds += [f"open line.l{br.branch} 1" for br in branch_table(name) if br.tie]
    cmds += [f"set voltagebases=[{BASE_KV_LL}]", "calcvoltagebases", "set mode=snapshot"]
    return cmds


def ieee33() -> list[str]:
    """OpenDSS commands of the IEEE 33-bus feeder (Baran & Wu 1989b); buses ``"1".."33"``."""
    return baran_wu_commands("ieee33")


def ieee69() -> list[str]:
    """OpenDSS commands of the IEEE 69-bus feeder (Baran & Wu 1989a); buses ``"1".."69"``."""
    return baran_wu_commands("ieee69")


BUILTINS = {"ieee33": ieee33, "ieee69": ieee69}
