"""OpenDSS feeders: load any master file or a built-in feeder, extract a radial description,
apply injections and solve snapshot power flows.

Each :class:`DSSFeeder` owns its own OpenDSS engine (``opendssdirect.NewContext()``), so
several feeders live in one process without sharing OpenDSS's global "active circuit".
Results are read as whole-circuit arrays (``Circuit.AllBusMagPu``, ``PDElements.AllPowers``,
``PDElements.AllPctNorm``); no per-bus Python loop runs per solve.

Sign conventions (docs/conventions.md): an injection's ``p_mw`` > 0 is consumption drawn from
the grid (load convention; FCMs pass −p). ``sub_p_mw`` > 0 is import from upstream. A line's
``p_mw`` > 0 flows from its ``from_bus`` towards its ``to_bus`` as :class:`FeederData` orients
it (substation outward). docs/feeders.md documents the extraction rules and the scaling.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import opendssdirect
from opendssdirect import DSSException
from opendssdirect.enums import CapControlModes

from models.builtin_feeders import BUILTINS
from models.errors import ScenarioError
from models.network import SCALE_RANGE, Branch, Bus, BusLoad, FeederData

log = logging.getLogger(__name__)

ALLOWED_SOURCES = "ieee33, ieee69 or the path of an OpenDSS master file (.dss)"
INJECTION_PREFIX = "inj_"
#: A sag this deep or deeper turns a load whose ``vminpu`` is at least this into the
#: impedance OpenDSS makes of it below ``vminpu`` (:meth:`DSSFeeder.lift_sensitivity`).
SAG_V_PU = 0.9
#: The sag :meth:`DSSFeeder.lift_sensitivity` linearises a constant-power load at: this
#: fraction of its pre-fault voltage (the middle of the ride-through curve's band).
SAG_REF_FRAC = 0.75
"""OpenDSS Load elements created by :meth:`DSSFeeder.add_injection` are ``Load.inj_<name>``."""
INJECTION_VMIN_PU = 0.5
"""Injections stay constant PQ down to this voltage (OpenDSS Load ``vminpu``)."""
INJECTION_VMAX_PU = 2.0
"""... and up to this one (OpenDSS Load ``vmaxpu``)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_SQRT3 = math.sqrt(3.0)


#: Relative power-balance tolerance of :meth:`DSSFeeder.invariant_violations`, as a share of
#: Σ|P| over the elements: the default convergence tolerance of OpenDSS (1e-4 pu), about 8×
#: the largest mismatch a converged solve was measured to leave (GW scenario, 2 GW).
BALANCE_TOL = 1e-4

#: Relative tolerance of an injection's power against its set-point. OpenDSS evaluates a
#: load's current at the last iteration's voltage, so a solve converged to 1e-4 pu leaves its
#: power off by up to about 1e-4 of it (1.04e-4 measured on the GW scenario: 12 kW of a
#: 115 MW battery); 5e-4 keeps the margin and still catches a wrong base (a factor of
#: (kV/kV')², tens of percent).
INJECTION_TOL = 5e-4


@dataclass(frozen=True)
class PowerFlowResult:
    """One snapshot power flow. Arrays are NaN when ``converged`` is False.

    ``bus_v_pu`` is the mean of the phase nodes (1, 2, 3) of each bus, on the bus's own
    line-to-neutral base; ``node_v_pu`` is per node (``"bus.phase"``). ``v_min_pu`` and
    ``v_max_pu`` are over the phase nodes of energized buses (node level, so an unbalanced
    feeder's worst phase counts). ``line_p_mw`` is the power entering the line at the end that
    is its ``from_bus`` in :class:`FeederData` (terminal 1 for lines outside the radial tree);
    ``line_loading_pct`` is the largest conductor current / ``normamps`` × 100.
    ``total_load_mw`` is the power delivered to all shunt elements (feeder loads and
    injections, net of generation): ``sub_p_mw − losses_mw``.

    ``branch_*`` follow :attr:`FeederData.branches` (same names and order; lines,
    transformers, regulators, switches): the power entering the branch at its ``from_bus``,
    summed over the elements of a per-phase bank, and the largest loading of its elements.
    Empty before the feeder description exists.

    ``status`` says what became of the solve (DESIGN.md §2a): ``"ok"`` (converged and every
    invariant holds; the only status with numbers), ``"diverged"`` (no convergence within
    the iteration limit), ``"aborted"`` (OpenDSS stopped the solve with an error) or
    ``"invariant"`` (OpenDSS reported convergence but the result breaks an invariant of
    :meth:`DSSFeeder.invariant_violations`; ``violations`` names them). ``recovery`` is
    ``"retried"`` or ``"frozen_controls"`` when the result needed :meth:`DSSFeeder.solve`'s
    recovery, else ``""``; ``cause`` is the reason of a failed solve, in words.
    """

    converged: bool
    bus_names: tuple[str, ...]
    bus_v_pu: np.ndarray
    node_names: tuple[str, ...]
    node_v_pu: np.ndarray
    v_min_pu: float
    v_min_bus: str
    v_max_pu: float
    sub_p_mw: float
    sub_q_mvar: float
    losses_mw: float
    losses_mvar: float
    line_names: tuple[str, ...]
    line_p_mw: np.ndarray
    line_q_mvar: np.ndarray
    line_loading_pct: np.ndarray
    total_load_mw: float
    total_load_mvar: float
    branch_names: tuple[str, ...] = ()
    branch_p_mw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    branch_q_mvar: np.ndarray = field(default_factory=lambda: np.zeros(0))
    branch_loading_pct: np.ndarray = field(default_factory=lambda: np.zeros(0))
    status: str = "ok"
    recovery: str = ""
    cause: str = ""
    violations: tuple[str, ...] = ()

    def bus_voltage(self, bus: str) -> float:
        """Mean phase voltage (pu) of ``bus``; NaN when the solve did not converge."""
        return float(self.bus_v_pu[self.bus_names.index(str(bus).lower())])

    def bus_voltages(self) -> dict[str, float]:
        return dict(zip(self.bus_names, self.bus_v_pu.tolist()))


@dataclass(frozen=True)
class TopologyReport:
    """What the radial-graph extraction found besides the tree.

    ``mesh_elements``: closed series elements that would close a loop (kept out of the tree);
    ``unreached_buses``: buses with no closed path from the source (de-energized or islanded);
    ``open_elements``: series elements with an open terminal (normally open switches).
    """

    source_bus: str
    buses_total: int
    buses_reached: int
    mesh_elements: tuple[str, ...] = ()
    unreached_buses: tuple[str, ...] = ()
    open_elements: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def radial(self) -> bool:
        return not self.mesh_elements and not self.unreached_buses


class DSSFeeder:
    """A compiled OpenDSS feeder in its own engine. Build it with :meth:`DSSFeeder.open`."""

    def __init__(self, engine, name: str, source: str, scale: float) -> None:
        self._dss = engine
        self.name = name
        self.source = source
        self.scale = scale
        self._injections: dict[str, tuple[float, float]] = {}
        self._injection_bus: dict[str, str] = {}
        self._maps_dirty = True
        self._needs_reinit = False
        self._workdir: tempfile.TemporaryDirectory | None = None  # OpenDSS's private data path
        self._from_terminal: dict[str, int] = {}  # line -> terminal (0/1) at its from_bus
        self._branch_members: tuple[tuple[tuple[str, int], ...], ...] = ()
        self._energized_buses: frozenset[str] | None = None
        self.topology_version = 0
        """Counts the rebuilds of the index maps: it changes whenever elements are added or
        the circuit's nodes change (what :meth:`lift_sensitivity` caches on)."""
        self._lift_cache: dict[tuple, np.ndarray] = {}
        self.solve_counts: Counter[str] = Counter()
        """Solves by outcome: ``ok``, ``retried``, ``frozen_controls`` (both also ``ok``),
        ``diverged``, ``aborted``, ``invariant`` (see :class:`PowerFlowResult.status`)."""
        self.check_invariants = True
        """Check DESIGN.md §2a after every solve (:meth:`invariant_violations`). Off only to
        measure what the check costs (``benchmarks/bench_real_feeders.py``)."""
        self.data: FeederData
        self.topology_report: TopologyReport
        self.base_case: PowerFlowResult

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls, source: str, scale: float = 1.0, extra_commands: Sequence[str] = (),
        v_source_pu: float | None = None,
    ) -> DSSFeeder:
        """Compile ``source`` (``"ieee33"``, ``"ieee69"`` or a .dss master file) in a new
        OpenDSS engine, apply ``extra_commands``, the scale and the source voltage
        ``v_source_pu`` (``None``: the file's own), solve the base case and extract
        :attr:`data`. Bad input raises :class:`ScenarioError`; a base case that does not
        converge is logged and recorded in ``data.notes``, not raised."""
        source = str(source)
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise ScenarioError(source, "scale", f"expected a number > 0, got {scale!r}") from None
        lo, hi = SCALE_RANGE
        if not math.isfinite(scale) or not lo <= scale <= hi:
            raise ScenarioError(source, "scale", f"must be a finite number in [{lo:g}, {hi:g}] "
                                f"(docs/conventions.md, 'Limits'), got {scale}")
        engine = _new_engine()
        engine.Basic.AllowChangeDir(False)
        if hasattr(engine.Basic, "AllowEditor"):
            engine.Basic.AllowEditor(False)
        # OpenDSS writes report/trace files (e.g. RegControl debugtrace) to its data path;
        # keep them in a private temporary folder, never next to the user's model
        workdir = tempfile.TemporaryDirectory(prefix="dcshock-dss-")
        engine.Basic.DataPath(workdir.name)
        key = source.strip().lower()
        if key in BUILTINS:
            name = key
            try:
                engine.Text.Commands(BUILTINS[key]())
            except DSSException as exc:  # our own commands: a bug, not bad input
                raise RuntimeError(f"built-in feeder {key}: {exc}") from exc
        else:
            path = Path(source)
            _check_master_file(path, source)
            name = path.stem.lower()
            try:
                # `redirect`, not `compile`: compile would move the data path to the model's
                # folder (relative paths inside the model still resolve, AllowChangeDir=False)
                engine.Text.Command(f'redirect "{path.resolve()}"')
            except DSSException as exc:
                raise ScenarioError(source, "", f"OpenDSS rejected the file: {_dss_msg(exc)}") from None
            if engine.Basic.NumCircuits() == 0:
                raise ScenarioError(source, "", "the file defines no circuit ('new circuit.<name>')")
        for i, cmd in enumerate(extra_commands):
            try:
                engine.Text.Command(str(cmd))
            except DSSException as exc:
                raise ScenarioError(
                    source, f"extra_commands[{i}]", f"OpenDSS rejected {cmd!r}: {_dss_msg(exc)}"
                ) from None
        engine.Text.Command("set mode=snapshot")
        feeder = cls(engine, name, source, scale)
        feeder._workdir = workdir
        if scale != 1.0:
            _apply_scale(engine, scale)
        _check_voltage_bases(engine, source)
        if v_source_pu is not None:
            feeder.set_source_voltage(v_source_pu)
        first = feeder.solve()
        data, feeder.topology_report, from_terminal, members = _extract(engine, name, scale, first)
        feeder.data = replace(data, v_source_pu=feeder.source_voltage_pu, source=source,
                              extra_commands=tuple(str(c) for c in extra_commands))
        feeder._from_terminal = from_terminal
        feeder._branch_members = members
        feeder._energized_buses = frozenset(feeder.data.bus_names)
        feeder._maps_dirty = True
        feeder.base_case = base = feeder.solve() if first.converged else first
        if base.converged:
            v_of = base.bus_voltages()
            feeder.data = replace(
                feeder.data,
                base_bus_v_pu=tuple(float(v_of[b]) for b in feeder.data.bus_names),
                base_branch_p_mw=tuple(float(x) for x in base.branch_p_mw),
                base_branch_q_mvar=tuple(float(x) for x in base.branch_q_mvar))
        if not first.converged:
            feeder.topology_report = replace(
                feeder.topology_report,
                notes=(*feeder.topology_report.notes, f"why: {first.cause}"))
        for note in feeder.topology_report.notes:
            log.warning("%s: %s", source, note)
        return feeder

    # ------------------------------------------------------------------ injections
    @property
    def injections(self) -> dict[str, tuple[float, float]]:
        """Current set-points of the injections, name -> (p_mw, q_mvar), load convention."""
        return dict(self._injections)

    @property
    def injection_buses(self) -> dict[str, str]:
        """The bus of each injection, name -> bus."""
        return dict(self._injection_bus)

    def add_injection(self, name: str, bus: str, p_mw: float = 0.0,
                      q_mvar: float = 0.0) -> tuple[int, ...]:
        """Create a constant-PQ element ``Load.inj_<name>`` at ``bus``; return its phase nodes.

        Load convention: ``p_mw`` > 0 draws power from the grid, < 0 injects. The element is
        ``status=fixed`` so :meth:`set_load_scale` does not touch it; it spans the bus's own
        phase nodes at the bus's own voltage base, whatever bus was active before: on three
        phases a delta at √3 × the bus's line-to-neutral base kV (as a campus or an inverter
        behind a delta winding; it needs no neutral, so it also fits three-wire feeders), on
        two phases one element between them (at √3 × the base, or 2 × on the two halves of a
        split-phase secondary), on one phase line to neutral at the base.
        A bus that cannot host it (unknown, de-energized, no voltage base, no phase node)
        raises :class:`ScenarioError` naming the bus.
        """
        name = str(name)
        bus_key = str(bus).strip().lower()
        where = f"injection {name!r}"
        if not _NAME_RE.match(name):
            raise ScenarioError(self.source, where, "names may contain only letters, digits, '_' and '-'")
        if name in self._injections:
            raise ScenarioError(self.source, where, "an injection of this name exists")
        known = self._bus_set()  # may rebuild the index maps, which moves the active bus
        if bus_key not in known:
            raise ScenarioError(
                self.source, f"{where}.bus",
                f"unknown bus {bus!r}; allowed: a bus of the feeder, e.g. "
                f"{', '.join(self.data.bus_names[:5])} ... ({len(self.data.bus_names)} buses)",
            )
        if self._energized_buses is not None and bus_key not in self._energized_buses:
            raise ScenarioError(self.source, f"{where}.bus",
                                f"bus {bus!r} is de-energized (no closed path from the source "
                                f"bus {self.data.source_bus!r}); allowed: an energized bus")
        dss = self._dss
        dss.Circuit.SetActiveBus(bus_key)  # read the bus right after activating it
        all_nodes = [int(n) for n in dss.Bus.Nodes()]
        nodes = tuple(n for n in all_nodes if 1 <= n <= 3)
        kv_ln = float(dss.Bus.kVBase())
        if not kv_ln > 0:
            raise ScenarioError(self.source, f"{where}.bus",
                                f"bus {bus!r} has no voltage base; add it to 'set voltagebases' "
                                "and run 'calcvoltagebases' in the model")
        if not nodes:
            raise ScenarioError(self.source, f"{where}.bus",
                                f"bus {bus!r} has no phase node (1, 2 or 3); allowed: a bus "
                                "with at least one phase")
        if len(nodes) == 1:  # line to neutral
            spec = f"bus1={bus_key}.{nodes[0]} phases=1 conn=wye kv={kv_ln:.10g}"
        elif len(nodes) == 2:  # between the two phases: 120° apart, or 180° (split phase)
            mag_ang = np.asarray(dss.Bus.puVmagAngle(), dtype=float)
            ang = dict(zip(all_nodes, mag_ang[1::2]))
            split = (len(ang) >= 2 and all(n in ang for n in nodes)
                     and math.cos(math.radians(ang[nodes[0]] - ang[nodes[1]])) < -0.9)
            kv_ll = kv_ln * (2.0 if split else _SQRT3)
            spec = f"bus1={bus_key}.{nodes[0]}.{nodes[1]} phases=1 conn=delta kv={kv_ll:.10g}"
        else:  # three-wire delta: it needs no neutral, so it also fits ungrounded feeders
            spec = f"bus1={bus_key}.1.2.3 phases=3 conn=delta kv={kv_ln * _SQRT3:.10g}"
        dss.Text.Command(
            f"new load.{INJECTION_PREFIX}{name} {spec} model=1 status=fixed "
            f"vminpu={INJECTION_VMIN_PU} vmaxpu={INJECTION_VMAX_PU} "
            f"kw={p_mw * 1e3:.12g} kvar={q_mvar * 1e3:.12g}"
        )
        self._injections[name] = (float(p_mw), float(q_mvar))
        self._injection_bus[name] = bus_key
        self._maps_dirty = True
        return nodes

    def set_injection(self, name: str, p_mw: float, q_mvar: float = 0.0) -> None:
        """New set-point (MW, Mvar; + = consumption) of an existing injection."""
        if name not in self._injections:
            raise KeyError(f"no injection {name!r}; known: {sorted(self._injections)}")
        loads = self._dss.Loads
        loads.Name(INJECTION_PREFIX + name)
        loads.kW(float(p_mw) * 1e3)
        loads.kvar(float(q_mvar) * 1e3)
        self._injections[name] = (float(p_mw), float(q_mvar))

    def set_injections(self, setpoints: Mapping[str, tuple[float, float]]) -> None:
        """Several :meth:`set_injection` at once: name -> (p_mw, q_mvar)."""
        for name, (p_mw, q_mvar) in setpoints.items():
            self.set_injection(name, p_mw, q_mvar)

    def set_source_voltage(self, v_pu: float) -> None:
        """Upstream (source) voltage in pu of its base, e.g. 0.7 during a sag."""
        if not (math.isfinite(v_pu) and v_pu > 0):
            raise ValueError(f"source voltage must be > 0 pu, got {v_pu}")
        self._dss.Vsources.First()
        self._dss.Vsources.PU(float(v_pu))

    @property
    def load_scale(self) -> float:
        """The present multiplier of the feeder's own loads."""
        return float(self._dss.Solution.LoadMult())

    @property
    def source_voltage_pu(self) -> float:
        """The present source (upstream) voltage set-point in pu."""
        self._dss.Vsources.First()
        return float(self._dss.Vsources.PU())

    def set_load_scale(self, factor: float) -> None:
        """Multiply all the feeder's own loads by ``factor`` (OpenDSS ``LoadMult``);
        injections are ``status=fixed`` and keep their set-points."""
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"load scale must be >= 0, got {factor}")
        self._dss.Solution.LoadMult(float(factor))

    # ------------------------------------------------------------------ fault-time support
    def lift_sensitivity(self, targets: Sequence[str], sources: Sequence[str]) -> np.ndarray:
        """``x[i, k]``: the rise of bus ``targets[i]``'s voltage (pu of its base, mean of its
        phases) per MVA of reactive current injected at bus ``sources[k]`` (docs/fcm.md,
        "Fault-time support").

        It is the Thevenin (transfer) reactance between the two buses, taken from OpenDSS's
        system admittance matrix ``Y`` (the source's impedance, every line, transformer and
        shunt, and the feeder's loads as admittances, which they are below their ``vminpu``,
        as in a sag)::

            ΔV = Y⁻¹ I,   I_n = −j e^{jδ_n} · 10⁶ / (m V_base,k)   on the m phase nodes n of k
            x_ik = mean_{n ∈ i} Re(ΔV_n e^{−jδ_n}) / V_base,i

        ``I`` is a balanced reactive current, lagging each node voltage ``e^{jδ_n}`` by 90°
        (an injection of reactive power), of 1 MVA at the bus's base voltage; ``V_base`` is
        line to neutral. Loads count as OpenDSS models them in a sag
        (:meth:`_load_corrections`): a constant-impedance load (``model=2``), or one that
        turns into an impedance below a ``vminpu`` of at least :data:`SAG_V_PU`, stays in
        ``Y`` as its admittance ``Y_L = S*/V_nom²``; a load that holds its power down to
        deep sags (the built-in feeders') enters with its incremental admittance
        ``−S*/|V|² = −Y_L/v²`` at its voltage ``v`` (pu) of the last solve; the project's
        own injections ``Load.inj_*`` (campuses, FCMs: current-controlled) are current
        sources and are taken out.
        A three-phase bus's zero-sequence part is left out (it moves no line-to-line
        voltage; behind an ungrounded delta winding it is undetermined). The phasors ``δ``
        are those of the last solve (the base case before any). Computed once per topology
        (:attr:`topology_version`) and pair of bus lists.
        """
        from scipy.sparse import csc_matrix
        from scipy.sparse.linalg import splu

        if self._maps_dirty:
            self._build_maps()
        key = (tuple(targets), tuple(sources))
        if key in self._lift_cache:
            return self._lift_cache[key].copy()
        dss = self._dss
        data, rows, ptr = dss.YMatrix.getYsparse()
        n = len(ptr) - 1
        y = csc_matrix((data, rows, ptr), shape=(n, n)).tolil()
        for name, factor in self._load_corrections():
            dss.Circuit.SetActiveElement(f"load.{name}")
            refs = [int(r) - 1 for r in dss.CktElement.NodeRef()]
            yp = factor * _yprim(dss)
            for a, ra in enumerate(refs):
                for b, rb in enumerate(refs):
                    if ra >= 0 and rb >= 0:
                        y[ra, rb] -= yp[a, b]
        order = [str(x).lower() for x in dss.Circuit.YNodeOrder()]
        raw = np.asarray(dss.Circuit.YNodeVArray(), dtype=float)
        angle = np.angle(raw[0::2] + 1j * raw[1::2])
        by_bus: dict[str, list[int]] = {}
        for i, node in enumerate(order):
            bus, _, phase = node.rpartition(".")
            if phase in ("1", "2", "3"):
                by_bus.setdefault(bus, []).append(i)

        def nodes_and_base(bus: str) -> tuple[list[int], float]:
            key_bus = str(bus).strip().lower()
            if key_bus not in by_bus:
                raise ScenarioError(self.source, "bus", f"unknown bus {bus!r} or it has no phase node")
            dss.Circuit.SetActiveBus(key_bus)
            return by_bus[key_bus], float(dss.Bus.kVBase()) * 1e3

        lu = splu(y.tocsc())
        rhs = np.zeros((n, len(sources)), dtype=complex)
        for k, bus in enumerate(sources):
            nodes, v_base = nodes_and_base(bus)
            rhs[nodes, k] = -1j * np.exp(1j * angle[nodes]) * 1e6 / (len(nodes) * v_base)
        dv = lu.solve(rhs)
        x = np.zeros((len(targets), len(sources)))
        for i, bus in enumerate(targets):
            nodes, v_base = nodes_and_base(bus)
            d = dv[nodes]
            if len(nodes) == 3:  # a three-phase bus: its zero-sequence part (the common mode
                d = d - d.mean(axis=0)  # of an ungrounded delta winding's bus) moves no |V_ll|
            x[i] = (d * np.exp(-1j * angle[nodes])[:, None]).real.mean(axis=0) / v_base
        self._lift_cache[key] = x
        return x.copy()

    def _load_corrections(self) -> list[tuple[str, float]]:
        """``(load, f)``: :meth:`lift_sensitivity` replaces the load's admittance ``Y_L`` in
        ``Y`` by ``(1 − f) Y_L``: ``f = 1`` for the project's injections (out),
        ``f = 1 + 1/v²`` for a load that holds its power in a sag (its incremental
        admittance ``−Y_L/v²``); loads that become impedances keep ``Y_L`` (not listed)."""
        dss = self._dss
        loads = dss.Loads
        out = []
        i = loads.First()
        while i:
            name = loads.Name().lower()
            if name.startswith(INJECTION_PREFIX):
                out.append((name, 1.0))
            elif not (loads.Model() == 2 or loads.Vminpu() >= SAG_V_PU - 1e-9):
                dss.Circuit.SetActiveBus(dss.CktElement.BusNames()[0].split(".")[0])
                mags = np.asarray(dss.Bus.puVmagAngle(), dtype=float)[0::2]
                v = float(np.mean(mags)) if mags.size else 1.0
                v = SAG_REF_FRAC * (v if math.isfinite(v) and v > 0.1 else 1.0)
                out.append((name, 1.0 + 1.0 / (v * v)))
            i = loads.Next()
        return out

    # ------------------------------------------------------------------ fault studies
    # What :mod:`models.faults` needs of the engine to solve the shots of a grid fault and to
    # open a protective device (docs/faults.md): none of it changes a set-point.
    @property
    def engine(self):
        """This feeder's OpenDSS engine (its own context), for the studies of
        :mod:`models.faults` that solve on the compiled feeder."""
        return self._dss

    def injection_phase_nodes(self) -> dict[str, np.ndarray]:
        """The positions of each injection's phase nodes in ``node_v_pu`` (and in
        ``Circuit.AllBusMagPu``)."""
        if self._maps_dirty:
            self._build_maps()
        ends = list(self._inj_start[1:]) + [len(self._inj_nodes)]
        return {n: self._inj_nodes[a:b] for n, a, b in zip(self._inj_names, self._inj_start, ends)}

    def read_node_v_pu(self) -> np.ndarray:
        """Node voltages (pu) of the engine's present solution, without any check."""
        node_v = np.asarray(self._dss.Circuit.AllBusMagPu(), dtype=float)
        return np.where(self._node_has_base, node_v, math.nan)

    def solve_raw(self, controls: bool = False) -> bool:
        """One solve of the engine as it stands (no recovery, no invariant check, no
        result): whether it converged. A failed solve leaves the engine ready to solve
        again and the next :meth:`solve` starts cold."""
        status, _ = self._attempt(self._dss.Solution.Solve if controls
                                  else self._dss.Solution.SolveNoControl)
        if status != "ok":
            self._needs_reinit = True
        return status == "ok"

    def set_injection_draws(self, draws: Mapping[str, tuple[float, float]]) -> None:
        """Put ``(p_mw, q_mvar)`` on the injections' elements without making it their
        set-point (:attr:`injections` keeps those; pass them back to restore)."""
        loads = self._dss.Loads
        for name, (p_mw, q_mvar) in draws.items():
            loads.Name(INJECTION_PREFIX + name)
            loads.kW(float(p_mw) * 1e3)
            loads.kvar(float(q_mvar) * 1e3)

    def set_injection_vmin(self, v_pu: float | None) -> None:
        """``vminpu`` of every injection element (``None``: back to
        :data:`INJECTION_VMIN_PU`); 0 keeps them constant PQ at any voltage, for a fault
        solve that imposes their currents itself."""
        value = INJECTION_VMIN_PU if v_pu is None else float(v_pu)
        for name in self._injections:
            # OpenDSS turns a load into an impedance below vminpu and, whatever vminpu says,
            # below vlowpu (0.5 by default): both move together here
            self._dss.Text.Command(f"edit load.{INJECTION_PREFIX}{name} vminpu={value:.6g} "
                                   f"vlowpu={min(value, 0.5):.6g}")

    def set_injection_impedance(self, p_mw: Mapping[str, float] | None,
                                q_mvar: Mapping[str, float] | None,
                                v_pu: Mapping[str, float] | None) -> None:
        """Every injection as the constant impedance (``model=2``) that draws ``p_mw``,
        ``q_mvar`` at ``v_pu``; ``None`` puts them back to constant PQ at their set-points."""
        loads = self._dss.Loads
        for name, (p0, q0) in self._injections.items():
            loads.Name(INJECTION_PREFIX + name)
            if p_mw is None:
                loads.Model(1)
                loads.kW(p0 * 1e3)
                loads.kvar(q0 * 1e3)
                continue
            v = v_pu.get(name, 1.0) if v_pu else 1.0
            v = v if math.isfinite(v) and v > 0.05 else 1.0
            loads.Model(2)
            loads.kW(p_mw.get(name, p0) * 1e3 / (v * v))
            loads.kvar(q_mvar.get(name, q0) * 1e3 / (v * v))

    def set_feeder_loads_impedance(self, on: bool) -> None:
        """The feeder's own loads as constant impedances (``model=2``, at their nominal
        draw) while ``on``; back to their own models after. The fault solve's fallback."""
        loads = self._dss.Loads
        if on:
            self._load_models = {}
        i = loads.First()
        while i:
            name = loads.Name().lower()
            if not name.startswith(INJECTION_PREFIX):
                if on:
                    self._load_models[name] = int(loads.Model())
                    loads.Model(2)
                elif name in getattr(self, "_load_models", {}):
                    loads.Model(self._load_models[name])
            i = loads.Next()

    def set_branch_open(self, branch: str, is_open: bool) -> None:
        """Open (or close again) every element of the radial branch ``branch`` at its
        from-bus end, as a protective device does; the buses behind it are then
        de-energised (:meth:`set_energized`)."""
        index = {br.name: k for k, br in enumerate(self.data.branches)}
        if branch not in index:
            raise KeyError(f"no branch {branch!r} in feeder {self.name}")
        members = self._branch_members[index[branch]] if self._branch_members else ()
        members = members or ((self.data.branches[index[branch]].element.lower(), 0),)
        for el, term in members:
            self._dss.Text.Command(f"{'open' if is_open else 'close'} {el} term={term + 1}")
        self._needs_reinit = True

    def start_cold(self) -> None:
        """The next :meth:`solve` starts from a flat start (``InitSnap``), not from what the
        engine last solved (a fault shot's state, say): its result does not depend on it."""
        self._needs_reinit = True

    def set_energized(self, buses: frozenset[str] | set[str]) -> None:
        """The buses that have a path from the source (after a device opened or closed):
        the others count in no voltage figure."""
        self._energized_buses = frozenset(buses)
        self._maps_dirty = True

    # ------------------------------------------------------------------ solving
    def solve(self, controls: bool = True) -> PowerFlowResult:
        """Snapshot power flow of the present set-points, checked (DESIGN.md §2a).

        ``controls=False`` keeps regulator taps, capacitor states and every other control
        where it is (``Solution.SolveNoControl``), e.g. to study the network alone.

        Recovery (docs/feeders.md, "When a solve fails"): a solve that OpenDSS aborts
        leaves the engine able to solve again (the solution mode is re-entered, which clears
        OpenDSS's abort state). An abort for too many control iterations is retried once,
        then solved once with the controls frozen where they are
        (``Solution.SolveNoControl``); a warm start that does not converge is retried once
        from a cold start (``InitSnap``). What helped is ``recovery`` in the result and
        counted in :attr:`solve_counts`.

        A solve that does not converge, that OpenDSS aborts, or whose result breaks an
        invariant (:meth:`invariant_violations`) returns NaN voltages and flows with its
        ``status`` and ``cause``; the next solve starts cold, so a broken state is never
        reused.
        """
        dss = self._dss
        if self._maps_dirty:
            self._build_maps()
        cold = self._needs_reinit
        if cold:
            dss.Solution.InitSnap()
            self._needs_reinit = False
        status, recovery, cause = self._run_solution(cold, controls)
        if status != "ok":
            return self._failed(status, cause, recovery)
        node_v, element_kw = self._read_state()
        if node_v.size != self._node_bus.size or (
                element_kw is not None and element_kw.size != 2 * self._n_elements):
            self._build_maps()  # topology changed behind our back
            node_v, element_kw = self._read_state()
        # a node without a voltage base has no per-unit value (OpenDSS would give volts)
        node_v = np.where(self._node_has_base, node_v, math.nan)
        if element_kw is None:
            kw, kvar = dss.Circuit.TotalPower()
            loss_w, loss_var = dss.Circuit.Losses()
            sub_kw, sub_kvar, loss_kw, loss_kvar = -kw, -kvar, loss_w / 1e3, loss_var / 1e3
        else:
            violations = self.invariant_violations(node_v, element_kw)
            if violations:
                return self._failed("invariant", "; ".join(violations[:3]), recovery, violations)
            sub_kw, sub_kvar, loss_kw, loss_kvar = self._totals_kw(element_kw)
        if recovery:
            self.solve_counts[recovery] += 1
        self.solve_counts["ok"] += 1
        weights = np.where(self._node_phase, node_v, 0.0)
        bus_v = np.bincount(self._node_bus, weights=weights, minlength=self._nbus) / self._phase_count
        valid = self._node_valid
        if valid.any():
            imin = int(np.argmin(np.where(valid, node_v, np.inf)))
            imax = int(np.argmax(np.where(valid, node_v, -np.inf)))
            v_min, v_max = float(node_v[imin]), float(node_v[imax])
            v_min_bus = self._bus_names[self._node_bus[imin]]
        else:
            v_min = v_max = math.nan
            v_min_bus = ""
        powers = np.asarray(dss.PDElements.AllPowers(), dtype=float)
        p_line = np.bincount(self._line_group, weights=powers[self._line_pos], minlength=self._nline)
        q_line = np.bincount(self._line_group, weights=powers[self._line_pos + 1], minlength=self._nline)
        pct_all = np.asarray(dss.PDElements.AllPctNorm(False), dtype=float)
        pct = pct_all[self._line_pd_index]
        p_br = np.bincount(self._branch_group, weights=powers[self._branch_pos], minlength=self._nbranch)
        q_br = np.bincount(self._branch_group, weights=powers[self._branch_pos + 1], minlength=self._nbranch)
        pct_br = np.zeros(self._nbranch)
        np.maximum.at(pct_br, self._branch_pd_group, pct_all[self._branch_pd])
        sub_p, sub_q = sub_kw / 1e3, sub_kvar / 1e3
        return PowerFlowResult(
            converged=True,
            bus_names=self._bus_names,
            bus_v_pu=bus_v,
            node_names=self._node_names,
            node_v_pu=node_v,
            v_min_pu=v_min,
            v_min_bus=v_min_bus,
            v_max_pu=v_max,
            sub_p_mw=sub_p,
            sub_q_mvar=sub_q,
            losses_mw=loss_kw / 1e3,
            losses_mvar=loss_kvar / 1e3,
            line_names=self._line_names,
            line_p_mw=p_line / 1e3,
            line_q_mvar=q_line / 1e3,
            line_loading_pct=pct,
            branch_names=self._branch_names,
            branch_p_mw=p_br / 1e3,
            branch_q_mvar=q_br / 1e3,
            branch_loading_pct=pct_br,
            total_load_mw=sub_p - loss_kw / 1e3,
            total_load_mvar=sub_q - loss_kvar / 1e3,
            recovery=recovery,
        )

    def _read_state(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Node voltages (pu) and, when the invariants are checked, the element powers."""
        dss = self._dss
        node_v = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
        if not self.check_invariants:
            return node_v, None
        return node_v, np.asarray(dss.Circuit.AllElementLosses(), dtype=float)

    def _run_solution(self, cold: bool, controls: bool = True) -> tuple[str, str, str]:
        """Solve with the recovery of :meth:`solve`: ``(status, recovery, cause)``."""
        dss = self._dss
        solve_fn = dss.Solution.Solve if controls else dss.Solution.SolveNoControl
        status, cause = self._attempt(solve_fn)
        if status == "ok":
            return "ok", "", ""
        if status == "control":
            if self._attempt(dss.Solution.Solve)[0] == "ok":
                return "ok", "retried", ""
            frozen, why = self._attempt(dss.Solution.SolveNoControl)
            if frozen == "ok":
                return "ok", "frozen_controls", ""
            return "aborted", "", f"{cause}; a retry and a solve with the controls frozen ({why}) failed too"
        if status == "diverged" and not cold:
            dss.Solution.InitSnap()  # a warm start that went astray: once more from cold
            again, why = self._attempt(solve_fn)
            if again == "ok":
                return "ok", "retried", ""
            cause = f"{cause}; a retry from a cold start: {why}"
        return ("diverged" if status == "diverged" else "aborted"), "", cause

    def _attempt(self, solve_fn) -> tuple[str, str]:
        """One solve: ``(status, cause)`` with status ``ok``, ``diverged``, ``aborted`` or
        ``control`` (aborted for too many control iterations). The converged flag is cleared
        first, so a solve that does not run cannot pass for this step's result; after an
        abort the engine is made ready to solve again."""
        dss = self._dss
        dss.Solution.Converged(False)
        try:
            solve_fn()
        except DSSException as exc:
            msg = _dss_msg(exc)
            # re-entering the solution mode clears OpenDSS's abort state; without it every
            # later solve of this engine fails with error #99
            dss.Text.Command("set mode=snapshot")
            control = "#485" in msg or "control iterations" in msg.lower()
            return ("control" if control else "aborted"), f"OpenDSS stopped the solve: {msg}"
        if dss.Solution.Converged():
            return "ok", ""
        return "diverged", (f"no convergence within {dss.Solution.Iterations()} iterations "
                            f"(maxiterations = {dss.Solution.MaxIterations()})")

    def _failed(self, status: str, cause: str, recovery: str,
                violations: tuple[str, ...] = ()) -> PowerFlowResult:
        self._needs_reinit = True
        self.solve_counts[status] += 1
        log.debug("%s: power flow %s: %s", self.source, status, cause)  # the caller reports it
        return self._nan_result(status, cause, recovery, violations)

    def _totals_kw(self, element_kw: np.ndarray) -> tuple[float, float, float, float]:
        """Substation import (kW, kvar) and losses of the series elements (kW, kvar) from
        ``Circuit.AllElementLosses`` (what ``TotalPower`` and ``Losses`` give)."""
        p, q = element_kw[0::2], element_kw[1::2]
        return (-float(p[self._source_idx].sum()), -float(q[self._source_idx].sum()),
                float(p[self._pd_idx].sum()), float(q[self._pd_idx].sum()))

    def invariant_violations(self, node_v: np.ndarray, element_kw: np.ndarray) -> tuple[str, ...]:
        """The invariants of DESIGN.md §2a that a converged solve breaks, in words.

        ``node_v`` is ``Circuit.AllBusMagPu`` (NaN without a base), ``element_kw`` is
        ``Circuit.AllElementLosses`` (kW, kvar pairs per element: the losses of a power
        delivery element, the power a power conversion element absorbs; the source's is
        minus what it supplies). Vectorised over the elements:

        * **power balance**: ``|Σ_e P_e| ≤ ε Σ_e |P_e| + 1 kW``, i.e. the substation
          import equals the loads, the injections and the losses (a solution that does not
          satisfy Kirchhoff's laws breaks it). ``ε`` = :data:`BALANCE_TOL`: a solve
          converged at OpenDSS's default tolerance (1e-4 pu) leaves a mismatch of up to
          about 1.2e-5 Σ|P| (the GW scenario's base case), which shrinks with the tolerance;
        * **injections at their set-points**: each injection absorbs its set-point
          (``|P − P_set| ≤ ε_inj |S_set| + 0.1 kW``, likewise Q, ``ε_inj`` =
          :data:`INJECTION_TOL`) while every phase node of
          its bus is inside its constant-PQ range [``INJECTION_VMIN_PU``,
          ``INJECTION_VMAX_PU``] (below, OpenDSS turns it into a constant impedance on
          purpose). A set-point changed since the engine last solved also shows here.

        The third invariant, that the result is this step's, is :meth:`_attempt`'s cleared
        converged flag.
        """
        out: list[str] = []
        p = element_kw[0::2]
        q = element_kw[1::2]
        total = float(p.sum())
        scale = float(np.abs(p).sum())
        if not abs(total) <= BALANCE_TOL * scale + 1.0:
            sub_kw = -float(p[self._source_idx].sum())
            out.append(f"power balance: substation import {sub_kw:.6g} kW differs from "
                       f"loads + injections + losses by {total:.6g} kW")
        if self._inj_names:
            p_set = np.array([self._injections[n][0] for n in self._inj_names]) * 1e3
            q_set = np.array([self._injections[n][1] for n in self._inj_names]) * 1e3
            p_got, q_got = p[self._inj_idx], q[self._inj_idx]
            v_lo = np.fmin.reduceat(node_v[self._inj_nodes], self._inj_start)
            v_hi = np.fmax.reduceat(node_v[self._inj_nodes], self._inj_start)
            in_range = (v_lo >= INJECTION_VMIN_PU) & (v_hi <= INJECTION_VMAX_PU)
            tol = INJECTION_TOL * np.hypot(p_set, q_set) + 0.1
            bad = ~in_range & (v_hi > INJECTION_VMAX_PU) | in_range & (
                (np.abs(p_got - p_set) > tol) | (np.abs(q_got - q_set) > tol))
            for k in np.flatnonzero(bad):
                name = self._inj_names[k]
                out.append(f"injection {name!r} at bus {self._injection_bus[name]!r} absorbs "
                           f"{p_got[k]:.6g} kW, {q_got[k]:.6g} kvar for a set-point of "
                           f"{p_set[k]:.6g} kW, {q_set[k]:.6g} kvar (bus voltage "
                           f"{v_lo[k]:.4g}-{v_hi[k]:.4g} pu)")
        return tuple(out)

    def _nan_result(self, status: str = "diverged", cause: str = "", recovery: str = "",
                    violations: tuple[str, ...] = ()) -> PowerFlowResult:
        nan = math.nan
        return PowerFlowResult(
            converged=False,
            bus_names=self._bus_names,
            bus_v_pu=np.full(self._nbus, nan),
            node_names=self._node_names,
            node_v_pu=np.full(len(self._node_names), nan),
            v_min_pu=nan, v_min_bus="", v_max_pu=nan,
            sub_p_mw=nan, sub_q_mvar=nan, losses_mw=nan, losses_mvar=nan,
            line_names=self._line_names,
            line_p_mw=np.full(self._nline, nan),
            line_q_mvar=np.full(self._nline, nan),
            line_loading_pct=np.full(self._nline, nan),
            branch_names=self._branch_names,
            branch_p_mw=np.full(self._nbranch, nan),
            branch_q_mvar=np.full(self._nbranch, nan),
            branch_loading_pct=np.full(self._nbranch, nan),
            total_load_mw=nan, total_load_mvar=nan,
            status=status, recovery=recovery, cause=cause, violations=tuple(violations),
        )

    # ------------------------------------------------------------------ index maps
    def _bus_set(self) -> frozenset[str]:
        if self._maps_dirty:
            self._build_maps()
        return self._bus_lookup

    def _build_maps(self) -> None:
        """Index arrays that turn the whole-circuit result arrays into per-bus and per-line
        values (rebuilt only when elements are added)."""
        self.topology_version += 1
        self._lift_cache.clear()
        dss = self._dss
        bus_names = tuple(dss.Circuit.AllBusNames())
        bus_index = {b: i for i, b in enumerate(bus_names)}
        node_names = tuple(dss.Circuit.AllNodeNames())
        node_bus = np.empty(len(node_names), dtype=np.int64)
        node_phase = np.zeros(len(node_names), dtype=bool)
        for k, node in enumerate(node_names):
            bus, _, num = node.rpartition(".")
            node_bus[k] = bus_index[bus]
            node_phase[k] = num in ("1", "2", "3")
        # buses with no phase node (neutral-only buses): average over all their nodes
        has_phase = np.bincount(node_bus, weights=node_phase, minlength=len(bus_names)) > 0
        node_phase |= ~has_phase[node_bus]
        self._bus_names = bus_names
        self._bus_lookup = frozenset(bus_names)
        self._nbus = len(bus_names)
        self._node_names = node_names
        self._node_bus = node_bus
        self._node_phase = node_phase
        self._phase_count = np.maximum(np.bincount(node_bus, weights=node_phase, minlength=self._nbus), 1)
        has_base = np.empty(len(bus_names), dtype=bool)
        for i in range(len(bus_names)):
            dss.Circuit.SetActiveBusi(i)
            has_base[i] = dss.Bus.kVBase() > 0
        self._node_has_base = has_base[node_bus]
        energized = self._energized_buses
        bus_ok = np.ones(self._nbus, dtype=bool) if energized is None else np.array(
            [b in energized for b in bus_names])
        self._node_valid = node_phase & bus_ok[node_bus] & self._node_has_base
        # lines and radial branches: positions of the (P, Q) pairs of the from-end terminal
        # in PDElements.AllPowers, and a group index to sum them per line / branch
        names = [n.lower() for n in dss.PDElements.AllNames()]
        pd_pos = {n: e for e, n in enumerate(names)}
        nterm = np.asarray(dss.PDElements.AllNumTerminals(), dtype=np.int64)
        ncond = np.asarray(dss.PDElements.AllNumConductors(), dtype=np.int64)
        start = np.concatenate(([0], np.cumsum(nterm * ncond)[:-1])) if names else np.zeros(0, np.int64)
        from_term = self._from_terminal
        enabled = {f"line.{n.lower()}" for n in dss.Lines.AllNames()} if dss.Lines.Count() else set()

        def gather(groups: list[list[tuple[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
            pos: list[int] = []
            grp: list[int] = []
            for g, members in enumerate(groups):
                for e, term in members:
                    first = start[e] + term * ncond[e]
                    pos.extend(2 * (first + c) for c in range(ncond[e]))
                    grp.extend([g] * ncond[e])
            return np.asarray(pos, dtype=np.int64), np.asarray(grp, dtype=np.int64)

        line_names, line_groups = [], []
        for e, full in enumerate(names):
            if full.startswith("line.") and full in enabled:
                line_names.append(full.partition(".")[2])
                line_groups.append([(e, from_term.get(full, 0))])
        self._line_pos, self._line_group = gather(line_groups)
        self._line_names = tuple(line_names)
        self._line_pd_index = np.asarray([g[0][0] for g in line_groups], dtype=np.int64)
        self._nline = len(line_names)
        members = self._branch_members
        branch_groups = [[(pd_pos[el], t) for el, t in m if el in pd_pos] for m in members]
        self._branch_pos, self._branch_group = gather(branch_groups)
        self._branch_pd = np.asarray([e for g in branch_groups for e, _ in g], dtype=np.int64)
        self._branch_pd_group = np.asarray(
            [k for k, g in enumerate(branch_groups) for _ in g], dtype=np.int64)
        self._branch_names = tuple(br.name for br in self.data.branches) if members else ()
        self._nbranch = len(self._branch_names)
        # whole-circuit element array (Circuit.AllElementLosses) for the invariants of §2a
        elements = [e.lower() for e in dss.Circuit.AllElementNames()]
        el_pos = {e: k for k, e in enumerate(elements)}
        self._n_elements = len(elements)
        self._source_idx = np.asarray([k for k, e in enumerate(elements)
                                       if e.startswith("vsource.")], dtype=np.int64)
        # losses as OpenDSS reports them (Circuit.Losses): the series elements, not the
        # shunt ones (capacitors), whose "losses" are their reactive output
        series = []
        i = dss.PDElements.First()
        while i:
            if not dss.PDElements.IsShunt():
                series.append(dss.CktElement.Name().lower())
            i = dss.PDElements.Next()
        self._pd_idx = np.asarray([el_pos[n] for n in series if n in el_pos], dtype=np.int64)
        node_pos = {n: k for k, n in enumerate(node_names)}
        inj_names, inj_idx, inj_nodes, inj_start = [], [], [], []
        for inj, bus in self._injection_bus.items():
            element = f"load.{INJECTION_PREFIX}{inj}".lower()
            if element not in el_pos:
                continue
            idx = [node_pos[f"{bus}.{n}"] for n in (1, 2, 3) if f"{bus}.{n}" in node_pos]
            inj_names.append(inj)
            inj_idx.append(el_pos[element])
            inj_start.append(len(inj_nodes))
            inj_nodes.extend(idx)
        self._inj_names = tuple(inj_names)
        self._inj_idx = np.asarray(inj_idx, dtype=np.int64)
        self._inj_nodes = np.asarray(inj_nodes, dtype=np.int64)
        self._inj_start = np.asarray(inj_start, dtype=np.int64)
        self._maps_dirty = False


def _new_engine():
    """A new, independent OpenDSS engine (``opendssdirect.NewContext()``) whose array getters
    return NumPy arrays instead of Python lists (the whole-circuit result arrays are read
    every step; lists cost more than the solve on small feeders)."""
    ctx = opendssdirect.NewContext()
    try:
        return type(ctx)(ctx._api_util, prefer_lists=False)
    except (AttributeError, TypeError):  # another opendssdirect layout: lists are fine too
        return ctx


# ---------------------------------------------------------------------- input checks
def _dss_msg(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _check_master_file(path: Path, source: str) -> None:
    if not path.exists():
        if path.suffix == "" and "/" not in source and "\\" not in source:
            raise ScenarioError(source, "", f"unknown feeder {source!r}; allowed: {ALLOWED_SOURCES}")
        raise ScenarioError(source, "", f"file not found; allowed: {ALLOWED_SOURCES}")
    if not path.is_file():
        raise ScenarioError(source, "", f"not a file; allowed: {ALLOWED_SOURCES}")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ScenarioError(source, "", f"cannot read the file: {exc.strerror}") from None
    content = [ln for ln in text.splitlines()
               if ln.strip() and not ln.lstrip().startswith(("!", "//"))]
    if not content:
        raise ScenarioError(source, "", "the file is empty; expected OpenDSS commands "
                                        "starting with 'new circuit.<name>'")


def _check_voltage_bases(dss, source: str) -> None:
    """A model whose buses all lack a voltage base has no per-unit results: bad input."""
    if not any(_bus_kv_bases(dss).values()):
        raise ScenarioError(source, "", "no bus has a voltage base, so no per-unit voltage exists; "
                                        "add 'set voltagebases=[...]' and 'calcvoltagebases'")


# ---------------------------------------------------------------------- scaling
def _apply_scale(dss, k: float) -> None:
    """Per-unit-preserving scaling by K after compile (docs/feeders.md, "Scaling").

    S → K·S and V → √K·V for every rated or set power and voltage, so Z_base = V²/S and every
    ohmic impedance stay, and every per-unit result is unchanged:

    * source: base kV × √K, its impedance kept in ohm (re-specified as R1/X1/R0/X0);
    * transformers: winding kV × √K, kVA (and normhkva/emerghkva) × K;
    * lines: normamps, emergamps × √K (I = S/(√3·V) grows by √K);
    * loads, generators: kV × √K, kW/kvar/kVA × K; capacitors: kV × √K, kvar × K;
    * PV systems and storage: kV × √K, kVA, Pmpp, kWrated, kWhrated, kWhstored × K;
    * regulator and capacitor controls: PT ratio and CT rating × √K (so set-points in
      secondary volts and amps keep their meaning); kvar-type capacitor settings × K;
    * voltage bases × √K (``set voltagebases`` + ``calcvoltagebases``; buses with a base set
      by ``setkvbase`` get their own base × √K).
    """
    rk = math.sqrt(k)
    cmd = dss.Text.Command
    old_bases = _bus_kv_bases(dss)
    # source(s): keep the Thevenin impedance in ohm
    i = dss.Vsources.First()
    while i:
        name = dss.Vsources.Name()
        z1, z0 = _source_sequence_impedance(dss)
        base = dss.Vsources.BasekV()
        cmd(f"edit vsource.{name} basekv={base * rk:.12g} r1={z1.real:.12g} x1={z1.imag:.12g} "
            f"r0={z0.real:.12g} x0={z0.imag:.12g}")
        i = dss.Vsources.Next()
    i = dss.Transformers.First()
    while i:
        tr = dss.Transformers
        parts = []
        for w in range(1, tr.NumWindings() + 1):
            tr.Wdg(w)
            parts.append(f"wdg={w} kv={tr.kV() * rk:.12g} kva={tr.kVA() * k:.12g}")
        normh = float(dss.Properties.Value("normhkva") or 0.0)
        emergh = float(dss.Properties.Value("emerghkva") or 0.0)
        cmd(f"edit transformer.{tr.Name()} {' '.join(parts)} normhkva={normh * k:.12g} "
            f"emerghkva={emergh * k:.12g}")
        i = dss.Transformers.Next()
    i = dss.Lines.First()
    while i:
        dss.Lines.NormAmps(dss.Lines.NormAmps() * rk)
        dss.Lines.EmergAmps(dss.Lines.EmergAmps() * rk)
        i = dss.Lines.Next()
    i = dss.Loads.First()
    while i:
        ld = dss.Loads
        p, q, kv = ld.kW(), ld.kvar(), ld.kV()
        ld.kV(kv * rk)
        ld.kW(p * k)
        ld.kvar(q * k)
        i = dss.Loads.Next()
    i = dss.Generators.First()
    while i:
        g = dss.Generators
        p, q, kv, kva = g.kW(), g.kvar(), g.kV(), g.kVARated()
        g.kV(kv * rk)
        g.kVARated(kva * k)
        g.kW(p * k)
        g.kvar(q * k)
        i = dss.Generators.Next()
    i = dss.Capacitors.First()
    while i:
        name = dss.Capacitors.Name()
        kvar = dss.Properties.Value("kvar").strip("[] ").replace(",", " ").split()
        kvars = " ".join(f"{float(v) * k:.12g}" for v in kvar)
        cmd(f"edit capacitor.{name} kv={dss.Capacitors.kV() * rk:.12g} kvar=[{kvars}]")
        i = dss.Capacitors.Next()
    for cls, props in (("pvsystem", ("kv", "kva", "pmpp")),
                       ("storage", ("kv", "kva", "kwrated", "kwhrated", "kwhstored"))):
        for name in _class_names(dss, cls):
            dss.Circuit.SetActiveElement(f"{cls}.{name}")
            vals = {p: float(dss.Properties.Value(p) or 0.0) for p in props}
            edits = " ".join(f"{p}={v * (rk if p == 'kv' else k):.12g}" for p, v in vals.items())
            cmd(f"edit {cls}.{name} {edits}")
    i = dss.RegControls.First()
    while i:
        rc = dss.RegControls
        rc.PTRatio(rc.PTRatio() * rk)
        rc.CTPrimary(rc.CTPrimary() * rk)
        i = dss.RegControls.Next()
    i = dss.CapControls.First()
    while i:
        cc = dss.CapControls
        cc.PTRatio(cc.PTRatio() * rk)
        cc.CTRatio(cc.CTRatio() * rk)
        if cc.Mode() == CapControlModes.KVAR:  # kvar settings are not divided by PT/CT
            cc.ONSetting(cc.ONSetting() * k)
            cc.OFFSetting(cc.OFFSetting() * k)
        i = dss.CapControls.Next()
    bases = dss.Settings.VoltageBases()
    dss.Settings.VoltageBases([b * rk for b in bases])
    cmd("calcvoltagebases")
    new_bases = _bus_kv_bases(dss)
    for bus, old in old_bases.items():
        new = new_bases.get(bus, 0.0)
        if old > 0 and not math.isclose(new, old * rk, rel_tol=1e-9):
            cmd(f"setkvbase bus={bus} kvln={old * rk:.12g}")


def _class_names(dss, cls: str) -> list[str]:
    dss.Circuit.SetActiveClass(cls)
    names = []
    i = dss.ActiveClass.First()
    while i:
        names.append(dss.ActiveClass.Name())
        i = dss.ActiveClass.Next()
    return names


def _bus_kv_bases(dss) -> dict[str, float]:
    out = {}
    for i, bus in enumerate(dss.Circuit.AllBusNames()):
        dss.Circuit.SetActiveBusi(i)
        out[bus] = dss.Bus.kVBase()
    return out


def _source_sequence_impedance(dss) -> tuple[complex, complex]:
    """Z1, Z0 (ohm) of the active Vsource from its primitive admittance Y (terminal 1 block):
    Z = Y⁻¹, Z1 = Zs − Zm, Z0 = Zs + 2·Zm with Zs, Zm the mean self and mutual terms."""
    n = dss.CktElement.NumConductors()
    y = _yprim(dss)[:n, :n]
    z = np.linalg.inv(y)
    return _z1_from_matrix(z), _z0_from_matrix(z)


# ---------------------------------------------------------------------- extraction
def _yprim(dss) -> np.ndarray:
    raw = np.asarray(dss.CktElement.YPrim(), dtype=float)
    m = int(round(math.sqrt(raw.size / 2)))
    return (raw[0::2] + 1j * raw[1::2]).reshape(m, m)


def _z1_from_matrix(z: np.ndarray) -> complex:
    """Positive-sequence impedance of a phase impedance matrix: Z1 = mean(Zii) − mean(Zij);
    for one phase Z1 = Z11."""
    n = z.shape[0]
    if n == 1:
        return complex(z[0, 0])
    self_mean = np.trace(z) / n
    mutual_mean = (z.sum() - np.trace(z)) / (n * (n - 1))
    return complex(self_mean - mutual_mean)


def _z0_from_matrix(z: np.ndarray) -> complex:
    n = z.shape[0]
    if n == 1:
        return complex(z[0, 0])
    self_mean = np.trace(z) / n
    mutual_mean = (z.sum() - np.trace(z)) / (n * (n - 1))
    return complex(self_mean + 2 * mutual_mean)


def _series_z_phase(dss, nphases: int, angles: Sequence[float]) -> complex:
    """Phase-equivalent series impedance (ohm) of the active two-terminal element.

    Its primitive admittance is [[Ys + Ysh/2, −Ys], [−Ys, Ys + Ysh/2]], so the series
    impedance matrix is Zs = (−Y12)⁻¹; a neutral conductor is Kron-reduced
    (Zpp − Zpn·Znn⁻¹·Znp). With the currents of the n phases equal in size and in phase
    with their own voltages (angles θ_k at the sending end), the drop of phase i along its
    own voltage is Σ_k Z_ik e^{j(θ_k − θ_i)} |I|; the mean over the phases::

        z_φ = (1/n) Σ_i Σ_k Z_ik e^{j(θ_k − θ_i)}

    For three phases 120° apart this is the positive-sequence Z1 = mean(Zii) − mean(Zij);
    for one phase Z11; for two phases 120° apart Zs − Zm/2; for the two halves of a
    split-phase secondary (180°) Zs − Zm (docs/optimization.md §1.6).
    """
    n = dss.CktElement.NumConductors()
    y = _yprim(dss)
    z = np.linalg.inv(-y[:n, n:2 * n])
    if n > nphases:
        p = slice(0, nphases)
        q = slice(nphases, n)
        z = z[p, p] - z[p, q] @ np.linalg.inv(z[q, q]) @ z[q, p]
    theta = np.asarray(angles, dtype=float)[:nphases]
    rot = np.exp(1j * (theta[None, :] - theta[:, None]))
    return complex((z * rot).sum() / nphases)


#: Nominal angles (rad) of phase nodes 1, 2, 3 when no solved voltage angle is at hand.
_NOMINAL_ANGLE = {1: 0.0, 2: -2.0 * math.pi / 3.0, 3: 2.0 * math.pi / 3.0}


@dataclass
class _Edge:
    element: str
    kind: str
    buses: tuple[str, ...]
    nphases: int
    normamps: float
    kva: float
    windings: tuple[tuple[float, float, float], ...] = ()  # (kV, kVA, tap) per terminal
    z_pct: complex = 0j  # transformer leakage impedance, % on winding-1 kVA
    z_line: complex | None = None
    phase_set: frozenset[int] = frozenset()


def _extract(
    dss, name: str, scale: float, base: PowerFlowResult
) -> tuple[FeederData, TopologyReport, dict[str, int], tuple[tuple[tuple[str, int], ...], ...]]:
    """Radial description of the compiled circuit (rules in docs/feeders.md)."""
    bus_names = list(dss.Circuit.AllBusNames())
    kv_ln: dict[str, float] = {}
    phases: dict[str, int] = {}
    nodes_of: dict[str, tuple[int, ...]] = {}
    angle: dict[str, dict[int, float]] = {}  # solved voltage angle (rad) of each node
    for i, bus in enumerate(bus_names):
        dss.Circuit.SetActiveBusi(i)
        kv_ln[bus] = dss.Bus.kVBase()
        nodes = [int(n) for n in dss.Bus.Nodes()]
        nodes_of[bus] = tuple(n for n in nodes if 1 <= n <= 3)
        phases[bus] = max(1, len(nodes_of[bus]))
        if base.converged:
            mag_ang = np.asarray(dss.Bus.puVmagAngle(), dtype=float)
            angle[bus] = {n: math.radians(a) for n, a in zip(nodes, mag_ang[1::2])}
    regulated = set()
    i = dss.RegControls.First()
    while i:
        regulated.add(dss.RegControls.Transformer().lower())
        i = dss.RegControls.Next()

    edges: list[_Edge] = []
    open_elements: list[str] = []
    i = dss.PDElements.First()
    while i:
        el = dss.CktElement
        full = el.Name()
        cls = full.split(".", 1)[0].lower()
        short = full.split(".", 1)[1].lower()
        if el.Enabled() and el.NumTerminals() >= 2:
            buses = tuple(b.split(".", 1)[0].lower() for b in el.BusNames())
            if len(set(buses)) >= 2:
                if any(el.IsOpen(t, 0) for t in range(1, el.NumTerminals() + 1)):
                    open_elements.append(full)
                else:
                    spec = el.BusNames()[0]
                    from_nodes = _nodes_of(spec, el.NumConductors())
                    at = angle.get(buses[0], {})
                    angles = [at.get(k, _NOMINAL_ANGLE.get(k, 0.0)) for k in from_nodes]
                    edge = _read_edge(dss, full, cls, short, buses, regulated, angles)
                    edge.phase_set = _phases_of(spec, edge.nphases)
                    edges.append(edge)
        i = dss.PDElements.Next()

    dss.Vsources.First()
    source_bus = dss.CktElement.BusNames()[0].split(".", 1)[0].lower()
    # adjacency: (edge index, terminal at this bus, terminal at the other bus, other bus)
    adj: dict[str, list[tuple[int, int, int, str]]] = {b: [] for b in bus_names}
    for e, edge in enumerate(edges):
        first = edge.buses[0]
        seen = {first}
        for t, other in enumerate(edge.buses[1:], start=1):
            if other in seen:
                continue
            seen.add(other)
            adj.setdefault(first, []).append((e, 0, t, other))
            adj.setdefault(other, []).append((e, t, 0, first))
    visited = {source_bus}
    order = [source_bus]
    # tree branches as groups: a gang of single-phase units (e.g. three regulators, one per
    # phase) between the same two buses on disjoint phases is one branch, not a loop
    groups: list[dict] = []
    group_of_pair: dict[frozenset[str], int] = {}
    used_pairs: set[tuple[int, int, int]] = set()
    mesh: set[str] = set()
    queue = deque([source_bus])
    while queue:
        bus = queue.popleft()
        for e, t_here, t_other, other in adj.get(bus, ()):
            pair = (e, min(t_here, t_other), max(t_here, t_other))
            if pair in used_pairs:
                continue
            used_pairs.add(pair)
            if other in visited:
                g = group_of_pair.get(frozenset((bus, other)))
                if g is not None and not (groups[g]["phases"] & edges[e].phase_set):
                    grp = groups[g]
                    grp["phases"] |= edges[e].phase_set
                    if bus == grp["from"]:
                        grp["members"].append((e, t_here, t_other))
                    else:
                        grp["members"].append((e, t_other, t_here))
                else:
                    mesh.add(edges[e].element)
                continue
            visited.add(other)
            order.append(other)
            group_of_pair[frozenset((bus, other))] = len(groups)
            groups.append({"from": bus, "to": other, "members": [(e, t_here, t_other)],
                           "phases": set(edges[e].phase_set)})
            queue.append(other)

    s_base = 1.0 * scale
    branches = []
    from_terminal: dict[str, int] = {}
    branch_members: list[tuple[tuple[str, int], ...]] = []
    names_seen: dict[str, int] = {}
    for grp in groups:
        short = edges[grp["members"][0][0]].element.split(".", 1)[1].lower()
        names_seen[short] = names_seen.get(short, 0) + 1
    for grp in groups:
        fbus, tbus = grp["from"], grp["to"]
        members = grp["members"]
        z_ohm = complex(np.mean([_edge_z_ohm(edges[e], t_to) for e, _, t_to in members]))
        tap = float(np.mean([_edge_tap(edges[e], t_from, t_to, kv_ln[fbus], kv_ln[tbus])
                             for e, t_from, t_to in members]))
        ratings = [_edge_rating(edges[e], kv_ln[tbus]) for e, _, _ in members]
        rating = sum(r for r in ratings if r is not None) if any(r is not None for r in ratings) else None
        kv_ll_to = kv_ln[tbus] * _SQRT3
        z_base = kv_ll_to ** 2 / s_base if kv_ll_to > 0 else math.nan
        n_ph = min(3, sum(len(edges[e].phase_set) or edges[e].nphases for e, _, _ in members))
        per_phase = 3.0 / n_ph  # n of three phases carry the branch's power (docs §1.6)
        first = edges[members[0][0]]
        short = first.element.split(".", 1)[1].lower()
        branches.append(Branch(
            name=short if names_seen[short] == 1 else first.element.lower(),
            from_bus=fbus, to_bus=tbus,
            r_ohm=z_ohm.real, x_ohm=z_ohm.imag,
            r_pu=per_phase * z_ohm.real / z_base, x_pu=per_phase * z_ohm.imag / z_base,
            rating_mva=rating, kind=first.kind, element=first.element, phases=n_ph, tap=tap,
        ))
        for e, t_from, _ in members:
            if edges[e].element.lower().startswith("line."):
                from_terminal.setdefault(edges[e].element.lower(), t_from)
        branch_members.append(tuple((edges[e].element.lower(), t_from) for e, t_from, _ in members))

    loads: dict[str, list[float]] = {}
    i = dss.Loads.First()
    while i:
        if dss.CktElement.Enabled() and not dss.Loads.Name().lower().startswith(INJECTION_PREFIX):
            bus = dss.CktElement.BusNames()[0].split(".", 1)[0].lower()
            acc = loads.setdefault(bus, [0.0, 0.0])
            acc[0] += dss.Loads.kW() / 1e3
            acc[1] += dss.Loads.kvar() / 1e3
        i = dss.Loads.Next()
    rank = {b: k for k, b in enumerate(order)}
    bus_loads = tuple(
        BusLoad(bus=b, p_mw=pq[0], q_mvar=pq[1])
        for b, pq in sorted(loads.items(), key=lambda it: rank.get(it[0], len(rank)))
    )

    unreached = tuple(b for b in bus_names if b not in visited)
    notes = []
    if mesh:
        notes.append(f"meshed: {len(mesh)} closed element(s) close a loop and are not in the "
                     f"radial graph: {', '.join(sorted(mesh)[:10])}{' ...' if len(mesh) > 10 else ''}")
    if unreached:
        notes.append(f"disconnected: {len(unreached)} bus(es) have no closed path from source bus "
                     f"{source_bus!r}: {', '.join(unreached[:10])}{' ...' if len(unreached) > 10 else ''}")
    no_base = [b for b in bus_names if kv_ln[b] <= 0]
    if no_base:
        notes.append(f"no voltage base: {len(no_base)} bus(es) have none, their per-unit voltages "
                     f"are NaN; add 'set voltagebases=[...]' and 'calcvoltagebases' to the model: "
                     f"{', '.join(no_base[:10])}{' ...' if len(no_base) > 10 else ''}")
    if not base.converged:
        notes.append("the base-case power flow did not converge")
    report = TopologyReport(
        source_bus=source_bus, buses_total=len(bus_names), buses_reached=len(visited),
        mesh_elements=tuple(sorted(mesh)), unreached_buses=unreached,
        open_elements=tuple(open_elements), notes=tuple(notes),
    )
    data = FeederData(
        name=name, source_bus=source_bus, base_kv_ll=kv_ln[source_bus] * _SQRT3,
        s_base_mva=s_base,
        buses=tuple(Bus(name=b, base_kv_ll=kv_ln[b] * _SQRT3, phases=phases[b], nodes=nodes_of[b])
                    for b in order),
        branches=tuple(branches), loads=bus_loads, scale=scale, notes=tuple(notes),
    )
    return data, report, from_terminal, tuple(branch_members)


def _phases_of(bus_spec: str, nphases: int) -> frozenset[int]:
    """Phase nodes (1..3) a terminal connects: ``"650.1.3"`` -> {1, 3}; none given -> 1..n."""
    phases = frozenset(n for n in _nodes_of(bus_spec, nphases)[:nphases] if 1 <= n <= 3)
    return phases or frozenset(range(1, nphases + 1))


def _nodes_of(bus_spec: str, nconductors: int) -> list[int]:
    """The nodes a terminal connects, in conductor order: ``"650.1.3"`` -> [1, 3]; a bare
    bus name -> 1..n (OpenDSS's default)."""
    nodes = [int(n) for n in bus_spec.split(".")[1:] if n.isdigit()]
    return nodes or list(range(1, nconductors + 1))


def _read_edge(dss, full: str, cls: str, short: str, buses: tuple[str, ...],
               regulated: set[str], angles: Sequence[float]) -> _Edge:
    el = dss.CktElement
    nph = el.NumPhases()
    if cls == "transformer":
        tr = dss.Transformers
        tr.Name(short)
        windings = []
        r_pct = 0.0
        for w in range(1, tr.NumWindings() + 1):
            tr.Wdg(w)
            windings.append((tr.kV(), tr.kVA(), tr.Tap()))
            if w <= 2:
                r_pct += tr.R()
        return _Edge(
            element=full, kind="regulator" if short in regulated else "transformer",
            buses=buses, nphases=nph, normamps=0.0, kva=windings[0][1],
            windings=tuple(windings), z_pct=complex(r_pct, tr.Xhl()),
        )
    kind = "line"
    normamps = el.NormalAmps()
    if cls == "line":
        dss.Lines.Name(short)
        if dss.Lines.IsSwitch():
            kind = "switch"
    return _Edge(element=full, kind=kind, buses=buses, nphases=nph, normamps=normamps,
                 kva=0.0, z_line=_series_z_phase(dss, nph, angles))


def _edge_rating(edge: _Edge, kv_ln_to: float) -> float | None:
    """Normal rating in MVA: lines n·V_LN·normamps, transformers the winding-1 kVA."""
    if edge.kind in ("line", "switch"):
        return edge.normamps * kv_ln_to * edge.nphases / 1e3 if edge.normamps > 0 else None
    return edge.kva / 1e3 if edge.kva > 0 else None


def _edge_tap(edge: _Edge, t_from: int, t_to: int, kv_from: float, kv_to: float) -> float:
    """Off-nominal voltage ratio τ = |V_to| / |V_from| of a transformer at no load, per
    unit of the buses' bases: (kV_to·tap_to / kV_from·tap_from) / (base_to / base_from)
    (1 for lines, and where a base is missing)."""
    if not edge.windings or kv_from <= 0 or kv_to <= 0:
        return 1.0
    kv_f, _, tap_f = edge.windings[t_from]
    kv_t, _, tap_t = edge.windings[t_to]
    if kv_f <= 0 or tap_f <= 0:
        return 1.0
    tau = (kv_t * tap_t / (kv_f * tap_f)) / (kv_to / kv_from)
    return tau if math.isfinite(tau) and tau > 0 else 1.0


def _edge_z_ohm(edge: _Edge, t_to: int) -> complex:
    """Series impedance in ohm referred to the ``to`` side.

    Transformer: Z = (%R1 + %R2 + j·%Xhl)/100 × kV_to² / MVA_1, with kV_to the rated
    voltage of the winding at the ``to`` bus and MVA_1 the rating of winding 1.
    """
    if edge.z_line is not None:
        return edge.z_line
    kv_to = edge.windings[t_to][0]
    mva = edge.windings[0][1] / 1e3
    return edge.z_pct / 100.0 * kv_to ** 2 / mva


# ---------------------------------------------------------------------- CLI summary
def feeder_summary(source: str, scale: float = 1.0) -> dict:
    """The ``feeder --json`` summary of DESIGN.md §5 (NaN → null for JSON)."""
    feeder = DSSFeeder.open(source, scale=scale)
    res = feeder.solve()

    def num(x: float) -> float | None:
        return None if not math.isfinite(x) else float(x)

    return {
        "buses": len(res.bus_names),
        "nodes": len(res.node_names),
        "total_load_kw": num(res.total_load_mw * 1e3),
        "losses_kw": num(res.losses_mw * 1e3),
        "losses_kvar": num(res.losses_mvar * 1e3),
        "v_min_pu": num(res.v_min_pu),
        "v_min_bus": res.v_min_bus,
        "v_max_pu": num(res.v_max_pu),
        "converged": res.converged,
        "bus_voltages_pu": {b: num(v) for b, v in res.bus_voltages().items()},
    }
