"""AI campus load model (SimPy). Placeholder: the campus issue fills this module."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat


class CampusConfig(BaseModel):
    """``[[campus]]``: one AI data-center campus at a point of interconnection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "campus1"
    bus: str
    capacity_mw: PositiveFloat
    power_factor: float = Field(0.98, gt=0, le=1)
