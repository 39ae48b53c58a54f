"""Base class of every scenario section model.

A section rejects unknown fields (a typo is an error, never silently ignored), rejects
infinite and NaN numbers (``inf`` hours, rates or sizes would drive loops without end or
reach the manifest as ``null``), and is frozen once validated, so typed configuration can
be passed around without defensive copies.

A numeric field takes numbers only: ``true``/``false`` and strings such as ``"24"`` are
refused (pydantic would read them as 1, 0 and 24), and so is any number beyond
:data:`NUMBER_CEILING` in magnitude (docs/conventions.md, "Limits"): fields with a physical
bound of their own have a lower one.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Annotated, Any

from annotated_types import Le, Lt
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

#: A name that becomes part of a file path or a time-series column (scenario, campus, FCM
#: label): letters, digits, ``_`` and ``-``, so that ``dc.<name>.p_mw`` is unambiguous and
#: a default output folder stays inside ``results/``.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]

#: The largest seed: ``numpy.random.SeedSequence`` takes any integer >= 0; 32 bits is what
#: the scenario's ``seed`` and the ensemble's spawned member seeds use.
SEED_MAX = 2**32 - 1

#: The largest magnitude any number in a scenario or siting file may have. No quantity of a
#: grid study comes near it (10^12 MW, $, s), and beyond it squares overflow and products
#: reach the solvers' infinity (HiGHS: 1e20).
NUMBER_CEILING = 1e12


def _numeric(annotation: Any) -> bool:
    """Whether a field annotation holds numbers (``float``, ``int``, a tuple or list of them,
    optionally ``None``); ``bool``, strings and models do not."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _numeric(typing.get_args(annotation)[0])
    if origin in (tuple, list, typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a not in (type(None), Ellipsis)]
        return bool(args) and all(_numeric(a) for a in args)
    return False


def _check_number(value: Any, ceiling: bool = True) -> None:
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_number(item, ceiling)
    elif isinstance(value, bool):
        raise ValueError(f"must be a number, got {str(value).lower()} (a boolean)")
    elif isinstance(value, str):
        raise ValueError(f"must be a number, got the string {value!r}; write it without quotes")
    elif ceiling and isinstance(value, (int, float)) and NUMBER_CEILING < abs(value) < math.inf:
        raise ValueError(f"{value:g} is beyond {NUMBER_CEILING:g}, the largest magnitude a number "
                         "in a scenario or siting file may have (docs/conventions.md, 'Limits')")


class StrictModel(BaseModel):
    """Pydantic model with ``extra="forbid"``, ``frozen=True`` and ``allow_inf_nan=False``,
    whose numeric fields take numbers only, at most :data:`NUMBER_CEILING` in magnitude."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_only(cls, data: Any) -> Any:
        # a model validator, not a field one: pydantic allows no "before" validator on a
        # discriminator field (a catalog entry's technology)
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None and _numeric(field.annotation):
                    # a field with an upper bound of its own reports that one instead
                    own = any(isinstance(m, (Le, Lt)) for m in field.metadata)
                    try:
                        _check_number(value, ceiling=not own)
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from None
        return data


def fields_at(model: type[BaseModel], loc: tuple[Any, ...],
              tagged: dict[str, type[BaseModel]] | None = None) -> list[str]:
    """Field names of the model at location ``loc`` of ``model``'s tree (a pydantic error
    location: field names, list indices, dict keys); ``tagged`` maps the tags of a
    discriminated union to their models. Empty when ``loc`` leads to no model."""
    current: Any = model
    key_next = False
    for part in loc:
        if isinstance(part, int) or key_next:
            key_next = False
            continue
        if tagged and part in tagged:
            current = tagged[part]
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        key_next = typing.get_origin(info.annotation) is dict
        current = _model_in(info.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(host, port)`` (ValueError when it is not one; port 0..65535)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:5678, got {address!r}")
    return host, int(port)
