"""The time series on disk: column names, Parquet segments, the final file (docs/results.md).

No mosaik here: :class:`ColumnNamer` turns inputs shaped ``{attr: {source: value}}`` into
one row ``{column: scalar}``, :class:`SegmentWriter` writes rows as Parquet segments and
joins them, :func:`read_timeseries` reads a finished file or an unfinished run's segments.
The mosaik sink around them is :class:`sim.recorder.RecorderSim`.

Column names follow docs/results.md, ``<entity>.<attr>``:

* ``<entity>`` is the prefix :func:`column_prefix` finds in ``column_map`` for the source's
  full id (``"DC-0.campus1"``). A key may also be a bare simulator id (``"FCM-0"``): its
  value is then joined with the entity id (``"fcm"`` → ``"fcm.bess_18"``). Without a match
  the prefix is the full id itself, so nothing is ever dropped or merged by accident.
* A few attributes are named by :data:`COLUMN_RULES`, a declarative table of templates
  (``{prefix}``, ``{attr}``, ``{key}``). A template with ``{key}`` applies to dict-valued
  attributes, which are expanded into one column per key (``bus_v_pu = {"18": 0.91}`` →
  ``bus.18.v_pu``); a template without ``{key}`` renames a scalar (``converged`` →
  ``pf.converged``). Other dicts become ``<prefix>.<attr>.<key>``, other scalars
  ``<prefix>.<attr>``. A caller may add or override rules with ``column_rules``.

Values: bool → Parquet ``bool``; int/float → ``float64``; str → ``string``. A column's type is
fixed the first time it is written (from its first non-missing value; ``float64`` when all
missing so far). Missing values (no input this step, ``None``) are NaN (null for bool and
string columns). A value that does not fit the column's type is written as missing, with one
warning per column.

Crash safety. Rows are buffered and flushed every ``flush_every`` steps (every
``flush_every × ⌈columns / 2000⌉`` for wide tables, e.g. 600 on IEEE 8500) as one Parquet row
group, in a complete, closed Parquet file of its own (a *segment*) under
``<path>.parts/``. A segment is readable the moment it is written, so a crash, a kill or an
exception elsewhere keeps every flushed row: :func:`read_timeseries` reads the segments of
an unfinished run (as one :mod:`pyarrow.dataset`). :meth:`SegmentWriter.close` flushes the
rest and joins the segments, one row group each, into ``path`` with
:class:`pyarrow.parquet.ParquetWriter` (written to a temporary name, then renamed), then
removes ``<path>.parts/``. A run that did not finish therefore never leaves a
``timeseries.parquet`` that looks complete.

Columns that first appear after the first row are kept: they join the schema from the next
segment on, and rows before their appearance read as missing (NaN) in the final file. The
schema of a segment is the schema at its flush; the final file has the union, ordered by
group (``pf``, ``sub``, ``dc``, ``fcm``, ``ctrl``, ``pred``, ``bus``, ``line``, others) and
naturally within a group (``bus.2`` before ``bus.10``), then ``time_s`` as the pandas index.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: Attribute → column template. ``{key}`` templates expand dict values, the others rename
#: scalars. ``{prefix}`` is the entity's column prefix, ``{attr}`` the attribute name.
COLUMN_RULES: dict[str, str] = {
    "bus_v_pu": "bus.{key}.v_pu",
    "line_loading_pct": "line.{key}.loading_pct",
    "line_p_mw": "line.{key}.p_mw",
    "line_q_mvar": "line.{key}.q_mvar",
    "branch_p_mw": "branch.{key}.p_mw",
    "branch_q_mvar": "branch.{key}.q_mvar",
    "pf_status": "pf.status",
    "pf_recovery": "pf.recovery",
    "pred_bus_v_pu": "pred.bus.{key}.v_pu",
    "pred_sub_p_mw": "pred.sub.p_mw",
    "sub_p_mw": "sub.p_mw",
    "sub_q_mvar": "sub.q_mvar",
    "losses_mw": "sub.losses_mw",
    "p_sched_mw": "sub.p_sched_mw",
    "p_set_mw": "fcm.{key}.p_set_mw",
    "converged": "pf.converged",
    "pf_converged": "pf.converged",
}
DEFAULT_SCALAR = "{prefix}.{attr}"
DEFAULT_DICT = "{prefix}.{attr}.{key}"
INDEX = "time_s"
#: The writer keeps flushed segments in memory up to this size for the final join (beyond
#: it, the join reads the segment files back).
KEEP_BYTES = 256 * 2**20
PARTS_SUFFIX = ".parts"
#: Tables wider than this flush proportionally less often (SegmentWriter.rows_per_segment).
WIDE_COLUMNS = 2000


def column_prefix(full_id: str, column_map: Mapping[str, str]) -> str:
    """The column prefix of a source entity: its full id in ``column_map``, else its
    simulator id there joined with the entity id, else the full id itself."""
    if full_id in column_map:
        return column_map[full_id]
    sid, _, eid = full_id.partition(".")
    if sid in column_map and eid:
        return f"{column_map[sid]}.{eid}"
    return full_id


class ColumnNamer:
    """Turns mosaik inputs ``{attr: {full_id: value}}`` into ``{column: scalar}``.

    Names are cached per (source, attribute[, key]); a dict-valued attribute whose keys come
    in the same order as in the step before costs one tuple comparison and one
    ``dict.update`` per step, not one look-up per key.
    """

    def __init__(self, column_map: Mapping[str, str] | None = None,
                 column_rules: Mapping[str, str] | None = None) -> None:
        self.column_map = dict(column_map or {})
        self.rules = {**COLUMN_RULES, **(column_rules or {})}
        self._scalar: dict[tuple[str, str], str] = {}
        self._dict: dict[tuple[str, str], str] = {}
        self._keyed: dict[tuple[str, str], dict[Any, str]] = {}
        # per dict-valued (source, attribute): its last keys, in order, and their columns
        self._layout: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[str, ...]]] = {}
        self._warned: set[tuple[str, str]] = set()

    def _scalar_name(self, src: str, attr: str) -> str:
        name = self._scalar.get((src, attr))
        if name is None:
            tpl = self.rules.get(attr, DEFAULT_SCALAR)
            if "{key}" in tpl:
                tpl = DEFAULT_SCALAR
            name = tpl.format(prefix=column_prefix(src, self.column_map), attr=attr)
            self._scalar[(src, attr)] = name
        return name

    def _key_names(self, src: str, attr: str) -> dict[Any, str]:
        """The cache ``{key: column}`` of a dict-valued attribute (filled as keys appear)."""
        names = self._keyed.get((src, attr))
        if names is None:
            tpl = self.rules.get(attr, DEFAULT_DICT)
            if "{key}" not in tpl:
                tpl = DEFAULT_DICT
            prefix = column_prefix(src, self.column_map).replace("{", "{{").replace("}", "}}")
            self._dict[(src, attr)] = tpl.replace("{prefix}", prefix).replace("{attr}", attr)
            names = self._keyed[(src, attr)] = {}
        return names

    def _key_columns(self, src: str, attr: str, keys: tuple[Any, ...]) -> tuple[str, ...]:
        """The columns of the keys of a dict-valued attribute, in the keys' order."""
        names = self._keyed.get((src, attr)) or self._key_names(src, attr)
        for key in keys:
            if key not in names:
                names[key] = self._dict[(src, attr)].format(key=key)
        return tuple(names[key] for key in keys)

    def row(self, entity_inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """One row from the inputs of one sink entity."""
        row: dict[str, Any] = {}
        for attr, sources in entity_inputs.items():
            for src, value in sources.items():
                if type(value) in _PLAIN:  # the common case first: a number, flag or text
                    row[self._scalar.get((src, attr)) or self._scalar_name(src, attr)] = value
                elif isinstance(value, dict):
                    keys = tuple(value)
                    layout = self._layout.get((src, attr))
                    if layout is None or layout[0] != keys:  # first seen, or other keys
                        layout = self._layout[(src, attr)] = (keys, self._key_columns(src, attr, keys))
                    row.update(zip(layout[1], value.values()))
                elif isinstance(value, (list, tuple, np.ndarray)):
                    if (src, attr) not in self._warned:
                        self._warned.add((src, attr))
                        logger.warning("recorder: %s.%s is a sequence; not recorded "
                                       "(publish a dict or scalars)", src, attr)
                elif value is None and "{key}" in self.rules.get(attr, ""):
                    continue  # a dict-valued attribute with nothing to say this step
                else:
                    row[self._scalar.get((src, attr)) or self._scalar_name(src, attr)] = value
        return row


#: Value types recorded as they are, without further checks (ColumnNamer.row's fast path).
_PLAIN = frozenset({float, int, bool, str, np.float64, np.bool_})


def _kind_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    return "str"


_ARROW = {"float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
_PANDAS = {"float": ("float64", "float64"), "bool": ("bool", "bool"),
           "str": ("unicode", "object")}


class SegmentWriter:
    """Buffers rows and writes them as Parquet segments; joins them on :meth:`close`.

    Usable without mosaik: ``append(time_s, row)`` per step, ``close()`` at the end.
    """

    def __init__(self, path: str | Path, flush_every: int = 60, index_kind: str = "int") -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be ≥ 1, got {flush_every}")
        self.path = Path(path)
        self.parts = parts_dir(self.path)
        self.flush_every = int(flush_every)
        self.index_type = pa.int64() if index_kind == "int" else pa.float64()
        self.kinds: dict[str, str | None] = {}  # column → kind, in order of first appearance
        self._typed: set[str] = set()  # columns whose kind is fixed
        self._tables: list[pa.Table] | None = []
        self._kept_bytes = 0
        self._times: list[Any] = []
        self._rows: list[dict[str, Any]] = []
        self._segments = 0
        self._bad: set[str] = set()
        self.rows_written = 0
        self.closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.parts.exists():
            shutil.rmtree(self.parts)
        if self.path.exists():
            self.path.unlink()  # an old complete file must not outlive a new, unfinished run
        self.parts.mkdir(parents=True)

    def append(self, time_s: float, row: dict[str, Any]) -> None:
        if not self._typed.issuperset(row):  # a new column, or one still without a type
            kinds = self.kinds
            for col, value in row.items():
                if kinds.get(col) is None:
                    kinds[col] = _kind_of(value)
                    if kinds[col] is not None:
                        self._typed.add(col)
        self._times.append(time_s)
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_segment:
            self.flush()

    @property
    def rows_per_segment(self) -> int:
        """``flush_every``, times ⌈columns / WIDE_COLUMNS⌉ for wide tables: a Parquet file
        costs per column, so a feeder of thousands of buses writes a segment every few
        hundred steps instead of paying that cost every 60 (measured on IEEE 8500:
        18,000 columns, about 1 s a segment whatever its rows)."""
        return self.flush_every * max(1, math.ceil(len(self.kinds) / WIDE_COLUMNS))

    def _columns(self, cols: list[str]) -> list[tuple[Any, ...]]:
        """The buffered rows as columns (``None`` where a row lacks the column)."""
        if not cols:
            return []
        if len(cols) == 1:
            return [tuple(r.get(cols[0]) for r in self._rows)]
        get = operator.itemgetter(*cols)
        table = []
        for r in self._rows:
            try:
                table.append(get(r))
            except KeyError:  # a column that appeared after this row, or a skipped value
                table.append(tuple(r.get(c) for c in cols))
        return list(zip(*table))

    def _float_block(self, cols: list[str]) -> dict[str, np.ndarray]:
        """The float columns as one ``rows × columns`` array (one conversion instead of one
        per column, which is what a feeder of thousands of buses needs); ``{}`` when a row
        lacks one of them or holds a non-number, and the columns go one by one."""
        if len(cols) < 2:
            return {}
        get = operator.itemgetter(*cols)
        try:
            arr = np.array([get(r) for r in self._rows], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            return {}
        return {c: arr[:, j] for j, c in enumerate(cols)}

    def _array(self, col: str, kind: str, values: Sequence[Any]) -> pa.Array:
        if kind == "float":
            try:
                return pa.array(np.asarray(values, dtype=np.float64), type=pa.float64())
            except (TypeError, ValueError):
                values = [self._coerce(col, v, float) for v in values]
                return pa.array(values, type=pa.float64(), from_pandas=True)
        if kind == "bool":
            return pa.array([self._coerce(col, v, bool) for v in values], type=pa.bool_())
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())

    def _coerce(self, col: str, v: Any, kind: type) -> Any:
        if v is None:
            return None
        if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            if isinstance(v, (float, np.floating)) and math.isnan(v):
                return None if kind is bool else math.nan
            return kind(v)
        if col not in self._bad:
            self._bad.add(col)
            logger.warning("recorder: column %s holds %s, got %r; written as missing",
                           col, "numbers" if kind is float else "booleans", v)
        return None

    def schema(self) -> pa.Schema:
        fields = [pa.field(c, _ARROW[k or "float"]) for c, k in self.kinds.items()]
        return pa.schema([*fields, pa.field(INDEX, self.index_type)])

    def flush(self) -> None:
        """Write the buffered rows as one segment (a complete Parquet file)."""
        if not self._rows:
            return
        for col, kind in self.kinds.items():
            if kind is None:
                self.kinds[col] = "float"  # type fixed now: all missing so far
                self._typed.add(col)
        cols = list(self.kinds)
        floats = [c for c in cols if self.kinds[c] == "float"]
        block = self._float_block(floats)
        others = [c for c in cols if c not in block]
        done = dict(zip(others, (self._array(c, self.kinds[c], v)  # type: ignore[arg-type]
                                 for c, v in zip(others, self._columns(others)))))
        arrays = [done[c] if c in done else pa.array(block[c], type=pa.float64()) for c in cols]
        arrays.append(pa.array(self._times, type=self.index_type))
        table = pa.Table.from_arrays(arrays, schema=self.schema())
        seg = self.parts / f"part-{self._segments:06d}.parquet"
        tmp = seg.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="none", write_statistics=False,
                       use_dictionary=False)
        tmp.replace(seg)  # a segment is either absent or complete
        if self._tables is not None:  # kept for the final join while they are small
            self._tables.append(table)
            self._kept_bytes += table.nbytes
            if self._kept_bytes > KEEP_BYTES:
                self._tables = None
        self._segments += 1
        self.rows_written += len(self._rows)
        self._rows, self._times = [], []

    def close(self) -> Path:
        """Flush, join the segments into ``path`` and remove the segment folder."""
        if self.closed:
            return self.path
        self.flush()
        consolidate(self.path, schema=self.schema() if self.kinds or self.rows_written else None,
                    tables=self._tables)
        self.closed = True
        return self.path


def parts_dir(path: str | Path) -> Path:
    """Folder holding the segments of an unfinished run of ``path``."""
    path = Path(path)
    return path.with_name(path.name + PARTS_SUFFIX)


def _pandas_metadata(schema: pa.Schema) -> dict[bytes, bytes]:
    """pandas metadata so that ``pd.read_parquet`` restores ``time_s`` as the index."""
    kinds = {pa.float64(): "float", pa.bool_(): "bool", pa.string(): "str"}
    cols = []
    for f in schema:
        if f.name == INDEX:
            np_t = "int64" if f.type == pa.int64() else "float64"
            cols.append({"name": INDEX, "field_name": INDEX, "pandas_type": np_t,
                         "numpy_type": np_t, "metadata": None})
            continue
        pd_t, np_t = _PANDAS[kinds.get(f.type, "str")]
        cols.append({"name": f.name, "field_name": f.name, "pandas_type": pd_t,
                     "numpy_type": np_t, "metadata": None})
    meta = {
        "index_columns": [INDEX],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode",
                            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": cols,
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": pd.__version__,
    }
    return {b"pandas": json.dumps(meta).encode()}


def _segments(path: Path) -> list[Path]:
    return sorted(parts_dir(path).glob("part-*.parquet"))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    have = dict(zip(table.column_names, table.columns))
    cols = []
    for f in schema:
        col = have.get(f.name)
        if col is None:
            cols.append(pa.nulls(table.num_rows, type=f.type))
        else:
            cols.append(col if col.type == f.type else col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def segment_dataset(path: str | Path) -> ds.FileSystemDataset | None:
    """The flushed segments of ``path`` as one :mod:`pyarrow.dataset`, one fragment per
    segment in the order they were written (``None`` when there is none)."""
    segs = _segments(Path(path))
    if not segs:
        return None
    return ds.dataset([str(s) for s in segs], format="parquet")


def _union_schema(dataset: ds.FileSystemDataset) -> pa.Schema:
    """Every column of every segment, in order of first appearance, ``time_s`` last (a
    column's type is fixed when it is first written, so the segments agree on it)."""
    schema = pa.unify_schemas([frag.physical_schema for frag in dataset.get_fragments()])
    index = schema.field(INDEX) if INDEX in schema.names else pa.field(INDEX, pa.int64())
    return pa.schema([*(f for f in schema if f.name != INDEX), index])


_GROUPS = ("pf.", "sub.", "dc.", "fcm.", "ctrl.", "pred.", "bus.", "line.", "branch.")


def _column_key(name: str) -> tuple:
    """Final column order: the groups of docs/results.md, then natural order within a group
    (``bus.2`` before ``bus.10``)."""
    rank = next((i for i, g in enumerate(_GROUPS) if name.startswith(g)), len(_GROUPS))
    return (rank, tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name)))


def ordered(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its columns in the final order and ``time_s`` last."""
    fields = sorted((f for f in schema if f.name != INDEX), key=lambda f: _column_key(f.name))
    return pa.schema([*fields, schema.field(INDEX)])


def consolidate(path: str | Path, schema: pa.Schema | None = None,
                tables: list[pa.Table] | None = None) -> Path:
    """Join the segments under ``<path>.parts/`` into ``path``, one row group per segment.

    Also the recovery tool after a crash: it turns what an unfinished run flushed into a
    normal file. Columns missing from an earlier segment are written as missing.
    ``tables``, when given, are the segments' contents already in memory, in order (the
    writer keeps them to avoid reading the files back).
    """
    path = Path(path)
    dataset = segment_dataset(path)
    frags = [] if dataset is None else list(dataset.get_fragments())
    if tables is not None and len(tables) != len(frags):
        tables = None
    if schema is None:
        schema = pa.schema([pa.field(INDEX, pa.int64())]) if dataset is None else _union_schema(dataset)
    schema = ordered(schema)
    schema = schema.with_metadata(_pandas_metadata(schema))
    tmp = path.with_name(path.name + ".partial")
    with pq.ParquetWriter(tmp, schema) as writer:
        if not frags:
            writer.write_table(schema.empty_table())
        for i, frag in enumerate(frags):
            table = tables[i] if tables is not None else frag.to_table(use_threads=False)
            writer.write_table(_conform(table, schema))
    tmp.replace(path)
    shutil.rmtree(parts_dir(path), ignore_errors=True)
    return path


def read_timeseries(path: str | Path) -> pd.DataFrame:
    """Read ``timeseries.parquet``, or the flushed segments of a run that did not finish.

    The result is indexed by ``time_s``; columns missing in some segments are NaN there.
    """
    path = Path(path)
    if path.is_file():
        frame = pd.read_parquet(path)
    else:
        dataset = segment_dataset(path)
        if dataset is None:
            raise FileNotFoundError(f"{path}: no time series and no flushed segments")
        # one dataset over the union schema: a segment's missing columns read as null
        union = ds.dataset(dataset.files, schema=ordered(_union_schema(dataset)), format="parquet")
        frame = union.to_table(use_threads=False).to_pandas()
    if INDEX in frame.columns:
        frame = frame.set_index(INDEX)
    return frame
