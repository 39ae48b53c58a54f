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

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PositiveFloat, ValidationError, model_validator

from models.schema import Name, StrictModel

from controllers.config import ControllerConfig, SitingConfig
from models.campus import CampusConfig
from models.errors import ScenarioError, format_loc, parse_user_file
from models.fcm import TECHNOLOGIES
from models.fcm_catalog import FCMType, Placement, default_catalog, unknown_kind
from models.shock_config import ShockConfig

SCENARIO_DIR = Path(__file__).resolve().parent
DEFAULT_SCENARIO = SCENARIO_DIR / "ieee33_ai_shock.toml"



class FeederConfig(StrictModel):
    """``[feeder]``: a built-in feeder name (``ieee33``, ``ieee69``) or a path to an OpenDSS
    master file (relative paths are taken from the scenario file's folder), and the
    per-unit-preserving scale factor K (loads × K, base voltage × √K)."""

    source: str = "ieee33"
    scale: PositiveFloat = 1.0
    extra_commands: list[str] = Field(default_factory=list)


class SimulationConfig(StrictModel):
    """``[simulation]``: horizon and co-simulation step Δt."""

    hours: float = Field(24.0, gt=0, le=8784.0)  # up to a (leap) year
    step_s: int = Field(60, ge=1, le=3600)
    start_hour: float = Field(0.0, ge=0, lt=24)

    @model_validator(mode="after")
    def _whole_steps(self) -> "SimulationConfig":
        n = self.hours * 3600.0 / self.step_s
        if n < 1.0 - 1e-9:
            raise ValueError(f"hours: {self.hours:g} h is shorter than one step of {self.step_s} s; "
                             f"allowed: at least {self.step_s / 3600:g} h")
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"hours: {self.hours:g} h is not a whole number of steps of "
                             f"{self.step_s} s ({n:.4g}); allowed: a multiple of step_s, e.g. "
                             f"{round(n) * self.step_s / 3600:g} h")
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
    background_load_scale: PositiveFloat = 1.0
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
        return self


class Scenario(StrictModel):
    """A whole scenario file."""

    name: Name = "scenario"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    feeder: FeederConfig = FeederConfig()
    simulation: SimulationConfig = SimulationConfig()
    grid: GridConfig = GridConfig()
    campus: list[CampusConfig] = Field(min_length=1)
    shocks: ShockConfig = ShockConfig()
    fcm: FCMConfig = FCMConfig()
    controller: ControllerConfig = ControllerConfig()
    siting: SitingConfig = SitingConfig()
    path: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_campus_names(self) -> "Scenario":
        names = [c.name for c in self.campus]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"campus names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    @model_validator(mode="after")
    def _schedule_in_steps(self) -> "Scenario":
        si, dt = self.grid.schedule_interval_s, self.simulation.step_s
        if si % dt:
            raise ValueError(f"grid.schedule_interval_s ({si} s) must be a multiple of "
                             f"simulation.step_s ({dt} s)")
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


def _format_loc(loc: tuple[Any, ...]) -> str:
    # the technologies' names and models are discriminated-union tags: noise in the path
    tags = {*TECHNOLOGIES, *(t.catalog_type.__name__ for t in TECHNOLOGIES.values())}
    return format_loc(loc, tags)


def validate_scenario(data: dict[str, Any], source: str | Path) -> Scenario:
    """Validate a parsed scenario dict; raise :class:`ScenarioError` on the first problem."""
    try:
        scenario = Scenario.model_validate({**data, "path": str(source)})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _format_loc(tuple(err.get("loc", ())))
        msg = err.get("msg", "invalid value")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
            parent = tuple(err["loc"][:-1])
            allowed = _allowed_fields(parent)
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif err.get("type") == "missing":
            msg = "required field is missing"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        raise ScenarioError(source, field, msg) from None
    return scenario


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at a location of the scenario tree (for 'unknown field' messages)."""
    model: Any = Scenario
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        if part in TECHNOLOGIES:  # a catalog entry's discriminated union member
            model = TECHNOLOGIES[part].catalog_type
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        model = _model_in(ann)
    return sorted(getattr(model, "model_fields", {})) if model is not None else []


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    data = parse_user_file(p, "a scenario .toml file, e.g. scenarios/ieee33_ai_shock.toml",
                           tomllib.loads, "TOML")
    return validate_scenario(data, p)
