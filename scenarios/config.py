"""Scenario files: TOML in, a validated, typed :class:`Scenario` out.

This is the only place where user configuration is checked. Every problem becomes a
:class:`models.errors.ScenarioError` naming the file, the field and what is allowed; the CLI
turns it into exit code 2. Section models live beside the code that uses them (campus and
shocks in :mod:`models`, controller and siting in :mod:`controllers.config`, FCM catalog in
:mod:`models.fcm_catalog`) and are composed here.

Time is explicit everywhere: ``simulation.step_s`` is the co-simulation step Δt in seconds
and ``simulation.hours`` the simulated horizon.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveFloat, ValidationError, model_validator

from models.schema import SEED_MAX, Name, StrictModel, fields_at

from controllers.config import ControllerConfig, SitingConfig
from models.campus import CampusConfig, expected_events
from models.errors import ScenarioError, format_loc, parse_user_file, pydantic_problem
from models.fcm import TECHNOLOGIES, placement_problem
from models.network import SCALE_RANGE
from models.fcm_catalog import FCMType, Placement, default_catalog, unknown_kind
from models.faults.config import FaultEvent, FaultLaw
from models.shock_config import ShockConfig

#: Expected events one campus draws over a run (job arrivals, surges, oscillation episodes,
#: sags; :func:`models.campus.expected_events`): planning simulates them in 8 no-shock days
#: and the run once, about 1 kB and 10 µs each. The default campus draws about 20 a day.
MAX_CAMPUS_EVENTS = 100_000
#: Rows and campus events of a set of shock samples (``shocks --samples``, Stage I's
#: ``siting.scenarios``): ten million rows of the ``shocks`` table take about 1 GB.
MAX_SAMPLE_ROWS = 10_000_000
MAX_SAMPLE_EVENTS = 10_000_000

SCENARIO_DIR = Path(__file__).resolve().parent
DEFAULT_SCENARIO = SCENARIO_DIR / "ieee33_ai_shock.toml"



class FeederConfig(StrictModel):
    """``[feeder]``: a built-in feeder name (``ieee33``, ``ieee69``) or a path to an OpenDSS
    master file (relative paths are taken from the scenario file's folder), and the
    per-unit-preserving scale factor K (loads × K, base voltage × √K)."""

    source: str = "ieee33"
    scale: float = Field(1.0, ge=SCALE_RANGE[0], le=SCALE_RANGE[1])
    extra_commands: list[str] = Field(default_factory=list)


#: How far ``simulation.hours`` may be from a whole number of steps (simulated seconds): a
#: millisecond, so that hours written with nine significant digits are accepted.
WHOLE_STEP_TOL_S = 1e-3


def _hours_of(steps: int, step_s: int) -> str:
    """``steps × step_s`` in hours, written precisely enough to be accepted as ``hours``."""
    return f"{steps * step_s / 3600.0:.9g}"


class SimulationConfig(StrictModel):
    """``[simulation]``: horizon and co-simulation step Δt."""

    hours: float = Field(24.0, gt=0, le=8784.0)  # up to a (leap) year
    step_s: int = Field(60, ge=1, le=3600)
    start_hour: float = Field(0.0, ge=0, lt=24)

    @model_validator(mode="after")
    def _whole_steps(self) -> "SimulationConfig":
        dt = self.step_s
        n = self.hours * 3600.0 / dt
        if n < 1.0 - 1e-9:
            raise ValueError(f"hours: {self.hours:g} h is shorter than one step of {dt} s; "
                             f"allowed: at least {_hours_of(1, dt)} h")
        k = round(n)
        if abs(self.hours * 3600.0 - k * dt) > WHOLE_STEP_TOL_S:
            lo, hi = max(math.floor(n), 1), math.ceil(n)
            raise ValueError(f"hours: {self.hours:g} h is not a whole number of steps of {dt} s "
                             f"({n:.7g} steps); allowed: a multiple of step_s, e.g. "
                             f"{_hours_of(lo, dt)} h ({lo} steps) or {_hours_of(hi, dt)} h "
                             f"({hi} steps)")
        return self

    @property
    def steps(self) -> int:
        return int(round(self.hours * 3600 / self.step_s))


class GridConfig(StrictModel):
    """``[grid]``: operating limits the KPIs and controllers judge the feeder by."""

    v_min_pu: float = Field(0.95, gt=0.5, lt=1.0)
    v_max_pu: float = Field(1.05, gt=1.0, lt=1.5)
    ramp_limit_mw_per_min: PositiveFloat = 0.2
    max_loading_pct: PositiveFloat = 100.0
    schedule_interval_s: int = Field(3600, ge=60)
    #: λ, the background loads' multiplier: at most 10 × the feeder's own loads (its daily
    #: peak); IEEE 33 already collapses near 3.4 × (docs/conventions.md, "Limits")
    background_load_scale: float = Field(1.0, gt=0, le=10.0)
    #: substation bus voltage held by its tap changer (pu of the source's base); 1.0 = the
    #: feeder file's own source voltage
    v_source_pu: float = Field(1.0, ge=0.9, le=1.1)


class FCMConfig(StrictModel):
    """``[fcm]``: the module catalog and, optionally, fixed placements."""

    catalog: dict[Name, FCMType] = Field(default_factory=default_catalog)
    placements: list[Placement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _placements_use_catalog(self) -> "FCMConfig":
        for i, pl in enumerate(self.placements):
            if (msg := unknown_kind(pl.kind, self.catalog)) is not None:
                raise ValueError(f"placements[{i}].kind: {msg}")
            if (msg := placement_problem(pl, self.catalog[pl.kind])) is not None:
                raise ValueError(f"placements[{i}].{msg}")
        return self


class Scenario(StrictModel):
    """A whole scenario file."""

    name: Name = "scenario"
    seed: int = Field(42, ge=0, le=SEED_MAX)
    feeder: FeederConfig = FeederConfig()
    simulation: SimulationConfig = SimulationConfig()
    grid: GridConfig = GridConfig()
    campus: list[CampusConfig] = Field(min_length=1)
    shocks: ShockConfig = ShockConfig()
    faults: FaultLaw = FaultLaw()
    events: list[FaultEvent] = Field(default_factory=list, max_length=10_000)
    fcm: FCMConfig = FCMConfig()
    controller: ControllerConfig = ControllerConfig()
    siting: SitingConfig = SitingConfig()
    path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_campus_names(self) -> "Scenario":
        names = [c.name for c in self.campus]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"campus: names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    @model_validator(mode="after")
    def _schedule_in_steps(self) -> "Scenario":
        si, dt = self.grid.schedule_interval_s, self.simulation.step_s
        if si % dt:
            raise ValueError(f"grid.schedule_interval_s: {si} s is not a multiple of "
                             f"simulation.step_s ({dt} s); allowed: a multiple of it, e.g. "
                             f"{max(round(si / dt), 1) * dt} s")
        return self

    @model_validator(mode="after")
    def _events_in_run(self) -> "Scenario":
        end = self.simulation.hours * 3600.0
        for i, ev in enumerate(self.events):
            if ev.time_s < self.simulation.step_s or ev.end_s > end:
                raise ValueError(
                    f"events[{i}].time_s: the fault from {ev.time_s:g} s to {ev.end_s:g} s "
                    f"(its last shot cleared) is outside the run; allowed: from "
                    f"simulation.step_s = {self.simulation.step_s} s (the first step is the "
                    f"pre-fault start-up) to simulation.hours = {end:g} s")
        return self

    @model_validator(mode="after")
    def _events_in_budget(self) -> "Scenario":
        hours = self.simulation.hours
        shots = self.faults.shots_per_day()
        for i, c in enumerate(self.campus):
            n = expected_events(c, self.shocks, hours, shots)
            if n > MAX_CAMPUS_EVENTS:
                jobs = c.job_rate_per_h * hours
                faults = hours / 24.0 * shots
                where = (f"campus[{i}].job_rate_per_h" if jobs >= n / 2 else
                         "faults" if faults >= n / 2 else "shocks")
                raise ValueError(f"{where}: campus {c.name!r} would draw {n:,.0f} events over "
                                 f"simulation.hours = {hours:g} h ({jobs:,.0f} training jobs, "
                                 f"{n - jobs:,.0f} shock events); allowed: at most "
                                 f"{MAX_CAMPUS_EVENTS:,} per campus and run (docs/conventions.md, "
                                 "'Limits'): lower rates or a shorter run")
        sit = self.siting
        if (msg := sampling_problem(self, sit.scenarios, sit.horizon_hours, sit.step_s)):
            raise ValueError(f"siting.scenarios: {msg}")
        return self

    def feeder_source(self) -> str:
        """The feeder source resolved against the scenario file's folder."""
        src = self.feeder.source
        if src.lower().endswith(".dss") and self.path and not Path(src).is_absolute():
            return str((Path(self.path).parent / src).resolve())
        return src

    def with_overrides(self, **sections: dict[str, Any]) -> "Scenario":
        """A copy with fields of some sections replaced, validated again (CLI options)."""
        data = self.model_dump()
        for section, values in sections.items():
            if isinstance(data.get(section), dict):
                data[section].update({k: v for k, v in values.items() if v is not None})
            elif values is not None:
                data[section] = values
        return validate_scenario(data, self.path or "<scenario>")


#: a catalog entry's ``technology`` tag and model name in a pydantic error location
_TAGGED = {name: t.catalog_type for name, t in TECHNOLOGIES.items()}
_TAGS = {*_TAGGED, *(m.__name__ for m in _TAGGED.values())}


def sampling_problem(scenario: Scenario, samples: int, hours: float, step_s: float) -> str | None:
    """What is wrong with drawing ``samples`` shock samples of ``hours`` at ``step_s`` (the
    ``shocks`` command, Stage I), or ``None``: the rows of the result (samples × campuses ×
    steps) and the events drawn (samples × each campus's expected events) are bounded
    (docs/conventions.md, "Limits")."""
    steps = max(1, round(hours * 3600.0 / step_s))
    rows = samples * len(scenario.campus) * steps
    if rows > MAX_SAMPLE_ROWS:
        return (f"{samples:,} samples × {len(scenario.campus)} campus(es) × {steps:,} steps of "
                f"{step_s:g} s = {rows:,} rows; allowed: at most {MAX_SAMPLE_ROWS:,} "
                "(docs/conventions.md, 'Limits')")
    shots = scenario.faults.transmission_per_day * scenario.faults.shots_per_fault
    events = samples * sum(expected_events(c, scenario.shocks, hours, shots)
                           for c in scenario.campus)
    if events > MAX_SAMPLE_EVENTS:
        return (f"{samples:,} samples of {hours:g} h draw about {events:,.0f} campus events; "
                f"allowed: at most {MAX_SAMPLE_EVENTS:,} (docs/conventions.md, 'Limits')")
    return None


def validate_scenario(data: dict[str, Any], source: str | Path) -> Scenario:
    """Validate a parsed scenario dict; raise :class:`ScenarioError` on the first problem."""
    try:
        return Scenario.model_validate({**data, "path": str(source)})
    except ValidationError as exc:
        err = exc.errors()[0]
        if err.get("type") == "union_tag_not_found":  # a catalog entry without technology
            field = format_loc(err["loc"], _TAGS) + ".technology"
            raise ScenarioError(source, field, "required field is missing; allowed: "
                                f"{', '.join(TECHNOLOGIES)} (docs/fcm.md)") from None
        raise pydantic_problem(err, source, _TAGS, _allowed_fields) from None


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at a location of the scenario tree."""
    return fields_at(Scenario, loc, _TAGGED)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    data = parse_user_file(p, "a scenario .toml file, e.g. scenarios/ieee33_ai_shock.toml",
                           tomllib.loads, "TOML")
    return validate_scenario(data, p)
