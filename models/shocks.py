"""Seeded demand-shock scenario generator. Placeholder: the campus issue fills this module."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ShockConfig(BaseModel):
    """``[shocks]``: probabilities and sizes of surges, trips, reconnections, oscillations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
