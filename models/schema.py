"""Base class of every scenario section model.

A section rejects unknown fields (a typo is an error, never silently ignored) and is frozen
once validated, so typed configuration can be passed around without defensive copies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Pydantic model with ``extra="forbid"`` and ``frozen=True``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
