"""Base class of every scenario section model.

A section rejects unknown fields (a typo is an error, never silently ignored), rejects
infinite and NaN numbers (``inf`` hours, rates or sizes would drive loops without end or
reach the manifest as ``null``), and is frozen once validated, so typed configuration can
be passed around without defensive copies.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

#: A name that becomes part of a file path or a time-series column (scenario, campus, FCM
#: label): letters, digits, ``_`` and ``-``, so that ``dc.<name>.p_mw`` is unambiguous and
#: a default output folder stays inside ``results/``.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]


class StrictModel(BaseModel):
    """Pydantic model with ``extra="forbid"``, ``frozen=True`` and ``allow_inf_nan=False``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
