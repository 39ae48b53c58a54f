"""A result file that is one JSON object, read and written through a pydantic model.

:class:`JsonFile` is the base of :class:`scenarios.kpis.KPIReport` (``kpis.json``) and
:class:`scenarios.manifest.Manifest` (``manifest.json``): the declared fields are the
contract of DESIGN.md §5, checked on the way in and out; any other key (a timing, the trip
log) is kept as it is (``extra = "allow"``). A file is written in the order its keys were
given and read back in the order they stand, so ``read(path).write(path)`` reproduces it.

Values become strict JSON on the way in (:func:`jsonable`): numpy scalars as Python numbers,
NaN and ±inf as ``null``, tuples as lists, paths as strings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

J = TypeVar("J", bound="JsonFile")

#: A JSON number as written: an int stays an int, a float a float; ``null`` for undefined.
Number = int | float | None


def jsonable(value: Any) -> Any:
    """``value`` with every part a JSON type (see the module docstring); anything else, by
    its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return jsonable(value.item())  # numpy scalars
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


class JsonFile(BaseModel):
    """One JSON object with declared fields and any others, in the order given."""

    model_config = ConfigDict(extra="allow")
    _order: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def from_dict(cls: type[J], data: Mapping[str, Any]) -> J:
        """Validate ``data`` (made strict JSON first); keeps its key order."""
        clean = jsonable(data)
        obj = cls.model_validate(clean)
        obj._order = list(clean)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """The object as written: its keys in the order given, then any added since."""
        d = self.model_dump(mode="json")
        keys = [k for k in self._order if k in d] + [k for k in d if k not in self._order]
        return {k: d[k] for k in keys}

    def write(self, path: str | Path) -> Path:
        """Write ``path`` (strict JSON, indented; to a temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls: type[J], path: str | Path) -> J:
        """Read and validate ``path``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
